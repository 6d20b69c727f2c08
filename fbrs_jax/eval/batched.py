"""Batched evaluation with continuous batching: samples in flight in a device-resident pool,
programs of ``batch`` lanes drawn from it, sharded over devices.

Up to ``POOL_FACTOR * batch`` samples are in flight, each in a slot of a ``Pool`` on the
device (image, ground truth, clicked pixels, solver variables, cached f-BRS head input). Each
sample's host state is a ``SampleState`` value; the ``Predictor`` (settings only) turns it and
the next click into a ``StepSpec`` (the program: crop and paste canvases) and a ``StepInput``. At every step the
largest group of ready samples that share a program - spec, whether the f-BRS head input is
recomputed and whether the solve runs - across samples and click numbers, the way LLM servers
batch requests, runs as one program (``pool_step``) of as many lanes as it can fill: ``batch``,
or the largest of ``batch / 2**k`` lanes (a multiple of the devices) that the group fills, the
rest waiting for the next step - so no lane computes for nothing, at the price of one compiled
program per lane count in use (as LLM servers capture one graph per batch size). With
``widen`` and several lanes per device, a program that its own clicks do not fill also takes
ready clicks of smaller canvases of the same program family (``Predictor.widen``): fuller
programs for some padding, the numbers the same up to rounding. It gathers their slots,
runs ``step.batch_step``, thresholds the probabilities, counts the IoU, boxes ZoomIn's mask
and places the next click on the device (``observe``, the reference's clicker), scatters the
state back, and returns ten integers and the solve statistics per lane - the only transfer to
the host. Only a group smaller than the number of devices repeats its last lane (same inputs,
same outputs). A vmapped solve runs as many objective evaluations on every lane as its busiest
lane needs: that lockstep is the remaining waste, counted in the executed FLOPs.
While a program runs, the host dispatches the next one; it then takes the results of the
first, plans those samples' next clicks, and refills finished slots from the queue.

The clicks, IoUs and evaluation counts equal the sequential evaluation's, sample for sample
(every lane computes what its own program computes alone; with one lane per device exactly
that). The batch axis is sharded over the local devices with ``jax.sharding`` (the pool is
replicated); across hosts (``jax.distributed``) each process evaluates its own share of the
samples (see ``runner``).
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..inference import step as steps
from ..inference.predictor import Predictor, SampleState, round_up
from ..clicks import Click
from .clicker import next_click
from .flops import click_cost
from .runinfo import CompileCounter

POOL_FACTOR = 4     # samples in flight per program lane: more samples, fuller groups
LOADERS = 2         # threads reading, normalising and uploading the next samples
OUTSIDE = -2        # ``truth_canvas``: a pixel of the canvas outside the image


class Pool(NamedTuple):
    """The samples in flight, one row per slot (device arrays)."""
    images: Any        # (slots, H, W, 3) float32 normalised images on the storage canvas
    truth: Any         # (slots, H, W) int8 ``truth_canvas``
    not_clicked: Any   # (slots, H, W) bool: pixels the clicker may still choose
    x: Any             # (slots, n, ...) solver variables, sized for the largest network canvas
    cache: Any         # f-BRS head inputs at the largest network canvas (per leaf: (slots, ...))


def truth_canvas(gt: np.ndarray, canvas) -> np.ndarray:
    """A gt mask (1 object, 0 background, -1 ignore) as int8 on the canvas, ``OUTSIDE`` beyond it."""
    out = np.full(canvas, OUTSIDE, np.int8)
    out[:gt.shape[0], :gt.shape[1]] = np.clip(gt, -1, 1)
    return out


def observe(truth, not_clicked, probs, pred_thr: float, zoom_thr: float):
    """What the host needs of a lane's click, from its probabilities on its output canvas:
    (10,) int32 [next click row, col, is_positive; |pred & gt| and |pred | gt| over the pixels
    that are not ignored; whether ZoomIn's mask (prob > ``zoom_thr``) has pixels, and its box
    rmin, rmax, cmin, cmax], and ``not_clicked`` with the next click marked."""
    h, w = truth.shape
    probs = jnp.pad(probs[:h, :w], ((0, max(0, h - probs.shape[0])), (0, max(0, w - probs.shape[1]))))
    inside, valid, gt = truth != OUTSIDE, truth >= 0, truth == 1
    pred = (probs > pred_thr) & inside
    zoom = (probs > zoom_thr) & inside
    rows, cols = jnp.any(zoom, axis=1), jnp.any(zoom, axis=0)
    first = lambda a: jnp.argmax(a).astype(jnp.int32)
    box = jnp.stack([first(rows), h - 1 - first(rows[::-1]), first(cols), w - 1 - first(cols[::-1])])
    count = lambda m: jnp.sum(m, dtype=jnp.int32)
    click, not_clicked = next_click(gt, valid, pred, not_clicked)
    stats = jnp.stack([count(pred & gt & valid), count((pred | gt) & valid), jnp.any(rows).astype(jnp.int32)])
    return jnp.concatenate([click, stats, box]), not_clicked


@functools.partial(jax.jit, static_argnames=('pred_thr', 'zoom_thr'), donate_argnums=0)
def admit(pool: Pool, slot, image, truth, *, pred_thr: float, zoom_thr: float):
    """A new sample in ``slot``: its image and truth, nothing clicked, zero variables (the
    cache is recomputed at its first click); -> (pool, observation of the empty prediction)."""
    obs, not_clicked = observe(truth, jnp.ones(truth.shape, bool), jnp.zeros((1, 1), jnp.float32), pred_thr, zoom_thr)
    pool = pool._replace(images=pool.images.at[slot].set(image), truth=pool.truth.at[slot].set(truth),
                         not_clicked=pool.not_clicked.at[slot].set(not_clicked),
                         x=pool.x.at[slot].set(jnp.zeros_like(pool.x[0])))
    return pool, obs


def _region(shape):
    return (slice(None),) + tuple(slice(0, s) for s in shape)


@functools.partial(jax.jit, static_argnums=(0, 1, 2), static_argnames=('pred_thr', 'zoom_thr'), donate_argnums=4)
def pool_step(spec: steps.StepSpec, mesh, cache_shapes, variables, pool: Pool, slots, inp: steps.StepInput,
              recompute, *, pred_thr: float, zoom_thr: float):
    """One program over the ``slots`` of ``pool`` (see the module docstring): -> (pool, (lanes, 13)
    int32 report: the observation, then the solve's evaluations, iterations and loss (its float32
    bits), fetched as one transfer). ``cache_shapes``: the spec's cache leaf shapes (static)."""
    n = pool.x.shape[1] if spec.kind == steps.StepKind.NOBRS else spec.refine.size
    state = steps.StepState(pool.x[slots][:, :n], jax.tree_util.tree_unflatten(
        cache_shapes[0], [leaf[slots][_region(shape)] for leaf, shape in zip(
            jax.tree_util.tree_leaves(pool.cache), cache_shapes[1])]))
    inp = inp._replace(image=pool.images[slots])
    if mesh is not None:
        lanes = NamedSharding(mesh, PartitionSpec('batch'))
        inp, state = jax.lax.with_sharding_constraint((inp, state), lanes)
    probs, new, stats = steps.batch_step(spec, mesh, variables, inp, state, recompute,
                                         jnp.ones(slots.shape, bool))
    obs, not_clicked = jax.vmap(lambda t, c, p: observe(t, c, p, pred_thr, zoom_thr))(
        pool.truth[slots], pool.not_clicked[slots], probs)
    leaves = [leaf.at[(slots,) + _region(shape)[1:]].set(value) for leaf, shape, value in zip(
        jax.tree_util.tree_leaves(pool.cache), cache_shapes[1], jax.tree_util.tree_leaves(new.cache))]
    pool = pool._replace(not_clicked=pool.not_clicked.at[slots].set(not_clicked),
                         x=pool.x.at[slots, :n].set(new.x) if spec.kind != steps.StepKind.NOBRS else pool.x,
                         cache=jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(pool.cache), leaves))
    solve = [stats.num_evals.astype(jnp.int32), stats.num_iters.astype(jnp.int32),
             jax.lax.bitcast_convert_type(stats.loss.astype(jnp.float32), jnp.int32)]
    return pool, jnp.concatenate([obs, jnp.stack(solve, axis=1)], axis=1)


