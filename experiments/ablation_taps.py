"""Where to insert the optimised variables: every tap of the model x {scale, bias, scale and bias}
x a budget of {5, 10, 20, 40} objective evaluations per click (jaxopt L-BFGS, f-BRS
regulariser, f-BRS clicks limit 8), NoBRS with and without that limit as baselines. Taps
include ones the paper never tried (``c3``, between the DeepLab head's separable convolutions,
before HRNet's OCR, the fusion block ``rgb_conv``, the logits).

Command (the shipped model, first 10 synthetic eval samples; 10 taps x 3 x 4 = 120 cells and two
baselines, NoBRS and NoBRS with the cells' 8-click network limit; the budget is data of the
compiled click program, so the four budgets of a (tap, variables) pair share its programs):

    fbrs-jax ablate --config experiments/ablation_taps.py

Measured on 2 CPU cores: a late tap (hrnet_feats and after) compiles in ~45 s per (tap,
variables) pair and runs a cell in ~1 min (all 84 late cells: 55 min); an input-side tap
(image, dist_maps, rgb_conv) compiles in ~5 min per pair and runs a cell in ~5 min (1 s per
click), so the whole grid takes ~4.5 h there (longer on a virtual machine whose host steals
CPU: the table's last column). It is resumable. No GPU timing yet. The full
split (30 scenes): add ``--max-samples 30``. On a released model and a real set:

    fbrs-jax ablate --config experiments/ablation_taps.py --checkpoint resnet34_dh128_sbd.pth \\
        --datasets GrabCut --data-root ../shared/data --max-samples 50

Expected (experiments/results/ablation_taps_hrnet18s_ocr64/): the taps after OCR (ocr_feats,
ocr_context, ocr_out) beat both baselines (NoC@85 16.7-17.9 against 19.60 / 20.00) at 53-96 ms
per click; the Pareto front is made of ocr_out cells and logit cells with a bias (45-60 ms);
input-side variables (image, dist_maps, rgb_conv) cost 8-15x NoBRS per click and reach NoC@85
18.1 at best (dist_maps scale and bias), NoC@90 never below 20.00; budgets above 10 change NoC
in 2 of the 30 (tap, variables) pairs: the solves end on the stopping rules after 3-7
evaluations.
"""
from fbrs_jax.brs.spec import PRESETS, RefinementSpec, preset
from fbrs_jax.eval.ablation import AblationConfig

VARIABLES = {'scale': dict(scale='1+s', bias='none'), 'bias': dict(scale='none', bias='channel'),
             'scale+bias': dict(scale='1+s', bias='channel')}
BUDGETS = (5, 10, 20, 40)


def cells(taps):
    # the cells below feed the network at most 8 clicks: the second baseline is NoBRS so limited
    grid = {'NoBRS': PRESETS['NoBRS'], 'NoBRS (clicks limit 8)': preset('NoBRS', clicks_limit=8)}
    for tap in taps:
        for label, variables in VARIABLES.items():
            for budget in BUDGETS:
                grid[f'{tap}/{label}/{budget}'] = RefinementSpec(tap=tap, maxfun=budget, **variables)
    return grid


def get_config() -> AblationConfig:
    return AblationConfig(cells=cells, max_samples=10)
