"""The paper's comparison of what BRS optimises (f-BRS, CVPR 2020, Table 2): NoBRS, RGB-BRS,
DistMap-BRS and f-BRS-A/B/C, each with the reference evaluation settings.

Command (the shipped model on the first 20 scenes of the synthetic eval split, ~26 min on 2
CPU cores with an empty compilation cache, most of it the input-BRS cells; without
--max-samples all 30):

    fbrs-jax ablate --config experiments/ablation_paper.py --max-samples 20

writes runs/ablation/ablation_paper_hrnet18s_ocr64/{table.md,cells.csv,cells.json,pareto.png}.
Expected (committed in experiments/results/ablation_paper_hrnet18s_ocr64/): NoC@90 NoBRS 19.75,
RGB-BRS 20.00, DistMap-BRS 19.90, f-BRS-A = f-BRS-B 20.00 (NoC@85 18.20 vs NoBRS 18.80; on
HRNet both insert at the same tap), f-BRS-C 18.05; warm ms per click 90 / 514 / 979 / 202 /
199 / 52. On a released model and the real sets:

    fbrs-jax ablate --config experiments/ablation_paper.py --checkpoint resnet34_dh128_sbd.pth \\
        --datasets GrabCut,Berkeley --data-root ../shared/data

Input-BRS (RGB-, DistMap-) re-runs the whole network at every L-BFGS evaluation: per click it
costs 2.5-5x f-BRS-A/B and 10-19x f-BRS-C on the shipped model, which is the paper's point.
"""
from fbrs_jax.brs.spec import PRESETS
from fbrs_jax.eval.ablation import AblationConfig


def get_config() -> AblationConfig:
    return AblationConfig(cells=dict(PRESETS))
