"""IoU with an ignore label and the NoC / NoF / SPC summaries (SPEC §4.3-4.5)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

# arange(0.8, min(0.95, 0.9) + 0.001, 0.05) in float64, compared against float32 IoUs (T14).
NOC_THRESHOLDS = (0.80, 0.85, 0.90)


def iou(gt_mask: np.ndarray, pred_mask: np.ndarray, ignore_label: int = -1) -> float:
    """|pred ∧ gt| / |pred ∨ gt| over the pixels that are not ignored."""
    valid = gt_mask != ignore_label
    gt = gt_mask == 1
    pred = np.asarray(pred_mask, bool)
    inter = np.count_nonzero(pred & gt & valid)
    union = np.count_nonzero((pred | gt) & valid)
    return inter / union if union else 0.0


def noc(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Clicks needed to reach ``threshold`` (first IoU >= it, compared in float32), else ``max_clicks``."""
    arr = np.asarray(ious, np.float32)
    hits = np.flatnonzero(arr >= np.float32(threshold))
    return int(hits[0]) + 1 if hits.size else max_clicks


def summarize(all_ious: Sequence[Sequence[float]], elapsed_s: float | None = None,
              thresholds: Sequence[float] = NOC_THRESHOLDS, max_clicks: int = 20) -> dict:
    """NoC@t (mean), NoF@t (samples with NoC == max_clicks) for every threshold, and SPC / SPI."""
    out: dict = {'samples': len(all_ious), 'clicks': int(sum(len(x) for x in all_ious))}
    for t in thresholds:
        nocs = np.array([noc(x, t, max_clicks) for x in all_ious])
        key = f'{round(t * 100)}'
        out[f'NoC@{key}'] = float(nocs.mean()) if len(nocs) else float('nan')
        out[f'NoF@{key}'] = int(np.count_nonzero(nocs == max_clicks))
    if elapsed_s is not None:
        out['elapsed_s'] = float(elapsed_s)
        out['SPC'] = elapsed_s / out['clicks'] if out['clicks'] else float('nan')
        out['SPI'] = elapsed_s / out['samples'] if out['samples'] else float('nan')
    return out


def mean_iou_curve(all_ious: Sequence[Sequence[float]], max_clicks: int = 20) -> np.ndarray:
    """Mean IoU after each click; a sample that stopped early keeps its last IoU."""
    curve = np.zeros(max_clicks)
    for x in all_ious:
        x = np.asarray(x, np.float64)
        curve += np.concatenate([x, np.full(max_clicks - len(x), x[-1] if len(x) else 0.0)])[:max_clicks]
    return curve / max(len(all_ious), 1)
