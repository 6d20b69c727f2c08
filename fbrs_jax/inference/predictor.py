"""The interactive predictor: ZoomIn, horizontal-flip TTA, clicks -> points, paste-back (SPEC §2).

``predict(clicks)`` takes the full ordered click list in original-image coordinates and
returns (H, W) float32 probabilities at the original resolution, as the reference's
``BasePredictor.get_prediction`` does.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from ..eval.clicker import Click
from ..models.model import Model, normalize
from ..models.ops import resize_ac
from .zoom_in import LimitLongestSide, ZoomIn, ZoomInParams, transform_clicks


def points_nd(click_lists: Sequence[Sequence[Click]], net_clicks_limit: Optional[int]) -> np.ndarray:
    """(lists, 2K, 2) points: K from the counts over the full lists, then the first
    ``net_clicks_limit`` clicks of each list, positives then negatives, (-1, -1) padding."""
    pos = [sum(c.is_positive for c in cl) for cl in click_lists]
    neg = [len(cl) - p for cl, p in zip(click_lists, pos)]
    k = max(pos + neg)
    if net_clicks_limit is not None:
        k = min(net_clicks_limit, k)
    k = max(1, k)
    out = np.full((len(click_lists), 2 * k, 2), -1.0, np.float64)
    for i, cl in enumerate(click_lists):
        cl = list(cl)[:net_clicks_limit]
        p = [(c.row, c.col) for c in cl if c.is_positive][:k]
        n = [(c.row, c.col) for c in cl if not c.is_positive][:k]
        if p:
            out[i, :len(p)] = p
        if n:
            out[i, k:k + len(n)] = n
    return out


def flip_clicks(clicks: Sequence[Click], width: int) -> list[Click]:
    return [Click(c.row, width - 1 - c.col, c.is_positive) for c in clicks]


@functools.partial(jax.jit, static_argnames=('box', 'out_hw'))
def crop_resize(image, box, out_hw):
    """Crop an (H, W, C) image to the inclusive box and resize it (align corners) to ``out_hw``."""
    rmin, rmax, cmin, cmax = box
    return resize_ac(image[None, rmin:rmax + 1, cmin:cmax + 1], out_hw)[0]


@functools.partial(jax.jit, static_argnames=('box', 'full_hw'))
def paste_back(probs, box, full_hw):
    """Resize (h, w) probabilities to the box and paste them into zeros of the full size."""
    rmin, rmax, cmin, cmax = box
    roi = resize_ac(probs[None, :, :, None], (rmax - rmin + 1, cmax - cmin + 1))[0, :, :, 0]
    return jnp.zeros(full_hw, probs.dtype).at[rmin:rmax + 1, cmin:cmax + 1].set(roi)


def flip_merged_probs(logits, with_flip: bool):
    """(B, h, w, 1) logits -> (h, w) probabilities; with flip the halves are averaged as
    logits (the second un-flipped), then the sigmoid is applied (SPEC 2.4)."""
    logits = logits[..., 0]
    merged = 0.5 * (logits[0] + logits[1, :, ::-1]) if with_flip else logits[0]
    return jax.nn.sigmoid(merged)


def network_batch(image, with_flip: bool):
    """[image, image flipped along W] with flip, else [image]."""
    return jnp.stack([image, image[:, ::-1]]) if with_flip else image[None]


@functools.partial(jax.jit, static_argnames=('module', 'with_flip'))
def _nobrs_probs(module, variables, image, points, with_flip):
    logits = module.apply(variables, network_batch(image, with_flip), points, stop='logits')['logits']
    return flip_merged_probs(logits, with_flip)


class Predictor:
    """NoBRS predictor; the BRS modes override ``_net_probs`` and keep the transforms."""

    def __init__(self, model: Model, *, with_flip: bool = True,
                 zoom_in: Optional[ZoomInParams] = ZoomInParams(),
                 max_size: Optional[int] = None,
                 net_clicks_limit: Optional[int] = None):
        self.model = model
        self.with_flip = with_flip
        self.zoom = ZoomIn(zoom_in) if zoom_in is not None else None
        self.limit = LimitLongestSide(max_size) if max_size is not None else None
        self.net_clicks_limit = net_clicks_limit
        self.image = None

    def set_image(self, image_uint8_hwc) -> None:
        """New image: resets the zoom state (and, in BRS modes, the optimised variables)."""
        self.image = jnp.asarray(normalize(image_uint8_hwc))
        self.full_hw = tuple(self.image.shape[:2])
        self._roi_image = None
        if self.zoom is not None:
            self.zoom.reset()
        if self.limit is not None:
            self.limit.reset()

    def predict(self, clicks: Sequence[Click]) -> np.ndarray:
        if self.image is None:
            raise ValueError('call set_image() before predict()')
        clicks = [Click(*c) for c in clicks]
        self._validate(clicks)
        image, net_clicks, image_changed = self._transform(clicks)
        lists = [net_clicks]
        if self.with_flip:
            lists.append(flip_clicks(net_clicks, image.shape[1]))
        probs = self._net_probs(image, lists, clicks, image_changed)
        return self._inverse(probs)

    def _validate(self, clicks):
        if not clicks:
            raise ValueError('predict() needs at least one click')
        h, w = self.full_hw
        for c in clicks:
            if not (np.isfinite(c.row) and np.isfinite(c.col)):
                raise ValueError(f'click {c} has a non-finite coordinate')
            if not (0 <= c.row < h and 0 <= c.col < w):
                raise ValueError(f'click ({c.row}, {c.col}) lies outside the {h}x{w} image')

    def _transform(self, clicks):
        """ZoomIn, then LimitLongestSide: (network image, clicks in its frame, image_changed)."""
        image, changed = self.image, False
        if self.zoom is not None:
            zoomed, changed = self.zoom.decide(clicks)
            if zoomed:
                if changed:
                    self._roi_image = crop_resize(self.image, self.zoom.roi, self.zoom.roi_hw)
                image = self._roi_image
                clicks = transform_clicks(self.zoom.roi, self.zoom.roi_hw, clicks)
        if self.limit is not None and self.limit.decide(image.shape[:2]):
            box, hw = self.limit.roi, self.limit.roi_hw
            image, clicks, changed = crop_resize(image, box, hw), transform_clicks(box, hw, clicks), True
        return image, clicks, changed

    def _net_probs(self, image, click_lists, clicks, image_changed):
        points = jnp.asarray(points_nd(click_lists, self.net_clicks_limit), jnp.float32)
        return _nobrs_probs(self.model.module, self.model.variables, image, points, self.with_flip)

    def _inverse(self, probs) -> np.ndarray:
        """LimitLongestSide inverse, then ZoomIn inverse: paste into the stored ROI (also a stale
        one, T13) and keep the result as the previous prediction."""
        if self.limit is not None and self.limit.roi is not None:
            box = self.limit.roi
            probs = paste_back(probs, box, self.limit.prev_hw or (box[1] + 1, box[3] + 1))
        if self.limit is not None:
            self.limit.prev_hw = tuple(probs.shape)
        if self.zoom is not None and self.zoom.roi is not None:
            probs = paste_back(probs, self.zoom.roi, self.full_hw)
        out = np.asarray(probs, np.float32)
        if self.zoom is not None:
            self.zoom.prev_probs = out
        return out
