"""Where to insert the optimised variables: every tap of the model x {scale, bias, scale and bias}
x a budget of {5, 10, 20, 40} objective evaluations per click (jaxopt L-BFGS, f-BRS
regulariser, f-BRS clicks limit 8), NoBRS as the baseline. Taps include ones the paper never
tried (``c3``, between the DeepLab head's separable convolutions, before HRNet's OCR, the
fusion block ``rgb_conv``, the logits).

Command (the shipped model, first 10 synthetic eval samples; 10 taps x 3 x 4 = 120 cells; the
budget is data of the compiled click program, so the four budgets of a (tap, variables) pair share
its programs). On 2 CPU cores the input-side taps (image, dist_maps, rgb_conv) take ~4.5 min to
compile per (tap, variables) pair and ~3 min per cell, so the grid runs for hours there - it is
resumable, and not yet run to the end; no GPU timing yet:

    fbrs-jax ablate --config experiments/ablation_taps.py

The full split (30 scenes): add ``--max-samples 30``. On a released model and a real set:

    fbrs-jax ablate --config experiments/ablation_taps.py --checkpoint resnet34_dh128_sbd.pth \\
        --datasets GrabCut --data-root ../shared/data --max-samples 50

Expected: the Pareto plot's front is made of late taps (cheap: only the layers after the tap
run per evaluation) with scale + bias; input-side taps cost the most per click.
"""
from fbrs_jax.brs.spec import PRESETS, RefinementSpec
from fbrs_jax.eval.ablation import AblationConfig

VARIABLES = {'scale': dict(scale='1+s', bias='none'), 'bias': dict(scale='none', bias='channel'),
             'scale+bias': dict(scale='1+s', bias='channel')}
BUDGETS = (5, 10, 20, 40)


def cells(taps):
    grid = {'NoBRS': PRESETS['NoBRS']}
    for tap in taps:
        for label, variables in VARIABLES.items():
            for budget in BUDGETS:
                grid[f'{tap}/{label}/{budget}'] = RefinementSpec(tap=tap, maxfun=budget, **variables)
    return grid


def get_config() -> AblationConfig:
    return AblationConfig(cells=cells, max_samples=10)
