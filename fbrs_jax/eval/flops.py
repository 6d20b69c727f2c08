"""Dense convolution FLOPs of a click at any input size, counted from the traced model.

The model is traced once on a ``2**LEVELS``-sided input; each convolution's output then lies
at a level k (1/2**k of the input), and for an (h, w) input it has ceil(h / 2**k) x
ceil(w / 2**k) positions (the stride-2 arithmetic the canvases follow, ``models/canvas.py``).
A convolution costs 2 * kh * kw * (cin / groups) * cout FLOPs per output position. The
depthwise 3x3 convolutions are shifted multiply-adds (``layers.depthwise3x3``), not dense
convolutions, and are not counted. A flip-pair r34 forward at 400x400 counts 242.6 GFLOP.

A click's cost (``ClickCost``): NoBRS, one forward; a BRS mode, the part of the network
before the tap when its input is recomputed, plus per objective evaluation the part after it
twice (its forward and the gradient with respect to its input, which costs the same); a
click without optimisation makes one evaluation. Executed FLOPs are these at the program's
canvas (every lane of a batched program, idle ones included, for as many evaluations as its
busiest lane); exact FLOPs at each click's own input size.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp

from ..inference.step import StepKind

LEVELS = 9      # traced at 512x512
GLOBAL = -1


@dataclasses.dataclass(frozen=True)
class ConvCost:
    """Per level k: dense convolution FLOPs per output position, for one image (level
    ``GLOBAL``: convolutions of globally pooled 1x1 maps, one position at any size)."""
    levels: tuple[tuple[int, float], ...]

    def flops(self, hw) -> float:
        return float(sum(c * (1 if k == GLOBAL else -(-int(hw[0]) // 2 ** k) * -(-int(hw[1]) // 2 ** k))
                         for k, c in self.levels))

    def __sub__(self, other: 'ConvCost') -> 'ConvCost':
        out = dict(self.levels)
        for k, c in other.levels:
            out[k] = out.get(k, 0.0) - c
        return ConvCost(tuple(sorted((k, c) for k, c in out.items() if c)))


def _convs(jaxpr):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == 'conv_general_dilated':
            yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, 'jaxpr', sub)
                if hasattr(inner, 'eqns'):
                    yield from _convs(inner)


def conv_cost(module, variables, stop: str) -> ConvCost:
    """The dense convolutions of ``module`` from its input to the tap ``stop``."""
    side = 2 ** LEVELS
    image = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    points = jax.ShapeDtypeStruct((1, 2, 2), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda v, i, p: module.apply(v, i, p, stop=stop))(variables, image, points)
    levels: dict[int, float] = {}
    for eqn in _convs(jaxpr.jaxpr):
        dims = eqn.params['dimension_numbers']
        out, kernel = eqn.outvars[0].aval.shape, eqn.invars[1].aval.shape
        out_hw = [out[d] for d in dims.out_spec[2:]]
        k = GLOBAL if out_hw == [1, 1] else round(math.log2(side / out_hw[0]))
        if k != GLOBAL and [side // 2 ** k] * 2 != out_hw:
            raise ValueError(f'a convolution output of {out_hw} is no level of the {side}x{side} input')
        per_position = 2.0 * out[dims.out_spec[0]] * out[dims.out_spec[1]] * math.prod(
            kernel[d] for d in dims.rhs_spec[1:])
        levels[k] = levels.get(k, 0.0) + per_position
    return ConvCost(tuple(sorted(levels.items())))


class ClickCost:
    """Dense FLOPs of a predictor's clicks (see the module docstring)."""

    def __init__(self, model, kind: StepKind, tap: Optional[str], images: int):
        self.kind, self.images = kind, images
        full = conv_cost(model.module, model.variables, 'logits')
        self.pre = conv_cost(model.module, model.variables, tap) if kind == StepKind.FEATURE else ConvCost(())
        self.post = full - self.pre

    def flops(self, hw, evals: int = 0, recompute: bool = True) -> float:
        if self.kind == StepKind.NOBRS:
            return self.images * self.post.flops(hw)
        pre = self.pre.flops(hw) if recompute else 0.0
        return self.images * (pre + 2 * max(1, int(evals)) * self.post.flops(hw))


_COSTS: dict = {}


def click_cost(predictor) -> ClickCost:
    """The ``ClickCost`` of a predictor's model and mode, traced once per process."""
    key = (id(predictor.model), predictor.kind, predictor.tap, 2 if predictor.with_flip else 1)
    if key not in _COSTS:
        _COSTS[key] = ClickCost(predictor.model, *key[1:])
    return _COSTS[key]


def flop_fields(predictor) -> dict:
    """``evaluate_sample``'s ``per_click`` record of a predictor's last click: ``flops``, its
    [executed, exact] dense FLOPs (a sequential program runs the click alone)."""
    cost, s = click_cost(predictor), predictor.stats
    return {
        'flops': [cost.flops(s.net_canvas, s.num_evals, s.recomputed), cost.flops(s.net_hw, s.num_evals, s.recomputed)]
    }
