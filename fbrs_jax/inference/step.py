"""The click step as one compiled program per canvas configuration (SPEC §2.2, §3.6).

Everything that changes from click to click - the crop box and its network size, the click
points (padded to a fixed number of slots), the click masks, the warm-start variables, the
cached head input, whether to optimise - is data, and so is the evaluation budget (one program
serves every budget of a sweep). What is static is a ``StepSpec``: the model, the mode, the
other settings and the canvas sizes (full image, each crop, each paste-back).
``click_step`` runs crop-and-resize, flip, the network or the cached head input, the
refinement solve, the flip merge and the paste-back, vmapped over a batch of samples with a
lane mask (``run_batch``; the interactive predictor is a batch of one, so a batched
evaluation reproduces it sample for sample).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
from typing import Any, NamedTuple, Optional

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from ..brs.objective import TapVariables, brs_function, square_masks
from ..brs.reference_settings import MIN_IOU_DIFF, PROB_THRESH
from ..brs.solvers import Backend, SolverSettings
from ..models.canvas import crop_resize, flip_w, paste
from ..models.taps import carry_names

Canvas = tuple[int, int]


class StepKind(str, enum.Enum):
    """What a click program refines: nothing, the network input (the whole network runs at every
    evaluation) or a feature tap (the head after it runs; its input is cached)."""
    NOBRS = 'NoBRS'
    INPUT = 'input'
    FEATURE = 'feature'


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """The static part of a click step: one compiled program per distinct spec."""
    module: Any
    kind: StepKind
    with_flip: bool
    net_canvas: Canvas
    crops: tuple[Canvas, ...] = ()   # canvas after each forward crop-resize (ZoomIn, LimitLongestSide)
    pastes: tuple[Canvas, ...] = ()  # canvas after each paste-back (their inverses, in order)
    refine: Optional[TapVariables] = None   # what is optimised ('input': at image / dist_maps)
    prob_thresh: float = PROB_THRESH
    min_iou_diff: float = MIN_IOU_DIFF
    backend: Any = None              # an on-device back end, or None (host solve between programs)
    solver: SolverSettings = SolverSettings()   # maxfun / maxiter unused: they come as StepInput.budget

    @property
    def images(self) -> int:
        """Images per click: the image and its mirror with flip TTA."""
        return 2 if self.with_flip else 1

    @property
    def function(self):
        return brs_function(self.module, self.refine, self.refine.tap if self.kind == StepKind.FEATURE else None,
                            self.with_flip, self.prob_thresh, self.min_iou_diff)


class StepInput(NamedTuple):
    """Per-click data (NumPy on the host; one leading batch axis in ``run_batch``)."""
    image: Any          # (H, W, 3) normalised image on the full canvas
    crop_boxes: Any     # (len(crops), 4) int32 inclusive (rmin, rmax, cmin, cmax) in the previous frame
    crop_extents: Any   # (len(crops), 2) int32 image size after each crop
    paste_boxes: Any    # (len(pastes), 4) int32
    paste_extents: Any  # (len(pastes), 2) int32 image size after each paste
    net_extent: Any     # (2,) int32 network input size
    points: Any         # (batch, 2 * slots, 2) float32, (-1, -1) padding
    squares: Any        # (batch, slots, 5) int32 the clicks' mask squares (``click_squares``; BRS modes)
    optimize: Any       # bool: run the solve (else one evaluation)
    reset: Any          # bool: per-pixel variables restart from zeros
    budget: Any         # (2,) int32: the solve's maxfun and maxiter


class StepState(NamedTuple):
    """What a BRS mode carries from click to click: the variables and the cached head input."""
    x: Any
    cache: Any


class StepStats(NamedTuple):
    num_evals: Any
    num_iters: Any
    loss: Any


def network_input(spec: StepSpec, inp: StepInput):
    """The crop-resizes of the transforms (or the net canvas cut from the image's canvas), then
    the flip batch: (batch, h, w, 3) on the net canvas."""
    image = inp.image
    for i, canvas_hw in enumerate(spec.crops):
        image = crop_resize(image, inp.crop_boxes[i], canvas_hw, inp.crop_extents[i])
    if not spec.crops:      # the image's own size bucket, at the top-left of its storage canvas
        image = image[:spec.net_canvas[0], :spec.net_canvas[1]]
    if spec.with_flip:
        return jnp.stack([image, flip_w(image, inp.net_extent[1], axis=1)])
    return image[None]


def merged_probs(spec: StepSpec, logits, inp: StepInput):
    """(batch, h, w, 1) logits -> probabilities on the output canvas: the flip average of the
    logits (SPEC 2.4), the sigmoid, then each paste-back."""
    logits = logits[..., 0]
    if spec.with_flip:
        logits = 0.5 * (logits[0] + flip_w(logits[1], inp.net_extent[1], axis=1))
    else:
        logits = logits[0]
    probs = jax.nn.sigmoid(logits)
    extent = inp.net_extent
    for i, canvas_hw in enumerate(spec.pastes):
        probs = paste(probs[..., None], extent, inp.paste_boxes[i], canvas_hw)[..., 0]
        extent = inp.paste_extents[i]
    return probs


def features(spec: StepSpec, variables, batch, points, extent):
    """The carry of the f-BRS tap (everything the rest of the network needs), without ``image``."""
    out = spec.module.apply(variables, batch, points, stop=spec.refine.tap, extent=extent)
    return {n: out[n] for n in carry_names(spec.module.STAGES, spec.refine.tap) if n != 'image'}


def problem(spec: StepSpec, variables, inp: StepInput, cache, recompute):
    """(network values, new cache) of the BRS objective for this click: the network inputs
    (input-BRS) or the carry of the f-BRS tap, recomputed or taken from ``cache``."""
    batch = network_input(spec, inp)
    if spec.kind == StepKind.INPUT:
        return {'image': batch, 'points': inp.points}, cache
    cache = jax.lax.cond(recompute, lambda: features(spec, variables, batch, inp.points, inp.net_extent),
                         lambda: cache)
    return {**cache, 'image': batch}, cache


def function_args(spec: StepSpec, variables, values, inp: StepInput):
    """The array arguments of ``StepSpec.function`` after (x, last_mask, has_last); the click
    masks are built here, on the device, from the clicks' squares."""
    pos, neg = square_masks(inp.squares, spec.net_canvas)
    return variables, values, pos, neg, inp.net_extent, ~inp.optimize


def no_mask(spec: StepSpec):
    return jnp.zeros((spec.images, *spec.net_canvas, 1), bool)


def click_step(spec: StepSpec, variables, inp: StepInput, state: StepState, recompute):
    """One click: -> (probabilities on the output canvas, new state, stats). ``recompute``: the
    f-BRS head input is recomputed (a scalar for the whole batch: for a sample that would have
    used its cache, recomputing gives the same values - its first clicks are unchanged)."""
    if spec.kind == StepKind.NOBRS:
        batch = network_input(spec, inp)
        logits = spec.module.apply(variables, batch, inp.points, stop='logits', extent=inp.net_extent)['logits']
        zero = jnp.zeros((), jnp.int32)
        return merged_probs(spec, logits, inp), state, StepStats(zero, zero, jnp.float32(jnp.nan))
    values, cache = problem(spec, variables, inp, state.cache, recompute)
    x0 = jnp.where(inp.reset, jnp.zeros_like(state.x), state.x) if spec.refine.per_pixel else state.x
    settings = dataclasses.replace(spec.solver, maxfun=inp.budget[0], maxiter=inp.budget[1])
    result = spec.backend(spec.function, function_args(spec, variables, values, inp), x0, no_mask(spec), settings)
    stats = StepStats(result.num_evals, result.num_iters, result.loss)
    return merged_probs(spec, result.logits, inp), StepState(result.x, cache), stats


def batch_step(spec: StepSpec, mesh, variables, inp: StepInput, state: StepState, recompute, active):
    """``click_step`` vmapped over samples; lanes with ``active`` False keep their state (their
    outputs are computed and ignored: shapes stay fixed). A single lane runs unbatched: under
    vmap a cond whose predicate differs per lane computes both branches, and both branches of
    the line search's cond evaluate the objective. With a ``mesh`` (axis 'batch') the lanes are
    split over its devices by ``shard_map``, each device running the same program on its own
    lanes (one lane per device computes exactly what a batch of one does)."""
    def local(variables, inp, state, recompute, active):
        step = lambda i, s: click_step(spec, variables, i, s, recompute)
        if active.shape[0] == 1:
            lane = lambda t: jax.tree_util.tree_map(lambda a: a[0], t)
            probs, new, stats = jax.tree_util.tree_map(lambda a: a[None], step(lane(inp), lane(state)))
        else:
            probs, new, stats = jax.vmap(step)(inp, state)
        keep = lambda a, b: jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
        return probs, jax.tree_util.tree_map(keep, new, state), stats

    if mesh is None:
        return local(variables, inp, state, recompute, active)
    lanes, same = PartitionSpec('batch'), PartitionSpec()
    return jax.shard_map(local, mesh=mesh, in_specs=(same, lanes, lanes, same, lanes),
                         out_specs=(lanes, lanes, lanes), check_vma=False)(variables, inp, state, recompute, active)


run_batch = jax.jit(batch_step, static_argnums=(0, 1), donate_argnums=4)   # (the compiled ``batch_step``)


# The host-solver path (SciPy): the same pieces as separate programs around the host loop.
@functools.partial(jax.jit, static_argnums=0)
def host_problem(spec: StepSpec, variables, inp: StepInput, cache, recompute):
    return problem(spec, variables, inp, cache, recompute)


@functools.partial(jax.jit, static_argnums=0)
def host_args(spec: StepSpec, variables, values, inp: StepInput):
    return function_args(spec, variables, values, inp)


@functools.partial(jax.jit, static_argnums=0)
def host_evaluate(spec: StepSpec, args, x):
    return spec.function(x, no_mask(spec), jnp.asarray(False), *args)


@functools.partial(jax.jit, static_argnums=0)
def host_merge(spec: StepSpec, logits, inp: StepInput):
    return merged_probs(spec, logits, inp)


_CACHE_SHAPES: dict = {}


def initial_state(spec: StepSpec, variables, points_shape) -> StepState:
    """Zeros of the state's shapes (NumPy, so creating them compiles nothing). The f-BRS cache
    shapes are traced once per (spec, points shape): a trace of the network costs ~0.5 s, and
    every sample switches canvas at least once."""
    if spec.kind == StepKind.NOBRS:
        return StepState(np.zeros((0,), np.float32), {})
    x = (spec.backend or Backend()).initial_x(spec.refine.size)
    if spec.kind == StepKind.INPUT:
        return StepState(x, {})
    key = (spec, tuple(points_shape))
    if key not in _CACHE_SHAPES:
        batch = jax.ShapeDtypeStruct((spec.images, *spec.net_canvas, 3), jnp.float32)
        points = jax.ShapeDtypeStruct(points_shape, jnp.float32)
        extent = jax.ShapeDtypeStruct((2,), jnp.int32)
        _CACHE_SHAPES[key] = jax.eval_shape(lambda v, b, p, e: features(spec, v, b, p, e),
                                            variables, batch, points, extent)
    return StepState(x, jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), _CACHE_SHAPES[key]))
