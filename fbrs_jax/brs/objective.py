"""The BRS objective (SPEC §3.1-3.5): click masks, BRSMaskLoss, and the optimised variables.

What is optimised is data: a ``TapVariables`` object says which tap it edits, how a flat
vector maps onto the edit, and its regulariser. Input-BRS edits ``image`` or ``dist_maps``
with a per-pixel bias; f-BRS edits a feature tap with a per-channel scale and bias. The
objective is a pure function of the flat vector, so any solver (jaxopt, optax, SciPy, Adam)
can drive it.
"""
from __future__ import annotations

import dataclasses
import functools
import operator
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from ..clicks import Click
from ..models.canvas import flip_w, valid_mask
from .reference_settings import PROB_THRESH, REG_BIAS_WEIGHT, REG_WEIGHT

LOSS_EPS = 1e-5


def click_squares(click_lists: Sequence[Sequence[Click]], hw: tuple[int, int],
                  slots: Optional[int] = None) -> np.ndarray:
    """(lists, slots, 5) int32 [r0, r1, c0, c1, sign]: each click's 3x3 square at the rounded
    (half-to-even) coordinate as the rows [r0, r1) and columns [c0, c1) that numpy's slice
    ``[y-1:y+2, x-1:x+2]`` takes on the (h, w) image - a negative start wraps or empties the
    square exactly as in the reference (trap T9); sign +1 positive, -1 negative, 0 padding
    (``slots``: at least the longest list)."""
    slots = max([len(c) for c in click_lists] + [slots or 0, 1])
    out = np.zeros((len(click_lists), slots, 5), np.int32)
    for i, clicks in enumerate(click_lists):
        for k, c in enumerate(clicks):
            y, x = int(round(float(c.row))), int(round(float(c.col)))
            rows, cols = slice(y - 1, y + 2).indices(hw[0]), slice(x - 1, x + 2).indices(hw[1])
            out[i, k] = rows[0], rows[1], cols[0], cols[1], 1 if c.is_positive else -1
    return out


def square_masks(squares, canvas_hw: tuple[int, int]):
    """``click_squares`` -> (lists, H, W, 1) float32 positive and negative masks on an (H, W)
    canvas (traceable: the click step builds them on the device)."""
    squares = jnp.asarray(squares)
    inside = lambda n, lo, hi: ((jnp.arange(n) >= squares[..., lo, None])
                                & (jnp.arange(n) < squares[..., hi, None])).astype(jnp.float32)
    rows, cols = inside(canvas_hw[0], 0, 1), inside(canvas_hw[1], 2, 3)
    mask = lambda sign: (jnp.einsum('kih,kiw->khw', rows * (squares[..., 4, None] == sign), cols,
                                    precision='highest') > 0).astype(jnp.float32)[..., None]
    return mask(1), mask(-1)


def click_masks(click_lists: Sequence[Sequence[Click]], hw: tuple[int, int],
                canvas_hw: Optional[tuple[int, int]] = None) -> tuple[np.ndarray, np.ndarray]:
    """(lists, h, w, 1) positive / negative masks of ``click_squares`` (NumPy), zero-padded to
    ``canvas_hw`` when given."""
    pos, neg = square_masks(click_squares(click_lists, hw), canvas_hw or hw)
    return np.asarray(pos), np.asarray(neg)


def mask_loss(probs, pos, neg):
    """BRSMaskLoss over the whole batch; returns (loss, f_max_pos, f_max_neg)."""
    pos_err = (1.0 - probs) * pos
    neg_err = probs * neg
    loss = (jnp.sum(pos_err ** 2) / (jnp.sum(pos) + LOSS_EPS)
            + jnp.sum(neg_err ** 2) / (jnp.sum(neg) + LOSS_EPS))
    return loss, jnp.max(jnp.abs(pos_err)), jnp.max(jnp.abs(neg_err))


@dataclasses.dataclass(frozen=True)
class TapVariables:
    """The optimised variables at one tap (``RefinementSpec`` made concrete for a model and a
    canvas): x = [s | b] with a per-channel scale s (``scale``: '1+s', 'tanh' or 'none') and a
    bias b (``bias``: 'channel', 'pixel' or 'none'). A per-pixel bias has shape (1, C, h, w)
    flattened in C order as the reference's input-BRS does; the flipped half gets it flipped
    within the image width ``width`` (on a canvas, the bias outside the image gets no gradient
    and stays zero). Regulariser: ``reg_weight * (sum s^2 + reg_bias_weight * sum b^2)``, the
    per-pixel bias summed over both halves. RGB-/DistMap-BRS: a pixel bias at ``image`` /
    ``dist_maps`` (reg_bias_weight 1); f-BRS: '1+s' and a channel bias at a feature tap."""
    tap: str
    channels: int
    bias: str = 'channel'
    scale: str = '1+s'
    hw: Optional[tuple[int, int]] = None     # per-pixel bias: the tap's (h, w) (the net canvas)
    reg_weight: float = REG_WEIGHT
    reg_bias_weight: float = REG_BIAS_WEIGHT

    @property
    def per_pixel(self) -> bool:
        """Its size depends on the canvas: reset, not carried over, when the input changes."""
        return self.bias == 'pixel'

    @property
    def scale_size(self) -> int:
        return 0 if self.scale == 'none' else self.channels

    @property
    def size(self) -> int:
        bias = {'none': 0, 'channel': self.channels}.get(self.bias) if not self.per_pixel \
            else self.channels * self.hw[0] * self.hw[1]
        return self.scale_size + bias

    def edits_and_reg(self, x, with_flip: bool, width=None):
        s, b = x[:self.scale_size], x[self.scale_size:]
        if self.per_pixel:
            delta = jnp.transpose(b.reshape(1, self.channels, *self.hw), (0, 2, 3, 1))
            width = self.hw[1] if width is None else width
            b = jnp.concatenate([delta, flip_w(delta, width, axis=2)]) if with_flip else delta
        terms = (([jnp.sum(s ** 2)] if self.scale != 'none' else [])
                 + ([self.reg_bias_weight * jnp.sum(b ** 2)] if self.bias != 'none' else []))
        reg = self.reg_weight * functools.reduce(operator.add, terms)
        factor = {'1+s': lambda: 1.0 + s, 'tanh': lambda: 1.0 + jnp.tanh(s)}.get(self.scale)

        def edit(f):
            if factor is not None:
                f = f * factor().astype(f.dtype)
            return f + b.astype(f.dtype) if self.bias != 'none' else f
        return {self.tap: edit}, reg


