"""The paper's comparison of what BRS optimises (f-BRS, CVPR 2020, Table 2): NoBRS, RGB-BRS,
DistMap-BRS and f-BRS-A/B/C, each with the reference evaluation settings.

Command (the shipped model on the synthetic eval split, 2 CPU cores):

    fbrs-jax ablate --config experiments/ablation_paper.py

writes runs/ablation/ablation_paper_hrnet18s_ocr64/{table.md,cells.csv,cells.json,pareto.png}
(expected: f-BRS-B at or below NoBRS in NoC at a fraction of RGB-BRS's time per click; the run
on the shipped model is to be committed with it under experiments/results/). On a released
model and the real sets:

    fbrs-jax ablate --config experiments/ablation_paper.py --checkpoint resnet34_dh128_sbd.pth \\
        --datasets GrabCut,Berkeley --data-root ../shared/data

Input-BRS (RGB-, DistMap-) re-runs the whole network at every L-BFGS evaluation: it is ~10x the
cost of f-BRS per click, which is the paper's point.
"""
from fbrs_jax.brs.spec import PRESETS
from fbrs_jax.eval.ablation import AblationConfig


def get_config() -> AblationConfig:
    return AblationConfig(cells=dict(PRESETS))
