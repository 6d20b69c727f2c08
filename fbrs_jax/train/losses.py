"""Training losses and the AdaptiveIoU metric of the reference (SPEC §5.4, §5.5).

Losses take logits and targets of shape (B, H, W) (or (B, H, W, 1)); targets are 1 / 0 and
-1 for ignored pixels. Both return the batch mean of the per-image losses.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-12


def _per_image(x):
    return x.reshape(x.shape[0], -1)


def normalized_focal_loss(logits, target, alpha: float = 0.5, gamma: float = 2.0):
    """NormalizedFocalLossSigmoid: sum_valid a_t (1-p_t)^g (-log p_t) * m / sum_valid 1, where the
    normaliser m = sum_valid 1 / sum (1-p_t)^g is held constant (no gradient) per image."""
    x, y = _per_image(logits.astype(jnp.float32)), _per_image(target.astype(jnp.float32))
    valid = (y != -1).astype(jnp.float32)
    positive = y > 0
    p = jax.nn.sigmoid(x)
    alpha_t = jnp.where(positive, alpha, 1.0 - alpha)
    p_t = jnp.where(valid > 0, jnp.where(positive, p, 1.0 - p), 1.0)
    beta = (1.0 - p_t) ** gamma
    valid_sum = valid.sum(-1, keepdims=True)
    mult = jax.lax.stop_gradient(valid_sum / (beta.sum(-1, keepdims=True) + EPS))
    pixel = -alpha_t * beta * mult * jnp.log(jnp.minimum(p_t + EPS, 1.0)) * valid
    return jnp.mean(pixel.sum(-1) / (valid_sum[:, 0] + EPS))


def sigmoid_bce(logits, target):
    """SigmoidBinaryCrossEntropyLoss from logits: ignored pixels masked out but kept in the
    per-image mean's denominator (as the reference does)."""
    x, y = _per_image(logits.astype(jnp.float32)), _per_image(target.astype(jnp.float32))
    valid = (y != -1).astype(jnp.float32)
    y = jnp.where(valid > 0, y, 0.0)
    pixel = (jax.nn.relu(x) - x * y + jax.nn.softplus(-jnp.abs(x))) * valid
    return jnp.mean(pixel.mean(-1))


LOSSES = {'nfl': normalized_focal_loss, 'bce': sigmoid_bce}


def threshold_ious(logits, target, thresholds):
    """Mean IoU over images with a non-empty union, of ``sigmoid(logits) > t`` for each t
    (ignored pixels predicted negative), and whether any image has a non-empty ground truth."""
    p = _per_image(jax.nn.sigmoid(logits.astype(jnp.float32)))
    y = _per_image(target)
    gt = y > 0

    def one(t):
        pred = (p > t) & (y != -1)
        inter = (pred & gt).sum(-1)
        union = (pred | gt).sum(-1)
        nonzero = union > 0
        iou = jnp.where(nonzero, inter / jnp.maximum(union, 1), 0.0)
        return iou.sum() / jnp.maximum(nonzero.sum(), 1)

    return jax.vmap(one)(jnp.asarray(thresholds, jnp.float32)), gt.any()


class AdaptiveIoU:
    """The reference AdaptiveIoU: threshold search by +-step, EMA of threshold and IoU, epoch mean
    of the per-batch best IoU. ``thresholds()`` gives the three thresholds to evaluate on device."""

    def __init__(self, init_thresh=0.4, thresh_step=0.025, thresh_beta=0.99, iou_beta=0.9):
        self.thresh, self.step = init_thresh, thresh_step
        self.thresh_beta, self.iou_beta = thresh_beta, iou_beta
        self.ema_iou = 0.0
        self.epoch_sum, self.epoch_count = 0.0, 0

    def thresholds(self) -> np.ndarray:
        return np.array([self.thresh, self.thresh - self.step, self.thresh + self.step], np.float32)

    def update(self, ious, any_gt) -> None:
        """Consume ``threshold_ious`` for ``thresholds()`` (first maximum wins, as the reference)."""
        if not bool(any_gt):
            return
        ious = [float(v) for v in np.asarray(ious)]
        best = 0
        for k in (1, 2):
            if ious[k] > ious[best]:
                best = k
        self.thresh = self.thresh_beta * self.thresh + (1 - self.thresh_beta) * float(self.thresholds()[best])
        self.ema_iou = self.iou_beta * self.ema_iou + (1 - self.iou_beta) * ious[best]
        self.epoch_sum += ious[best]
        self.epoch_count += 1

    def epoch_value(self) -> float:
        return self.epoch_sum / self.epoch_count if self.epoch_count else 0.0

    def state(self) -> dict:
        return {k: getattr(self, k) for k in ('thresh', 'ema_iou', 'epoch_sum', 'epoch_count')}

    def load_state(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
