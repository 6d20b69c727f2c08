"""ZoomIn: crop around the current object and resize it to the network's working size (SPEC §2.5).

The ROI logic runs on the host (it is integer box arithmetic on the previous mask); the crop
resize and the paste-back are align-corners resizes. Coordinates are (row, col); boxes are
``(rmin, rmax, cmin, cmax)``, inclusive.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Sequence

import numpy as np

from ..clicks import Click

Box = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class ZoomInParams:
    target_size: int = 400
    skip_clicks: int = 1
    expansion_ratio: float = 1.4
    min_crop_size: int = 200
    recompute_thresh_iou: float = 0.5
    prob_thresh: float = 0.50


def bbox_from_mask(mask: np.ndarray) -> Box:
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def expand_bbox(box: Box, ratio: float, min_size: Optional[float] = None) -> Box:
    """Scale a box about its centre; Python's half-to-even rounding, as the reference (T20)."""
    rmin, rmax, cmin, cmax = box
    rc, cc = 0.5 * (rmin + rmax), 0.5 * (cmin + cmax)
    height, width = ratio * (rmax - rmin + 1), ratio * (cmax - cmin + 1)
    if min_size is not None:
        height, width = max(height, min_size), max(width, min_size)
    return (int(round(rc - 0.5 * height)), int(round(rc + 0.5 * height)),
            int(round(cc - 0.5 * width)), int(round(cc + 0.5 * width)))


def clamp_bbox(box: Box, h: int, w: int) -> Box:
    rmin, rmax, cmin, cmax = box
    return max(0, rmin), min(h - 1, rmax), max(0, cmin), min(w - 1, cmax)


def mask_box(mask: np.ndarray) -> Optional[Box]:
    """The tight box of a bool mask, None when it is empty."""
    return bbox_from_mask(mask) if mask.any() else None


def object_roi(box: Box, hw: tuple[int, int], clicks: Sequence[Click], ratio: float, min_size: float) -> Box:
    """The tight box of the mask (``box``) and the positive clicks' pixels, expanded and
    clamped to the (h, w) image."""
    rmin, rmax, cmin, cmax = box
    for c in clicks:
        if c.is_positive:
            r, col = int(c.row), int(c.col)
            rmin, rmax, cmin, cmax = min(rmin, r), max(rmax, r), min(cmin, col), max(cmax, col)
    return clamp_bbox(expand_bbox((rmin, rmax, cmin, cmax), ratio, min_size), *hw)


def segments_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    union = max(1e-6, max(a[1], b[1]) - min(a[0], b[0]) + 1)
    return inter / union


def bbox_iou(a: Box, b: Box) -> float:
    return segments_iou(a[:2], b[:2]) * segments_iou(a[2:], b[2:])


def clicks_inside(box: Box, clicks: Sequence[Click]) -> bool:
    """Whether every positive click lies in the box; note ``>=`` on the max side."""
    rmin, rmax, cmin, cmax = box
    return all(rmin <= c.row < rmax and cmin <= c.col < cmax for c in clicks if c.is_positive)


def roi_size(box: Box, target_size: int) -> tuple[int, int]:
    """Network size of a crop: longer side = target, half-to-even rounding."""
    h, w = box[1] - box[0] + 1, box[3] - box[2] + 1
    scale = target_size / max(h, w)
    return int(round(h * scale)), int(round(w * scale))


def transform_clicks(box: Box, crop_hw: tuple[int, int], clicks: Sequence[Click]) -> list[Click]:
    """Original -> crop frame with the reference's 'edge' mapping; floats, no rounding."""
    rmin, rmax, cmin, cmax = box
    return [Click(crop_hw[0] * (c.row - rmin) / (rmax - rmin + 1),
                  crop_hw[1] * (c.col - cmin) / (cmax - cmin + 1), c.is_positive) for c in clicks]


class ZoomState(NamedTuple):
    """What ZoomIn remembers between clicks."""
    prev_box: Optional[Box] = None            # box of the last click's mask (probability > prob_thresh)
    roi: Optional[Box] = None                 # the crop box (kept while the mask is empty: T13)
    roi_hw: Optional[tuple[int, int]] = None  # its network size


class ZoomIn:
    """The ZoomIn transform's decisions; its state is a ``ZoomState`` value, the predictor does
    the resizes."""

    def __init__(self, params: ZoomInParams = ZoomInParams()):
        self.params = params

    def decide(self, state: ZoomState, clicks: Sequence[Click], hw: tuple[int, int]) -> tuple[ZoomState, bool, bool]:
        """The state for this click list on an (h, w) image, whether it is zoomed and whether
        the network input changed.

        Not zoomed means the full image passes through: on the first ``skip_clicks`` clicks, and
        whenever the previous mask is empty or there is none (then a stale ROI is still used to
        paste the output back - the reference's T13 behaviour).
        """
        p = self.params
        if len(clicks) <= p.skip_clicks or state.prev_box is None:
            return state, False, False
        candidate = object_roi(state.prev_box, hw, clicks, p.expansion_ratio, p.min_crop_size)
        if (state.roi is None or not clicks_inside(state.roi, clicks)
                or bbox_iou(candidate, state.roi) < p.recompute_thresh_iou):
            return state._replace(roi=candidate, roi_hw=roi_size(candidate, p.target_size)), True, True
        return state, True, False


class LimitState(NamedTuple):
    """What LimitLongestSide remembers between clicks."""
    roi: Optional[Box] = None                 # the full-image box once an input was resized
    roi_hw: Optional[tuple[int, int]] = None  # its network size
    prev_hw: Optional[tuple[int, int]] = None  # shape of the last inverse output


class LimitLongestSide:
    """LimitLongestSide (SPEC 2.6): inputs longer than ``max_size`` are resized whole
    (``image_changed`` on every such call). As in the reference, the full-image box stays set
    after a passthrough call, so the inverse still resizes and pastes."""

    def __init__(self, max_size: int = 800):
        self.max_size = max_size

    def decide(self, state: LimitState, hw: tuple[int, int]) -> tuple[LimitState, bool]:
        """The state for an (h, w) input and whether it must be resized."""
        if max(hw) <= self.max_size:
            return state, False
        roi = (0, hw[0] - 1, 0, hw[1] - 1)
        return state._replace(roi=roi, roi_hw=roi_size(roi, self.max_size)), True