def make_objective(module, variables, refine, values: Mapping[str, jnp.ndarray], start, pos, neg,
                   with_flip: bool = True, extent=None) -> Callable:
    """x -> (loss, aux) with aux = {logits, f_max_pos, f_max_neg}; ``values``/``start`` are the
    network inputs (input-BRS) or the carry of the f-BRS tap; ``extent``: the image's (h, w)
    on a canvas (None: the arrays are the image)."""
    def objective(x):
        edits, reg = refine.edits_and_reg(x, with_flip, None if extent is None else extent[1])
        logits = module.apply(variables, carry=dict(values), start=start, edits=edits, stop='logits',
                              extent=extent)['logits']
        loss, f_max_pos, f_max_neg = mask_loss(jax.nn.sigmoid(logits), pos, neg)
        return loss + reg, {'logits': logits, 'f_max_pos': f_max_pos, 'f_max_neg': f_max_neg}
    return objective


def clicks_satisfied(aux, prob_thresh: float = PROB_THRESH):
    """The reference's first early exit: every click on the right side of the threshold."""
    return (aux['f_max_pos'] < 1.0 - prob_thresh) & (aux['f_max_neg'] < prob_thresh)


def mask_iou(current, last, n=None):
    """Mean over samples of mean(inter) / mean(union) in float32 with true divisions (as torch's
    mean; XLA's ``jnp.mean`` multiplies by 1/n, one ulp off) over ``n`` pixels (default: the
    array; on a canvas the masks are False outside the image and ``n`` is its pixel count);
    samples with an empty union are dropped (NaN when all are, which never passes a threshold)."""
    n = np.prod(current.shape[1:]) if n is None else n
    n = jax.lax.optimization_barrier(jnp.asarray(n, jnp.float32))  # keep a true division
    count = lambda m: jnp.sum(m.astype(jnp.float32), axis=tuple(range(1, m.ndim)))
    inter, union = count(current & last) / n, count(current | last) / n
    valid = union > 0
    iou = jnp.where(valid, inter / jnp.where(valid, union, 1.0), 0.0)
    return jnp.sum(iou) / jnp.sum(valid.astype(jnp.float32))


@functools.lru_cache(maxsize=None)
def brs_function(module, refine, start, with_flip: bool = True, prob_thresh: float = PROB_THRESH,
                 min_iou_diff: float = 0.01) -> Callable:
    """The reference functor as a pure function for the solvers (see ``solvers.py``):
    ``fun(x, last_mask, has_last, variables, values, pos, neg, extent, frozen) -> (loss, aux)``.

    ``extent``: the image's (h, w) on the canvas of ``values``; ``frozen``: a zero gradient
    (the solvers then stop after this one evaluation - a click that is not optimised runs
    the same program). Its gradient is also zero when every click is satisfied or when the
    thresholded mask's IoU with ``last_mask`` exceeds ``1 - min_iou_diff`` in float32 (over
    the image's pixels); ``aux`` carries ``logits``,
    ``mask`` (probs > prob_thresh), ``satisfied``, ``stagnated`` and ``stop``. One function
    object per configuration, so jit caches hit.
    """
    iou_thresh = np.float32(1.0 - min_iou_diff)

    def fun(x, last_mask, has_last, variables, values, pos, neg, extent, frozen):
        loss, aux = make_objective(module, variables, refine, values, start, pos, neg, with_flip, extent)(x)
        hw = aux['logits'].shape[1:3]
        valid = valid_mask(hw, extent)[None, :, :, None]
        mask = (jax.nn.sigmoid(aux['logits']) > prob_thresh) & valid
        satisfied = clicks_satisfied(aux, prob_thresh)
        stagnated = jnp.asarray(False)
        if min_iou_diff > 0:
            n = extent[0] * extent[1]
            stagnated = has_last & ~satisfied & (mask_iou(mask, last_mask, n) > iou_thresh)
        stop = satisfied | stagnated
        loss = jnp.where(stop | frozen, jax.lax.stop_gradient(loss), loss)
        return loss, dict(aux, mask=mask, satisfied=satisfied, stagnated=stagnated, stop=stop)
    return fun
