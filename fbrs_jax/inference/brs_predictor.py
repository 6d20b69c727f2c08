"""BRS predictors (SPEC §3): RGB-/DistMap-BRS optimise an input bias, f-BRS a per-channel
scale and bias at a feature tap. The transforms are the NoBRS predictor's; what differs is
how the network probabilities of a click are made."""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
import jax
import jax.numpy as jnp

from ..brs.objective import PROB_THRESH, InputBias, ScaleBias, brs_function, click_masks
from ..brs.solvers import LBFGSSettings, get_backend
from ..models.taps import carry_names
from .predictor import Predictor, flip_merged_probs, network_batch, points_nd

INPUT_TAPS = {'RGB-BRS': ('image', 3), 'DistMap-BRS': ('dist_maps', 2)}


@dataclasses.dataclass(frozen=True)
class BRSSettings:
    """The reference functor and optimiser defaults (SPEC 2.1)."""
    prob_thresh: float = PROB_THRESH
    min_iou_diff: float = 0.01
    reg_weight: float = 1e-3
    reg_bias_weight: float = 10.0
    optimize_after_n_clicks: int = 1
    lbfgs: LBFGSSettings = LBFGSSettings()
    backend: str = 'jaxopt'


@dataclasses.dataclass
class SolveStats:
    """What the last ``predict`` did: objective evaluations and L-BFGS iterations (0 when no
    optimisation ran) and the lowest loss."""
    num_evals: int = 0
    num_iters: int = 0
    loss: float = float('nan')


@functools.partial(jax.jit, static_argnames=('fun', 'backend', 'settings'))
def _device_solve(fun, backend, settings, args, x0, mask0):
    return backend(fun, args, x0, mask0, settings)


@functools.partial(jax.jit, static_argnames=('fun',))
def _evaluate(fun, args, x, mask0):
    return fun(x, mask0, jnp.asarray(False), *args)


@functools.partial(jax.jit, static_argnames=('module', 'tap'))
def _features(module, variables, batch, points, tap):
    out = module.apply(variables, batch, points, stop=tap)
    return {name: out[name] for name in carry_names(module.STAGES, tap) if name != 'image'}


class BRSPredictor(Predictor):
    """Shared BRS control flow (SPEC 3.6); subclasses define the optimised variables."""

    def __init__(self, model, mode: str, *, brs: BRSSettings = BRSSettings(), **kwargs):
        super().__init__(model, **kwargs)
        self.mode = mode
        self.brs = brs
        self.backend = get_backend(brs.backend)
        self.stats = SolveStats()

    def set_image(self, image_uint8_hwc) -> None:
        super().set_image(image_uint8_hwc)
        self.opt_data = None
        self.stats = SolveStats()

    def _net_probs(self, image, click_lists, clicks, image_changed):
        hw = tuple(image.shape[:2])
        points = jnp.asarray(points_nd(click_lists, self.net_clicks_limit), jnp.float32)
        batch = network_batch(image, self.with_flip)
        refine, values, start = self._problem(batch, points, len(clicks), image_changed)
        if self.opt_data is None or np.shape(self.opt_data) != (refine.size,):
            self.opt_data = np.zeros(refine.size, np.float32)
        pos, neg = click_masks(click_lists, hw)
        fun = brs_function(self.model.module, refine, start, self.with_flip,
                           self.brs.prob_thresh, self.brs.min_iou_diff)
        args = (self.model.variables, values, jnp.asarray(pos), jnp.asarray(neg))
        mask0 = jnp.zeros((batch.shape[0], *hw, 1), bool)
        if len(clicks) > self.brs.optimize_after_n_clicks:
            if self.backend.on_device:
                result = _device_solve(fun, self.backend, self.brs.lbfgs, args,
                                       jnp.asarray(self.opt_data, jnp.float32), mask0)
            else:
                result = self.backend(fun, args, self.opt_data, mask0, self.brs.lbfgs)
            self.opt_data = result.x
            logits = result.logits
            self.stats = SolveStats(int(result.num_evals), int(result.num_iters), float(result.loss))
        else:
            loss, aux = _evaluate(fun, args, jnp.asarray(self.opt_data, jnp.float32), mask0)
            logits = aux['logits']
            self.stats = SolveStats(0, 0, float(loss))
        return flip_merged_probs(logits, self.with_flip)

    def _problem(self, batch, points, num_clicks, image_changed):
        """(variables spec, network values, start tap) for this click."""
        raise NotImplementedError


class InputBRSPredictor(BRSPredictor):
    """RGB-BRS / DistMap-BRS: a bias on the normalised image or on the distance maps, reset to
    zeros whenever the network input changes (a ZoomIn trigger) or its shape differs - the
    reference crashes on the latter (T13 path); resetting is our defined behaviour."""

    def _problem(self, batch, points, num_clicks, image_changed):
        tap, channels = INPUT_TAPS[self.mode]
        if image_changed:
            self.opt_data = None
        refine = InputBias(tap, channels, tuple(batch.shape[1:3]), self.brs.reg_weight)
        return refine, {'image': batch, 'points': points}, None


class FeatureBRSPredictor(BRSPredictor):
    """f-BRS-A/B/C: scale and bias at the mode's tap. The variables persist across clicks and
    zoom changes; the cached tap input is recomputed when #clicks <= the clicks limit, when the
    network input changed, or when there is none (the reference's literal rule, T13)."""

    def set_image(self, image_uint8_hwc) -> None:
        super().set_image(image_uint8_hwc)
        self.features = None

    def _problem(self, batch, points, num_clicks, image_changed):
        tap = self.model.arch.fbrs_taps[self.mode]
        limit = self.net_clicks_limit
        if self.features is None or image_changed or limit is None or num_clicks <= limit:
            self.features = _features(self.model.module, self.model.variables, batch, points, tap)
        refine = ScaleBias(tap, self.features[tap].shape[-1], self.brs.reg_weight, self.brs.reg_bias_weight)
        return refine, {**self.features, 'image': batch}, tap
