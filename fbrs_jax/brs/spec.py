"""What the refinement optimises, how, on what budget and with which solver - as data.

A ``RefinementSpec`` names a tap of the model (``image``, ``dist_maps``, ``rgb_conv`` - the
fusion block's output - or any later tap such as ``c3``, ``deeplab_sep1`` or ``ocr_feats``),
the variables inserted there (a per-channel scale and/or a per-channel or per-pixel bias),
their parametrisation and regulariser, the solver and its budget, and the protocol knobs of
the predictor. The six named modes are presets (``PRESETS``); every mode and every ablation
cell runs the same code path.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from .reference_settings import HISTORY, MAXFUN, MIN_IOU_DIFF, PROB_THRESH, REG_BIAS_WEIGHT, REG_WEIGHT
from .solvers import BACKENDS, DEFAULT_BACKEND, get_backend

FBRS_ALIASES = ('f-BRS-A', 'f-BRS-B', 'f-BRS-C')   # the architecture's f-BRS taps (Arch.fbrs_taps)
INPUT_TAPS = ('image', 'dist_maps')                 # the whole network runs at every evaluation
BIASES = ('none', 'channel', 'pixel')
SCALES = ('none', '1+s', 'tanh')
SOLVERS = tuple(BACKENDS)


@dataclasses.dataclass(frozen=True)
class RefinementSpec:
    """One refinement configuration. ``tap=None`` is NoBRS (nothing optimised).

    * ``tap``: a model tap, or ``'f-BRS-A'|'f-BRS-B'|'f-BRS-C'`` for the architecture's f-BRS tap.
    * ``bias``: ``'channel'`` (one value per channel), ``'pixel'`` (per pixel and channel; taps at
      the network input's resolution: image, dist_maps, rgb_conv) or ``'none'``.
    * ``scale``: per-channel ``F * (1 + s)`` (``'1+s'``), ``F * (1 + tanh s)`` (``'tanh'``) or none.
    * regulariser: ``reg_weight * (sum s^2 + reg_bias_weight * sum b^2)`` (a per-pixel bias is
      summed over the image and its flipped copy, as in the reference).
    * ``solver``: 'jaxopt' | 'optax' L-BFGS on device, 'lbfgsb' | 'lbfgsb32' (SciPy's L-BFGS-B
      compiled on device, float64 | float32 solver arithmetic), 'scipy' (L-BFGS-B on the host,
      the reference's exact trajectory) or 'adam' (``maxfun`` steps at ``learning_rate``).
      ``maxfun`` counts objective evaluations; L-BFGS checks it as L-BFGS-B does, before each new
      iteration (the current line search can overrun it; maxiter = 2 * maxfun); ``history`` is the
      L-BFGS memory.
    * protocol: ``clicks_limit`` (clicks fed to the network; None = all), ``with_flip``,
      ``zoom_in`` (ZoomIn on/off; its size comes from the dataset), ``optimize_after_n_clicks``.
    """
    tap: Optional[str] = None
    bias: str = 'channel'
    scale: str = '1+s'
    reg_weight: float = REG_WEIGHT
    reg_bias_weight: float = REG_BIAS_WEIGHT
    solver: str = DEFAULT_BACKEND
    maxfun: int = MAXFUN
    history: int = HISTORY
    learning_rate: float = 0.01
    clicks_limit: Optional[int] = 8
    with_flip: bool = True
    zoom_in: bool = True
    optimize_after_n_clicks: int = 1
    prob_thresh: float = PROB_THRESH
    min_iou_diff: float = MIN_IOU_DIFF

    def __post_init__(self):
        if self.bias not in BIASES:
            raise ValueError(f'bias must be one of {", ".join(BIASES)}, got {self.bias!r}')
        if self.scale not in SCALES:
            raise ValueError(f'scale must be one of {", ".join(SCALES)}, got {self.scale!r}')
        get_backend(self.solver)      # an unknown name: the registry's error
        if self.tap is not None and self.bias == 'none' and self.scale == 'none':
            raise ValueError(f'nothing to optimise at {self.tap!r}: bias and scale are both none')
        if self.maxfun < 1 or self.history < 1:
            raise ValueError(f'maxfun and history must be positive, got {self.maxfun} and {self.history}')
        if self.clicks_limit is not None and self.clicks_limit < 1:
            raise ValueError(f'clicks_limit must be positive or None (all clicks), got {self.clicks_limit}')

    def resolve_tap(self, fbrs_taps: dict) -> Optional[str]:
        """The model tap (f-BRS aliases looked up in the architecture's ``fbrs_taps``)."""
        return fbrs_taps[self.tap] if self.tap in FBRS_ALIASES else self.tap


_INPUT_BRS = dict(bias='pixel', scale='none', reg_bias_weight=1.0, clicks_limit=5)
PRESETS = {
    'NoBRS': RefinementSpec(tap=None, clicks_limit=None),
    'RGB-BRS': RefinementSpec(tap='image', **_INPUT_BRS),
    'DistMap-BRS': RefinementSpec(tap='dist_maps', **_INPUT_BRS),
    'f-BRS-A': RefinementSpec(tap='f-BRS-A'),
    'f-BRS-B': RefinementSpec(tap='f-BRS-B'),
    'f-BRS-C': RefinementSpec(tap='f-BRS-C'),
}
MODES = tuple(PRESETS)


def preset(mode: str, **overrides) -> RefinementSpec:
    """The spec of a named mode (the reference's evaluation settings), with field overrides."""
    if mode not in PRESETS:
        raise ValueError(f'unknown mode {mode!r}; choose one of {", ".join(MODES)}')
    return dataclasses.replace(PRESETS[mode], **overrides)
