"""Batched evaluation: many samples through one vmapped click step, sharded over devices.

A batch of samples shares the full-image canvas. At every click the host runs each sample's
clicker and transforms (``Predictor.plan``); samples whose steps share a ``StepSpec`` (the
same crop and paste canvases) go through ``step.run_batch`` together; lanes of other specs,
finished samples and padding lanes are masked (their state is kept, their outputs ignored),
so shapes never change. The batch axis is sharded over the local devices with
``jax.sharding``; across hosts (``jax.distributed``) each process evaluates its own share of
the samples (see ``cli``). The clicks, IoUs and evaluation counts equal the sequential
evaluation's, sample for sample.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..inference import step as steps
from ..inference.predictor import Predictor
from .clicker import Clicker
from .flops import click_cost
from .metrics import iou
from .runinfo import CompileCounter


class BatchedEvaluator:
    """Evaluate up to ``batch`` samples at a time; ``batch`` must be a multiple of the number
    of ``devices`` (default: all local devices)."""

    def __init__(self, new_predictor: Callable[[], Predictor], batch: int, devices: Optional[Sequence] = None):
        devices = list(devices if devices is not None else jax.local_devices())
        if batch % len(devices):
            raise ValueError(f'--batch {batch} is not a multiple of the {len(devices)} devices')
        self.new_predictor = new_predictor
        self.batch = batch
        self.mesh = Mesh(np.asarray(devices), ('batch',))
        self.lanes = NamedSharding(self.mesh, PartitionSpec('batch'))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.variables = None

    def _put(self, tree):
        return jax.device_put(tree, self.lanes)

    def evaluate(self, samples: Sequence, n_clicks: int, target_iou: float, pred_thr: float) -> list[dict]:
        """Records as ``evaluate.evaluate_sample`` returns them, one per sample (``seconds``: the
        wall time of the batched steps that served the sample's clicks)."""
        n, b = len(samples), self.batch
        if not 0 < n <= b:
            raise ValueError(f'between 1 and {b} samples per batch, got {n}')
        predictors = [self.new_predictor() for _ in range(b)]
        if not predictors[0].on_device:
            raise ValueError(f'batched evaluation needs an on-device back end; '
                             f'{predictors[0].backend.name} runs on the host')
        if self.variables is None:
            self.variables = jax.device_put(predictors[0].model.variables, self.replicated)
        for i, p in enumerate(predictors):
            p.load_image(samples[min(i, n - 1)].image)      # padding lanes repeat the last sample
        images = self._put(np.stack([p.canvas_image for p in predictors]))
        clickers = [Clicker(s.gt) for s in samples]
        preds = [np.zeros(s.gt.shape, bool) for s in samples]
        clicks = [[] for _ in samples]
        records = [{'ious': [], 'clicks': [], 'evals': [], 'seconds': [], 'cold': [], 'flops': []} for _ in samples]
        cost = click_cost(predictors[0])
        running = list(range(n))
        states, home = {}, [None] * b      # per network canvas: the lanes' state; where each lane's lives
        for _ in range(n_clicks):
            if not running:
                break
            plans = {}
            for i in running:
                clicks[i].append(clickers[i].make_next_click(preds[i]))
                plans[i] = predictors[i].plan(clicks[i])
            groups: dict = {}
            for i in running:
                groups.setdefault(plans[i].spec, []).append(i)
            for spec, lanes in groups.items():
                state = self._state(spec, lanes, states, home, predictors[0])
                filler = plans[lanes[0]].inp
                inps = [plans[i].inp if i in plans and plans[i].spec == spec else filler for i in range(b)]
                inp = steps.StepInput(images, *[self._put(np.stack([x[k] for x in inps]))
                                                for k in range(1, len(filler))])
                active = self._put(np.isin(np.arange(b), lanes))
                recompute = np.asarray(any(plans[i].recompute for i in lanes))
                counter = CompileCounter()
                t0 = time.perf_counter()
                probs, states[spec.net_canvas], stats = steps.run_batch(spec, self.mesh, self.variables, inp,
                                                                        state, recompute, active)
                probs, stats = np.asarray(probs), jax.tree_util.tree_map(np.asarray, stats)
                seconds = time.perf_counter() - t0
                cold = int(counter.loaded_any())
                for i in lanes:
                    home[i] = spec.net_canvas
                    out = predictors[i].finish(plans[i], probs[i], steps.StepStats(*(s[i] for s in stats)))
                    preds[i] = out > pred_thr
                    r = records[i]
                    r['ious'].append(float(np.float32(iou(samples[i].gt, preds[i]))))
                    r['evals'].append(predictors[i].stats.num_evals)
                    r['seconds'].append(seconds)
                    r['cold'].append(cold)
                # every lane runs as many evaluations as the busiest; the program's FLOPs are shared out
                executed = b * cost.flops(spec.net_canvas, max(records[i]['evals'][-1] for i in lanes), recompute)
                for i in lanes:
                    s = predictors[i].stats
                    records[i]['flops'].append([executed / len(lanes), cost.flops(s.net_hw, s.num_evals, s.recomputed)])
            running = [i for i in running if np.float32(records[i]['ious'][-1]) < np.float32(target_iou)]
        for r, cl in zip(records, clicks):
            r['clicks'] = [[int(c.row), int(c.col), int(c.is_positive)] for c in cl]
        return records

    def _state(self, spec, lanes, states, home, predictor) -> steps.StepState:
        """The batch state of ``spec``'s canvas; f-BRS variables of lanes whose state lives on
        another canvas are moved over (per-pixel variables are reset on a new input anyway)."""
        canvas = spec.net_canvas
        if canvas not in states:
            one = predictor.initial_state(spec)
            states[canvas] = self._put(jax.tree_util.tree_map(
                lambda a: np.broadcast_to(a, (self.batch,) + a.shape).copy(), one))
        state = states[canvas]
        movers = [i for i in lanes if home[i] is not None and home[i] != canvas]
        if spec.kind != 'NoBRS' and not spec.refine.per_pixel and movers:
            x = np.array(state.x)
            for i in movers:
                x[i] = np.asarray(states[home[i]].x)[i]
            state = state._replace(x=self._put(x))
        return state
