"""The interactive predictor: ZoomIn, LimitLongestSide, flip TTA and every BRS mode (SPEC §2-3).

``predict(clicks)`` takes the full ordered click list in original-image coordinates and
returns (H, W) float32 probabilities at the original resolution, as the reference's
``BasePredictor.get_prediction`` does. The host decides what the reference decides (the
zoom box, which variables reset, whether to optimise) and turns a click into a
``StepInput``; the device runs ``step.click_step`` compiled once per ``StepSpec`` - per
canvas size, not per image or crop shape.

What the host keeps of an image between clicks is one value, ``SampleState``: ``plan(state,
clicks)`` returns the step and the next state, ``finish(state, plan, stats, mask_box)`` the
state after the device ran it. The interactive predictor holds the state of its image (and the
device state of its last click); the batched evaluator holds one per sample in flight and
shares the predictor, which then only carries settings.
"""
from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple, Optional, Sequence

import numpy as np
import jax

from ..brs.objective import TapVariables, click_squares
from ..brs.solvers import SolverSettings, get_backend
from ..brs.spec import INPUT_TAPS, PRESETS, RefinementSpec
from ..clicks import Click
from ..models.model import TEMPLATE_HW, Model, normalize
from ..models.taps import tap_names
from . import step as steps
from .zoom_in import LimitLongestSide, LimitState, ZoomIn, ZoomInParams, ZoomState, mask_box, transform_clicks

CANVAS_STEP = 32     # canvases are the image or crop size rounded up to this (the default policy)
CLICK_SLOTS = 20     # points (without a clicks limit) and click squares are padded to a multiple of this


@dataclasses.dataclass
class SolveStats:
    """What the last ``predict`` did: objective evaluations and L-BFGS iterations (0 when no
    optimisation ran), the lowest loss, the network input's size and its canvas, and whether
    the f-BRS tap's input was recomputed."""
    num_evals: int = 0
    num_iters: int = 0
    loss: float = float('nan')
    net_hw: tuple[int, int] = (0, 0)
    net_canvas: tuple[int, int] = (0, 0)
    recomputed: bool = False


class SampleState(NamedTuple):
    """What the host keeps of one image between its clicks: a value that ``Predictor.plan`` and
    ``Predictor.finish`` take and return (the interactive predictor holds one, the batched
    evaluator one per sample in flight)."""
    hw: tuple[int, int]                       # the image's size
    canvas: tuple[int, int]                   # the canvas it is stored on
    zoom: ZoomState = ZoomState()
    limit: LimitState = LimitState()
    last_input: Optional[tuple] = None        # (network canvas, network input size) of the last click
    held: Optional[tuple[int, int]] = None    # a larger network canvas the input stays on (``widen``)


class PredictorState(NamedTuple):
    """Everything the interactive predictor keeps of its image's clicks, as one value
    (``get_state`` / ``set_state``, the reference predictor's ``get_states`` / ``set_states``):
    an editor saves it before a click and restores it to undo that click."""
    sample: SampleState
    device: tuple                             # (network canvas, StepState) of the last click
    stats: SolveStats


class Plan(NamedTuple):
    """A click turned into a program call (``inp.image`` left to the caller)."""
    spec: steps.StepSpec
    inp: steps.StepInput
    recompute: bool
    out_hw: tuple[int, int]     # the output extent; LimitLongestSide's inverse size
    lls_hw: Optional[tuple[int, int]]


def points_nd(click_lists: Sequence[Sequence[Click]], net_clicks_limit: Optional[int],
              slots: Optional[int] = None) -> np.ndarray:
    """(lists, 2K, 2) points: K from the counts over the full lists, then the first
    ``net_clicks_limit`` clicks of each list, positives then negatives, (-1, -1) padding.
    ``slots`` pads K further (the same distance maps: padding points are ignored)."""
    pos = [sum(c.is_positive for c in cl) for cl in click_lists]
    neg = [len(cl) - p for cl, p in zip(click_lists, pos)]
    k = max(pos + neg)
    if net_clicks_limit is not None:
        k = min(net_clicks_limit, k)
    k = max(1, k)
    rows = k if slots is None else max(k, slots)
    out = np.full((len(click_lists), 2 * rows, 2), -1.0, np.float64)
    for i, cl in enumerate(click_lists):
        cl = list(cl)[:net_clicks_limit]
        p = [(c.row, c.col) for c in cl if c.is_positive][:k]
        n = [(c.row, c.col) for c in cl if not c.is_positive][:k]
        if p:
            out[i, :len(p)] = p
        if n:
            out[i, rows:rows + len(n)] = n
    return out


