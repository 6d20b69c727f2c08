"""``make_predictor``: the reference's ``get_predictor`` with the evaluation defaults (SPEC 2.1)."""
from __future__ import annotations

import dataclasses
from typing import Optional, Union

from ..brs.solvers import LBFGSSettings, get_backend
from ..models.model import Model
from .predictor import INPUT_TAPS, BRSSettings, Predictor
from .zoom_in import ZoomInParams

MODES = ('NoBRS', 'RGB-BRS', 'DistMap-BRS', 'f-BRS-A', 'f-BRS-B', 'f-BRS-C')
_DEFAULT = object()


def default_clicks_limit(mode: str) -> Optional[int]:
    """Network clicks limit of the reference evaluation: all (NoBRS), 5 (input BRS), 8 (f-BRS)."""
    return None if mode == 'NoBRS' else 5 if mode in INPUT_TAPS else 8


def make_predictor(model: Model, mode: str, *, with_flip: bool = True,
                   zoom_in: Union[None, dict, ZoomInParams] = ZoomInParams(),
                   max_size: Optional[int] = None, net_clicks_limit=_DEFAULT,
                   prob_thresh: float = 0.49, min_iou_diff: float = 0.01,
                   reg_weight: float = 1e-3, reg_bias_weight: float = 10.0,
                   optimize_after_n_clicks: int = 1, maxfun: int = 20, maxiter: Optional[int] = None,
                   history: int = 20, pgtol: float = 1e-8, maxls: int = 20,
                   backend: str = 'jaxopt', canvas: Optional[tuple[int, int]] = None) -> Predictor:
    """A predictor for ``mode`` (one of ``MODES``) with the reference evaluation settings.

    ``zoom_in``: ZoomInParams, a dict of ZoomInParams fields overriding the defaults (e.g.
    ``{'target_size': 600}`` for DAVIS) or None to disable; ``max_size``: LimitLongestSide;
    ``net_clicks_limit``: None = all clicks; L-BFGS: ``maxfun`` (every objective evaluation
    counts), ``maxiter`` (default 2*maxfun), ``history``, ``pgtol``, ``maxls``; ``backend``:
    'jaxopt' (default), 'optax' or 'scipy' (exact reference replay on the host); ``canvas``:
    the (H, W) full-image canvas of a run (every image must fit; default: per image, rounded
    up to a multiple of 32) - one compiled program serves all images on one canvas.
    """
    if mode not in MODES:
        raise ValueError(f'unknown mode {mode!r}; choose one of {", ".join(MODES)}')
    if isinstance(zoom_in, dict):
        zoom_in = dataclasses.replace(ZoomInParams(), **zoom_in)
    if net_clicks_limit is _DEFAULT:
        net_clicks_limit = default_clicks_limit(mode)
    common = dict(with_flip=with_flip, zoom_in=zoom_in, max_size=max_size, net_clicks_limit=net_clicks_limit,
                  canvas=canvas)
    if mode == 'NoBRS':
        return Predictor(model, mode, **common)
    get_backend(backend)
    lbfgs = LBFGSSettings(maxfun=maxfun, maxiter=2 * maxfun if maxiter is None else maxiter,
                          history=history, pgtol=pgtol, maxls=maxls)
    brs = BRSSettings(prob_thresh=prob_thresh, min_iou_diff=min_iou_diff, reg_weight=reg_weight,
                      reg_bias_weight=reg_bias_weight, optimize_after_n_clicks=optimize_after_n_clicks,
                      lbfgs=lbfgs, backend=backend)
    return Predictor(model, mode, brs=brs, **common)