@dataclasses.dataclass
class _Lane:
    """A sample in flight: its slot, host state, clicks and record."""
    index: int
    slot: int
    state: SampleState
    clicks: list
    record: dict
    obs: Optional[np.ndarray] = None     # the last observation (next click, IoU counts, zoom box)
    plan: Any = None                     # the planned next click, once made


class BatchedEvaluator:
    """Evaluate samples ``batch`` lanes at a time; ``batch`` must be a multiple of the number
    of ``devices`` (default: all local devices; with ``batch`` 1, the first). ``pool_size``:
    samples in flight (default ``POOL_FACTOR * batch``; 1: one sample after another, each click's
    time its latency - the sequential evaluation). ``widen``: with several lanes per device, a
    program that its own clicks do not fill takes clicks of smaller canvases too, up to ``widen``
    times their pixels (``Predictor.widen``; the same numbers up to rounding); None: every click on
    its own canvas."""

    def __init__(self, predictor: Predictor, batch: int, devices: Optional[Sequence] = None,
                 pool_size: Optional[int] = None, widen: Optional[float] = None):
        devices = list(devices if devices is not None else jax.local_devices()[:batch])
        if batch % len(devices):
            raise ValueError(f'--batch {batch} is not a multiple of the {len(devices)} devices')
        if not predictor.on_device:
            raise ValueError(f'this evaluation needs an on-device back end; {predictor.backend.name} runs on the host')
        self.predictor = predictor
        self.batch = batch
        self.pool_size = pool_size or POOL_FACTOR * batch
        self.mesh = Mesh(np.asarray(devices), ('batch',)) if len(devices) > 1 else None
        self.lane_counts = [batch] + [n for n in (len(devices) * 2 ** k for k in range(batch.bit_length()))
                                      if n < batch][::-1]
        self.replicated = NamedSharding(Mesh(np.asarray(devices), ('batch',)), PartitionSpec())
        self.variables = None
        self.widen = widen if batch > len(devices) else None

    def evaluate(self, samples: Sequence, n_clicks: int, target_iou: float, pred_thr: float,
                 on_record: Optional[Callable[[int, dict], None]] = None) -> list[dict]:
        """Records as ``evaluate.evaluate_sample`` returns them, in sample order; ``on_record(i,
        record)`` is called as each sample finishes. Per click: ``seconds``, the wall time from
        dispatching its program to having its results; ``lanes``, the samples its program ran;
        ``host_s``, the CPU time of the thread that drives the device in that step outside its
        wait for the results, over the step's lanes (None where a program was compiled or loaded
        meanwhile); ``wait_s``, the CPU time that wait took, likewise shared out (a blocked
        thread's wake-ups; on this CPU ~0.3 ms per 0.1 s of program and ~1 ms per 2 s). Samples
        are read, normalised and uploaded ahead by ``LOADERS`` threads, off that thread; a new
        sample's first click is planned once its admission has run, without waiting for the
        programs queued before it."""
        if not samples:
            return []
        predictor = self.predictor
        if self.variables is None:
            self.variables = jax.device_put(predictor.model.variables, self.replicated)
        canvas = predictor.canvas or round_up((max(s.image.shape[0] for s in samples),
                                               max(s.image.shape[1] for s in samples)), predictor.canvas_step or 32)
        thresholds = dict(pred_thr=float(pred_thr),
                          zoom_thr=float(predictor.zoom.params.prob_thresh) if predictor.zoom is not None else 0.5)
        pool = self._new_pool(canvas, min(self.pool_size, max(len(samples), self.batch)))
        cost = click_cost(predictor)
        lanes: dict[int, _Lane] = {}          # slot -> lane
        ready: dict[int, _Lane] = {}          # slot -> lane with a planned click not yet dispatched
        admitted: list[_Lane] = []            # lanes whose first observation is still on the device
        records: dict[int, dict] = {}
        in_flight = None

        def load(i: int):
            s = samples[i]
            image, state = predictor.new_sample(s.image)
            if state.canvas != tuple(canvas):
                raise ValueError(f'sample {i} is not on the {canvas} canvas of this batch')
            image, truth = jax.device_put((image, truth_canvas(s.gt, canvas)), self.replicated)   # uploaded here too
            return image, state, truth

        loader = concurrent.futures.ThreadPoolExecutor(LOADERS)
        order, queue = collections.deque(range(len(samples))), collections.deque()   # queue: (i, loading)

        def refill() -> None:
            while order and len(queue) < max(LOADERS, self.batch):
                i = order.popleft()
                queue.append((i, loader.submit(load, i)))

        def start(slot: int) -> None:
            nonlocal pool
            i, future = queue.popleft()
            refill()
            image, state, truth = future.result()
            pool, obs = admit(pool, slot, image, truth, **thresholds)
            lanes[slot] = _Lane(i, slot, state, [], {key: [] for key in (
                'ious', 'clicks', 'evals', 'seconds', 'cold', 'flops', 'lanes', 'host_s', 'wait_s')}, obs)
            admitted.append(lanes[slot])

        def plan(lane: _Lane) -> None:
            row, col, positive = (int(v) for v in np.asarray(lane.obs)[:3])
            lane.clicks.append(Click(row, col, bool(positive)))
            lane.plan, lane.state = predictor.plan(lane.state, lane.clicks)
            if lane.plan.out_hw != lane.state.hw:
                raise ValueError('batched evaluation needs full-image outputs; LimitLongestSide gave '
                                 f'{lane.plan.out_hw} for a {lane.state.hw} image')
            ready[lane.slot] = lane

        def plan_admitted(block: bool) -> None:
            """Plan the admitted lanes whose first observation is ready (all of them: ``block``)."""
            for lane in list(admitted):
                if block or lane.obs.is_ready():
                    plan(lane)
                    admitted.remove(lane)

        def dispatch():
            """The planned lanes that fill the most lanes of one program (the oldest samples first)
            as one program call; None when no lane is planned."""
            nonlocal pool
            groups: dict = {}
            for lane in sorted(ready.values(), key=lambda lane: lane.index):
                key = (lane.plan.spec, lane.plan.recompute, bool(lane.plan.inp.optimize))
                groups.setdefault(key, []).append(lane)
            if not groups:
                return None
            (spec, _, _), group = max(groups.items(), key=lambda kv: (self.lanes_for(len(kv[1])), len(kv[1])))
            if self.widen is not None and len(group) < self.batch:
                spec, group = self._widened(groups, spec, group)
            group = group[:self.lanes_for(len(group))]
            for lane in group:
                del ready[lane.slot]
                if lane.plan.spec != spec:
                    lane.plan, lane.state = predictor.widen(lane.plan, lane.state, spec)
            padded = group + [group[-1]] * (self.lane_counts[-1] - len(group))
            inp = steps.StepInput(image=None, **{k: np.stack([getattr(lane.plan.inp, k) for lane in padded])
                                                 for k in steps.StepInput._fields[1:]})
            recompute = np.asarray(any(lane.plan.recompute for lane in group))
            slots = np.asarray([lane.slot for lane in padded], np.int32)
            counter, t0 = CompileCounter(), time.perf_counter()
            pool, report = pool_step(spec, self.mesh, self._cache_shapes(spec), self.variables, pool,
                                     slots, inp, recompute, **thresholds)
            return spec, group, recompute, slots, report, counter, t0

        try:
            refill()
            for slot in range(min(pool.images.shape[0], len(samples))):
                start(slot)
            plan_admitted(block=True)
            t_host, window = time.thread_time(), CompileCounter()
            in_flight = dispatch()
            while in_flight is not None:
                current = in_flight
                plan_admitted(block=False)
                in_flight = dispatch()               # queued behind the current program
                spec, group, recompute, slots, report, counter, t0 = current
                waiting = time.thread_time()
                report.block_until_ready()
                waited = time.thread_time() - waiting
                obs = np.asarray(report)
                seconds, cold = time.perf_counter() - t0, int(counter.loaded_any())
                for k, lane in enumerate(group):
                    stat = steps.StepStats(obs[k, 10], obs[k, 11], obs[k, 12:13].view(np.float32)[0])
                    lane.obs = obs[k]
                    lane.state, s = predictor.finish(lane.state, lane.plan, stat,
                                                     tuple(int(v) for v in obs[k, 6:10]) if obs[k, 5] else None)
                    inter, union = int(obs[k, 3]), int(obs[k, 4])
                    r = lane.record
                    r['ious'].append(float(np.float32(inter / union if union else 0.0)))
                    r['evals'].append(s.num_evals)
                    r['seconds'].append(seconds)
                    r['cold'].append(cold)
                    r['flops'].append(cost.flops(s.net_hw, s.num_evals, s.recomputed))
                    r['lanes'].append(len(group))
                    lane.plan = None
                # every lane runs as many evaluations as the busiest; the program's FLOPs are shared out
                executed = len(slots) * cost.flops(
                    spec.net_canvas, max(lane.record['evals'][-1] for lane in group), recompute
                )
                for lane in group:
                    lane.record['flops'][-1] = [executed / len(group), lane.record['flops'][-1]]
                done = []
                for lane in group:
                    r = lane.record
                    if len(r['ious']) < n_clicks and np.float32(r['ious'][-1]) < np.float32(target_iou):
                        plan(lane)
                        continue
                    done.append(lane)
                    del lanes[lane.slot]
                    if queue:
                        start(lane.slot)
                plan_admitted(block=False)
                if in_flight is None:
                    in_flight = dispatch()
                    if in_flight is None and admitted:       # nothing else to run: wait for them
                        plan_admitted(block=True)
                        in_flight = dispatch()
                now = time.thread_time()
                host, wait = (now - t_host - waited) / len(group), waited / len(group)
                for lane in group:
                    warm = not (cold or window.loaded_any())
                    lane.record['host_s'].append(host if warm else None)
                    lane.record['wait_s'].append(wait if warm else None)
                t_host, window = now, CompileCounter()
                for lane in done:
                    lane.record['clicks'] = [[int(c.row), int(c.col), int(c.is_positive)] for c in lane.clicks]
                    records[lane.index] = lane.record
                    if on_record is not None:
                        on_record(lane.index, lane.record)
        finally:
            for _, future in queue:
                future.cancel()
            loader.shutdown(wait=True)
        return [records[i] for i in range(len(samples))]

    def _widened(self, groups: dict, spec, group: list):
        """The spec and lanes of the fullest program when clicks may join a program of a larger
        canvas (``widen``): its own lanes first, then the others, oldest sample first. Clicks that
        reuse a head input cached on their own canvas stay there."""
        best = (self.lanes_for(len(group)), len(group)), spec, group
        feature = self.predictor.kind == steps.StepKind.FEATURE
        for (onto, recompute, optimize), own in groups.items():
            if feature and not recompute:
                continue
            (hh, ww), extra = onto.net_canvas, []
            for (other, r, o), lanes in groups.items():
                h, w = other.net_canvas
                if ((r, o) == (recompute, optimize) and h <= hh and w <= ww and hh * ww <= self.widen * h * w
                        and self._widens(other, onto)):
                    extra += lanes
            n = len(own) + len(extra)
            if (self.lanes_for(n), n) > best[0]:
                best = (self.lanes_for(n), n), onto, own + sorted(extra, key=lambda lane: lane.index)
        return best[1:]

    @functools.lru_cache(maxsize=None)
    def _widens(self, spec, onto) -> bool:
        return self.predictor.widens(spec, onto, self.widen)

    def lanes_for(self, ready: int) -> int:
        """The lanes of the program that runs ``ready`` lanes of a group: the most it fills."""
        return next((n for n in self.lane_counts if n <= ready), self.lane_counts[-1])

    def _new_pool(self, canvas, size: int) -> Pool:
        """Zeros for ``size`` slots; variables and cache sized for the largest network canvas."""
        predictor = self.predictor
        state = predictor.initial_state(predictor.step_spec(predictor.largest_canvas(canvas)))
        if predictor.kind == steps.StepKind.NOBRS:
            state = steps.StepState(np.zeros((1,), np.float32), {})
        zeros = lambda a: np.zeros((size,) + a.shape, a.dtype)
        pool = Pool(np.zeros((size, *canvas, 3), np.float32), np.full((size, *canvas), OUTSIDE, np.int8),
                    np.zeros((size, *canvas), bool), zeros(np.asarray(state.x)),
                    jax.tree_util.tree_map(zeros, state.cache))
        return jax.device_put(pool, self.replicated)

    @functools.lru_cache(maxsize=None)
    def _cache_shapes(self, spec: steps.StepSpec):
        state = self.predictor.initial_state(spec)
        return (jax.tree_util.tree_structure(state.cache),
                tuple(leaf.shape for leaf in jax.tree_util.tree_leaves(state.cache)))
