"""``make_predictor``: a predictor for a named mode or a ``RefinementSpec`` (SPEC 2.1)."""
from __future__ import annotations

import dataclasses
from typing import Optional, Union

from ..brs.spec import MODES, RefinementSpec, preset
from ..models.model import Model
from .predictor import CANVAS_STEP, Predictor
from .zoom_in import ZoomInParams

__all__ = ['MODES', 'make_predictor']


def make_predictor(model: Model, mode: Union[str, RefinementSpec], *,
                   zoom_in: Union[None, dict, ZoomInParams] = ZoomInParams(),
                   max_size: Optional[int] = None, canvas: Optional[tuple[int, int]] = None,
                   canvas_step: Optional[int] = CANVAS_STEP, **overrides) -> Predictor:
    """A predictor for ``mode`` (one of ``MODES``, with the reference evaluation settings) or a
    ``RefinementSpec``; ``overrides`` replace spec fields (``solver``, ``maxfun``, ``history``,
    ``clicks_limit``, ``with_flip``, ``reg_weight``, ``prob_thresh``, ...).

    ``zoom_in``: ZoomInParams, a dict of ZoomInParams fields overriding the defaults (e.g.
    ``{'target_size': 600}`` for DAVIS), None (or False) to disable; ``max_size``: LimitLongestSide;
    ``canvas``: the (H, W) full-image canvas of a run (every image must fit; default: per
    image, rounded up to ``canvas_step``); ``canvas_step``: the network runs on the image or crop
    size rounded up to it, one compiled program per size bucket (None: on the fixed canvases).
    """
    if isinstance(zoom_in, bool):          # the spec field: on with the default parameters, or off
        overrides['zoom_in'] = zoom_in
        zoom_in = ZoomInParams() if zoom_in else None
    spec = preset(mode, **overrides) if isinstance(mode, str) else dataclasses.replace(mode, **overrides)
    if isinstance(zoom_in, dict):
        zoom_in = dataclasses.replace(ZoomInParams(), **zoom_in)
    return Predictor(model, spec, zoom_in=zoom_in, max_size=max_size, canvas=canvas, canvas_step=canvas_step,
                     name=mode if isinstance(mode, str) else None)
