"""The reference's automatic clicker (SPEC §4.1)."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt

from ..clicks import Click


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


def squared_edt(mask):
    """Squared Euclidean distance (int32, exact) of every pixel of the (H, W) bool ``mask`` to
    the nearest pixel outside it, with everything beyond the array outside (0 outside the
    mask): ``_padded_edt(mask) ** 2``, computed on the device. Along the columns two
    cumulative scans give each pixel's distance to the nearest outside pixel of its column,
    g; along the rows the distance is min over t of g(j + t)^2 + t^2, taken for t = 0, 1, ...
    until t^2 reaches the largest value so far - a number of passes equal to the largest
    distance, not the width."""
    import jax
    import jax.numpy as jnp

    h, w = mask.shape
    rows = jnp.arange(h, dtype=jnp.int32)[:, None]
    above = jax.lax.cummax(jnp.where(mask, -1, rows), axis=0)
    below = jax.lax.cummin(jnp.where(mask, h, rows), axis=0, reverse=True)
    g2 = jnp.square(jnp.minimum(rows - above, below - rows))
    big = jnp.int32(np.iinfo(np.int32).max // 2)
    # outside the array: one column of zeros (the border is outside), then values never chosen
    padded = jnp.concatenate([jnp.full((h, w), big), jnp.zeros((h, 1), jnp.int32), g2,
                              jnp.zeros((h, 1), jnp.int32), jnp.full((h, w), big)], axis=1)

    def body(carry):
        t, best = carry
        left = jax.lax.dynamic_slice_in_dim(padded, w + 1 - t, w, axis=1)
        right = jax.lax.dynamic_slice_in_dim(padded, w + 1 + t, w, axis=1)
        return t + 1, jnp.minimum(best, jnp.minimum(left, right) + t * t)

    _, best = jax.lax.while_loop(lambda c: c[0] * c[0] < jnp.max(c[1]), body, (jnp.int32(1), g2))
    return best


def next_click(gt, valid, pred, not_clicked):
    """``Clicker.make_next_click`` on the device for (H, W) bool arrays (``valid``: not the
    ignore label; a canvas bigger than the image has everything False outside it):
    -> (row, col, is_positive) int32 and the new ``not_clicked``. Distances are compared
    squared and exact, so the click is the host clicker's."""
    import jax.numpy as jnp

    fn = squared_edt(gt & ~pred & valid) * not_clicked
    fp = squared_edt(~gt & pred & valid) * not_clicked
    fn_max, fp_max = jnp.max(fn), jnp.max(fp)
    positive = fn_max > fp_max
    dt, best = jnp.where(positive, fn, fp), jnp.where(positive, fn_max, fp_max)
    flat = jnp.argmax((dt == best).ravel())
    row, col = flat // gt.shape[1], flat % gt.shape[1]
    return jnp.stack([row, col, positive.astype(jnp.int32)]).astype(jnp.int32), not_clicked.at[row, col].set(False)