def flip_clicks(clicks: Sequence[Click], width: int) -> list[Click]:
    return [Click(c.row, width - 1 - c.col, c.is_positive) for c in clicks]


def round_up(hw, step: int = CANVAS_STEP) -> tuple[int, int]:
    return tuple(-(-int(s) // step) * step for s in hw)


def _copy_arrays(tree):
    return jax.tree_util.tree_map(lambda a: a.copy() if isinstance(a, jax.Array) else a, tree)


class Predictor:
    """One predictor for every ``RefinementSpec``. Transforms and warm-start rules follow the
    reference:

    * per-pixel variables (RGB-/DistMap-BRS: an input bias) are reset to zeros whenever the
      network input changes (a ZoomIn trigger) or its size differs - the reference crashes on
      the latter (T13 path); resetting is our defined behaviour.
    * per-channel variables (f-BRS-A/B/C: scale and bias at the mode's tap) persist across
      clicks and zoom changes.
    * at a tap after the inputs, the tap's input is cached and recomputed when #clicks <= the
      clicks limit, the network input changed, there is none, or (ours, where the reference
      would mix sizes) the canvas changed; at ``image`` / ``dist_maps`` the whole network
      runs at every evaluation.

    ``canvas``: the full-image canvas (H, W) every image of a run is stored on; default: each
    image's size rounded up to ``canvas_step``. ``canvas_step``: the network runs on the image
    or crop size rounded up to a multiple of it (capped at the canvas that holds it), so padding
    is bounded by ``canvas_step - 1`` pixels a side and the programs are one per size bucket;
    None: on the fixed canvases (the full-image canvas, ZoomIn's and LimitLongestSide's square
    targets), one program each. A zoomed click's program depends only on the crop's bucket and
    the full-image canvas (its output is pasted onto that canvas), so a dataset on one canvas
    needs one program per crop bucket plus one per image bucket.
    """

    def __init__(self, model: Model, spec: RefinementSpec = PRESETS['NoBRS'], *,
                 zoom_in: Optional[ZoomInParams] = ZoomInParams(), max_size: Optional[int] = None,
                 canvas: Optional[tuple[int, int]] = None, canvas_step: Optional[int] = CANVAS_STEP,
                 name: Optional[str] = None):
        self.model = model
        self.spec = spec
        self.name = name or (spec.tap or 'NoBRS')
        self.with_flip = spec.with_flip
        self.zoom = ZoomIn(zoom_in) if zoom_in is not None and spec.zoom_in else None
        self.limit = LimitLongestSide(max_size) if max_size is not None else None
        self.net_clicks_limit = spec.clicks_limit
        self.canvas = None if canvas is None else (int(canvas[0]), int(canvas[1]))
        if canvas_step is not None and (isinstance(canvas_step, bool) or int(canvas_step) < 1):
            raise ValueError(f'canvas_step must be a positive number of pixels, got {canvas_step!r}')
        self.canvas_step = None if canvas_step is None else int(canvas_step)
        self.tap = spec.resolve_tap(model.arch.fbrs_taps)
        self.kind = (steps.StepKind.NOBRS if self.tap is None else
                     steps.StepKind.INPUT if self.tap in INPUT_TAPS else steps.StepKind.FEATURE)
        self.solver = SolverSettings(maxfun=spec.maxfun, maxiter=2 * spec.maxfun, history=spec.history,
                                     learning_rate=spec.learning_rate)
        self.backend = get_backend(spec.solver) if self.kind != steps.StepKind.NOBRS else None
        self.on_device = self.backend is None or self.backend.on_device
        self.channels = self._check_tap() if self.kind != steps.StepKind.NOBRS else 0
        self.image = None              # the image on its canvas (NumPy) and on the device
        self.sample: Optional[SampleState] = None
        self._device_state = (None, None)
        self.stats = SolveStats()

    def _check_tap(self) -> int:
        """The tap's channel count, after checking that the spec can be placed there."""
        names = tap_names(self.model.module.STAGES)
        if self.tap not in names or self.tap == 'points':
            raise ValueError(f'cannot optimise at {self.tap!r}; taps of {self.model.arch.name}: '
                             f'{", ".join(n for n in names if n != "points")}')
        shape = self.model.tap_shape(self.tap)
        if self.spec.bias == 'pixel' and tuple(shape[1:3]) != TEMPLATE_HW:
            raise ValueError(f'a per-pixel bias needs a tap at the input resolution (image, dist_maps, '
                             f'rgb_conv); {self.tap!r} is at 1/{TEMPLATE_HW[0] // shape[1]} of it')
        return int(shape[-1])

    # -- public API ------------------------------------------------------------------------
    def set_image(self, image_uint8_hwc) -> None:
        """New image: resets the zoom state and the optimised variables."""
        canvas_image, self.sample = self.new_sample(image_uint8_hwc)
        self.image = (canvas_image, jax.device_put(canvas_image[None]))
        self.reset()

    def predict(self, clicks: Sequence[Click]) -> np.ndarray:
        """(H, W) float32 probabilities for the full ordered click list."""
        if self.image is None:
            raise ValueError('call set_image() before predict()')
        t_start = time.perf_counter()
        plan, sample = self.plan(self.sample, clicks)
        t_device = time.perf_counter()
        if self.on_device:
            probs, state, stats = steps.run_batch(*self.program_args(plan))
            probs, stats = np.asarray(probs)[0], steps.StepStats(*(np.asarray(s)[0] for s in stats))
        else:
            probs, state, stats = self._host_solve(plan, plan.inp._replace(image=self.image[0]),
                                                   self._state(plan.spec))
        self._device_state = (plan.spec.net_canvas, state)
        self.last_device_s = time.perf_counter() - t_device   # the program(s) and the result transfer
        out = np.ascontiguousarray(np.asarray(probs)[:plan.out_hw[0], :plan.out_hw[1]], np.float32)
        box = None if self.zoom is None else mask_box(out > self.zoom.params.prob_thresh)
        self.sample, self.stats = self.finish(sample, plan, stats, box)
        self.last_wall_s = time.perf_counter() - t_start
        return out

    def program_args(self, plan: Plan) -> tuple:
        """The arguments of ``steps.run_batch`` for ``plan`` on the current image: the batched
        program with one lane (the same numbers as a batched evaluation)."""
        inp = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], plan.inp._replace(image=None))
        return (plan.spec, None, self.model.variables, inp._replace(image=self.image[1]), self._state(plan.spec),
                np.asarray(plan.recompute), np.ones(1, bool))

    def get_state(self) -> PredictorState:
        """The state of the current image's clicks, as a value: the device arrays are copied (the
        click program donates its state's buffers)."""
        return PredictorState(self.sample, _copy_arrays(self._device_state), dataclasses.replace(self.stats))

    def set_state(self, state: PredictorState) -> None:
        """Return to a state of ``get_state`` taken on the current image (``state`` stays usable)."""
        if self.sample is None or state.sample.hw != self.sample.hw or state.sample.canvas != self.sample.canvas:
            raise ValueError('set_state() needs a state of the current image')
        self.sample, self.stats = state.sample, dataclasses.replace(state.stats)
        self._device_state = _copy_arrays(state.device)

    def reset(self) -> None:
        """Forget the clicks of the current image (zoom state, variables, cached input)."""
        self.sample = SampleState(self.sample.hw, self.sample.canvas)
        self._device_state = (None, None)      # (net canvas, StepState) of the previous click
        self.stats = SolveStats()

    # -- host side, shared with the batched evaluator ---------------------------------------
    def new_sample(self, image_uint8_hwc) -> tuple[np.ndarray, SampleState]:
        """(the normalised image on its canvas, the state of an image without clicks)."""
        image = normalize(image_uint8_hwc)
        hw = tuple(image.shape[:2])
        canvas = self.canvas or round_up(hw, self.canvas_step or CANVAS_STEP)
        if hw[0] > canvas[0] or hw[1] > canvas[1]:
            raise ValueError(f'image {hw[0]}x{hw[1]} does not fit the {canvas[0]}x{canvas[1]} canvas')
        canvas_image = np.zeros((*canvas, 3), np.float32)
        canvas_image[:hw[0], :hw[1]] = image
        return canvas_image, SampleState(hw, canvas)

    def _fit(self, hw, container) -> tuple[int, int]:
        """The network canvas of an (h, w) input held by ``container``: its size bucket."""
        if self.canvas_step is None:
            return container
        return tuple(min(c, r) for c, r in zip(container, round_up(hw, self.canvas_step)))

    def _canvas_for(self, hw, full_canvas) -> tuple[int, int]:
        """The network canvas of a crop of size (h, w): its bucket within the smallest known
        canvas that holds it."""
        known = [full_canvas]
        if self.zoom is not None:
            known.append((self.zoom.params.target_size,) * 2)
        if self.limit is not None:
            known.append((self.limit.max_size,) * 2)
        fits = [c for c in known if c[0] >= hw[0] and c[1] >= hw[1]]
        if not fits:
            raise ValueError(f'no canvas holds a {hw[0]}x{hw[1]} image')
        return self._fit(hw, min(fits, key=lambda c: c[0] * c[1]))

    def plan(self, sample: SampleState, clicks: Sequence[Click]) -> tuple[Plan, SampleState]:
        """Validate the clicks, apply the forward transforms' decisions and build the step:
        -> (the plan, the sample's state once the click is made)."""
        try:
            clicks = [Click(*c) for c in clicks]
        except TypeError:
            raise ValueError('clicks must be (row, col, is_positive) triples') from None
        self._validate(clicks, sample.hw)
        crops, crop_boxes, crop_hw = [], [], []
        hw, changed, net_clicks = sample.hw, False, clicks
        zoom, lls = sample.zoom, sample.limit
        if self.zoom is not None:
            zoom, zoomed, changed = self.zoom.decide(zoom, clicks, sample.hw)
            if zoomed:
                hw = zoom.roi_hw
                crops.append(self._canvas_for(hw, sample.canvas))
                crop_boxes.append(zoom.roi)
                crop_hw.append(hw)
                net_clicks = transform_clicks(zoom.roi, hw, clicks)
        if self.limit is not None:
            lls, resized = self.limit.decide(lls, hw)
            if resized:
                box, hw = lls.roi, lls.roi_hw
                crops.append(self._canvas_for(hw, sample.canvas))
                crop_boxes.append(box)
                crop_hw.append(hw)
                net_clicks, changed = transform_clicks(box, hw, net_clicks), True
        net_canvas = crops[-1] if crops else self._fit(sample.hw, sample.canvas)
        held, last = sample.held, sample.last_input
        if held is not None and not changed and last is not None and last[1] == hw and all(
                a >= b for a, b in zip(held, net_canvas)):
            net_canvas = held               # the input stays on the canvas ``widen`` moved it to
            if crops:
                crops[-1] = held
        else:
            held = None
        # inverse transforms: LimitLongestSide (to its previous output size, T13), then ZoomIn
        pastes, paste_boxes, paste_hw, out_hw, lls_hw = [], [], [], hw, None
        if self.limit is not None:
            if lls.roi is not None:
                box = lls.roi
                out_hw = lls.prev_hw or (box[1] + 1, box[3] + 1)
                pastes.append(self._canvas_for(out_hw, sample.canvas))
                paste_boxes.append(box)
                paste_hw.append(out_hw)
            lls_hw = out_hw
        if zoom.roi is not None:
            pastes.append(sample.canvas)
            paste_boxes.append(zoom.roi)
            paste_hw.append(sample.hw)
            out_hw = sample.hw

        lists = [net_clicks] + ([flip_clicks(net_clicks, hw[1])] if self.with_flip else [])
        limit = self.net_clicks_limit
        slots = limit if limit is not None else CLICK_SLOTS * -(-len(clicks) // CLICK_SLOTS)
        points = points_nd(lists, limit, slots).astype(np.float32)
        spec = self._spec(net_canvas, tuple(crops), tuple(pastes))
        squares = np.zeros((0,), np.int32)
        optimize = reset = recompute = False
        if self.kind != steps.StepKind.NOBRS:
            squares = click_squares(lists, hw, CLICK_SLOTS * -(-len(clicks) // CLICK_SLOTS))   # every click
            optimize = len(clicks) > self.spec.optimize_after_n_clicks
            reset = changed or last != (net_canvas, hw)
            recompute = changed or limit is None or len(clicks) <= limit or last is None or last[0] != net_canvas
        box_array = lambda b: np.asarray(b, np.int32).reshape(-1, 4)
        hw_array = lambda h: np.asarray(h, np.int32).reshape(-1, 2)
        inp = steps.StepInput(image=None, crop_boxes=box_array(crop_boxes), crop_extents=hw_array(crop_hw),
                              paste_boxes=box_array(paste_boxes), paste_extents=hw_array(paste_hw),
                              net_extent=np.asarray(hw, np.int32), points=points, squares=squares,
                              optimize=np.asarray(optimize), reset=np.asarray(reset),
                              budget=np.asarray([self.solver.maxfun, self.solver.maxiter], np.int32))
        return Plan(spec, inp, recompute, out_hw, lls_hw), sample._replace(zoom=zoom, limit=lls,
                                                                            last_input=(net_canvas, hw), held=held)

    def widens(self, spec: steps.StepSpec, onto: steps.StepSpec, limit: float) -> bool:
        """Whether a click of ``spec`` may run as ``onto`` (``widen``): the same program but for a
        network canvas that holds ``spec``'s, with at most ``limit`` times its pixels."""
        (h, w), (hh, ww) = spec.net_canvas, onto.net_canvas
        if spec == onto or hh < h or ww < w or hh * ww > limit * h * w or len(spec.crops) != len(onto.crops):
            return False
        return dataclasses.replace(spec, net_canvas=onto.net_canvas, crops=spec.crops[:-1] + onto.crops[-1:]) == onto

    def widen(self, plan: Plan, sample: SampleState, onto: steps.StepSpec) -> tuple[Plan, SampleState]:
        """``plan`` run as ``onto`` (``widens``), so that the batched evaluator can fill a program
        with clicks of smaller canvases, and the state after it: a mode with a cached head input
        keeps the input on that canvas until it changes, so the head input cached there stays
        valid. Only for a click that has no cached head input or recomputes it; the numbers are
        the same up to rounding."""
        feature = self.kind == steps.StepKind.FEATURE
        if feature and not plan.recompute:
            raise ValueError('a click that reuses its cached head input runs on its own canvas')
        hw = tuple(int(v) for v in plan.inp.net_extent)
        return plan._replace(spec=onto), sample._replace(last_input=(onto.net_canvas, hw),
                                                         held=onto.net_canvas if feature else None)

    def finish(self, sample: SampleState, plan: Plan, stats, zoom_box) -> tuple[SampleState, SolveStats]:
        """After the device ran ``plan``: the state with what the transforms remember (the box of
        the mask ZoomIn reads next, None when it is empty; LimitLongestSide's size), and the
        click's ``SolveStats``."""
        sample = sample._replace(zoom=sample.zoom._replace(prev_box=zoom_box),
                                 limit=sample.limit._replace(prev_hw=plan.lls_hw))
        optimized = bool(plan.inp.optimize)
        return sample, SolveStats(int(stats.num_evals) if optimized else 0, int(stats.num_iters) if optimized else 0,
                                  float(stats.loss), tuple(int(v) for v in plan.inp.net_extent),
                                  plan.spec.net_canvas, bool(plan.recompute))

    def largest_canvas(self, full_canvas) -> tuple[int, int]:
        """The largest network canvas on a full-image canvas: it holds that canvas and the square
        ZoomIn and LimitLongestSide canvases."""
        known = [full_canvas] + [(s, s) for s in (self.zoom and self.zoom.params.target_size,
                                                   self.limit and self.limit.max_size) if s]
        return max(c[0] for c in known), max(c[1] for c in known)

    def step_spec(self, net_canvas) -> steps.StepSpec:
        """The spec of a click on the full image on ``net_canvas`` (for state shapes)."""
        return self._spec(tuple(net_canvas), (), ())

    def _spec(self, net_canvas, crops, pastes) -> steps.StepSpec:
        s = self.spec
        refine = None if self.kind == steps.StepKind.NOBRS else TapVariables(
            self.tap, self.channels, s.bias, s.scale, net_canvas if s.bias == 'pixel' else None,
            s.reg_weight, s.reg_bias_weight)
        static = dataclasses.replace(self.solver, maxfun=0, maxiter=0)     # the budget is StepInput data
        return steps.StepSpec(self.model.module, self.kind, self.with_flip, net_canvas, crops, pastes, refine,
                              s.prob_thresh, s.min_iou_diff, self.backend if self.on_device else None, static)

    def initial_state(self, spec: steps.StepSpec) -> steps.StepState:
        """Zero variables and cache for a spec's canvas (NumPy)."""
        slots = self.net_clicks_limit if self.net_clicks_limit is not None else CLICK_SLOTS
        return steps.initial_state(spec, self.model.variables, (spec.images, 2 * slots, 2))

    def _state(self, spec: steps.StepSpec) -> steps.StepState:
        canvas, state = self._device_state
        if state is not None and canvas == spec.net_canvas:
            return state
        fresh = self.initial_state(spec)
        if self.on_device:
            fresh = jax.tree_util.tree_map(lambda a: a[None], fresh)
        # per-channel variables persist across canvases; per-pixel ones are reset on a new input
        keep = state is not None and spec.kind != steps.StepKind.NOBRS and not spec.refine.per_pixel
        return fresh._replace(x=state.x) if keep else fresh

    def _host_solve(self, plan: Plan, inp, state):
        """The SciPy path: the network input as one program, L-BFGS-B on the host, the merge."""
        spec, backend = plan.spec, self.backend
        values, cache = steps.host_problem(spec, self.model.variables, inp, state.cache, plan.recompute)
        args = steps.host_args(spec, self.model.variables, values, inp)
        x = state.x
        if spec.refine.per_pixel and bool(inp.reset):
            x = np.zeros(spec.refine.size, np.float32)   # the reference restarts from float32 zeros
        if bool(inp.optimize):
            result = backend(spec.function, args, np.asarray(x), np.zeros((spec.images, *spec.net_canvas, 1), bool),
                             self.solver)
            x, logits, stats = result.x, result.logits, steps.StepStats(result.num_evals, result.num_iters, result.loss)
        else:
            loss, aux = steps.host_evaluate(spec, args, np.asarray(x, np.float32))
            logits, stats = aux['logits'], steps.StepStats(0, 0, loss)
        probs = steps.host_merge(spec, logits, inp)
        return probs, steps.StepState(x, cache), stats

    @staticmethod
    def _validate(clicks, hw):
        if not clicks:
            raise ValueError('predict() needs at least one click')
        h, w = hw
        for c in clicks:
            try:
                row, col = float(c.row), float(c.col)
            except (TypeError, ValueError):
                raise ValueError(f'click {tuple(c)} has a coordinate that is not a number') from None
            if isinstance(c.is_positive, str) or c.is_positive not in (True, False):
                raise ValueError(f'click {tuple(c)}: is_positive must be True or False')
            if not (np.isfinite(row) and np.isfinite(col)):
                raise ValueError(f'click {tuple(c)} has a non-finite coordinate')
            if not (0 <= row < h and 0 <= col < w):
                raise ValueError(f'click ({row}, {col}) lies outside the {h}x{w} image')
