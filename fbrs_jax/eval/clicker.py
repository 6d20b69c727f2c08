"""The reference's automatic clicker (SPEC §4.1) and the click type."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import distance_transform_edt


class Click(NamedTuple):
    """A click at integer or float pixel coordinates (row, col) in the original image."""
    row: float
    col: float
    is_positive: bool


class Clicker:
    """Next click = the error pixel farthest from the error region's border.

    ``gt_mask``: 1 object, 0 background, -1 ignore. The image border counts as background
    (1-pixel padding before the distance transform); positive only if the false-negative
    maximum is strictly larger; location = first maximum in row-major order; a pixel is
    never clicked twice (its distance is zeroed).
    """

    def __init__(self, gt_mask: np.ndarray, ignore_label: int = -1):
        gt_mask = np.asarray(gt_mask)
        if gt_mask.ndim != 2:
            raise ValueError(f'gt mask must be 2-D, got shape {gt_mask.shape}')
        self.gt = gt_mask == 1
        self.valid = gt_mask != ignore_label
        self.not_clicked = np.ones(gt_mask.shape, bool)
        self.clicks: list[Click] = []

    def make_next_click(self, pred_mask: np.ndarray) -> Click:
        pred = np.asarray(pred_mask, bool)
        if pred.shape != self.gt.shape:
            raise ValueError(f'prediction shape {pred.shape} differs from the gt mask {self.gt.shape}')
        fn = self.gt & ~pred & self.valid
        fp = ~self.gt & pred & self.valid
        fn_dt = _padded_edt(fn) * self.not_clicked
        fp_dt = _padded_edt(fp) * self.not_clicked
        fn_max, fp_max = fn_dt.max(), fp_dt.max()
        is_positive = bool(fn_max > fp_max)
        dt, best = (fn_dt, fn_max) if is_positive else (fp_dt, fp_max)
        flat = int(np.argmax(dt.ravel() == best))  # first maximum, row-major
        row, col = divmod(flat, dt.shape[1])
        click = Click(row, col, is_positive)
        self.not_clicked[row, col] = False
        self.clicks.append(click)
        return click


def _padded_edt(mask: np.ndarray) -> np.ndarray:
    return distance_transform_edt(np.pad(mask, 1, mode='constant'))[1:-1, 1:-1]
