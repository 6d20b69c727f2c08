"""Dataset evaluation as the reference's ``evaluate_dataset`` (SPEC 4.2), resumable.

Per sample: a fresh clicker, ``set_image``, then up to ``n_clicks`` clicks, each from the
current prediction (``prob > pred_thr``), stopping as soon as IoU >= ``target_iou``. Every
finished sample is appended to ``<out>/<dataset>.jsonl`` at once, so an interrupted run
resumes at the next sample; ``summary.json``, the table and the plot are made from those files.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..brs.reference_settings import N_CLICKS, PROB_THRESH, TARGET_IOU
from ..brs.solvers import DEFAULT_BACKEND
from ..brs.spec import RefinementSpec, preset
from ..inference.predictor import CANVAS_STEP
from .clicker import Clicker
from .metrics import iou, mean_iou_curve, summarize
from .runinfo import CompileCounter, pyplot


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    mode: str
    n_clicks: int = N_CLICKS
    target_iou: float = TARGET_IOU
    pred_thr: float = PROB_THRESH
    backend: str = DEFAULT_BACKEND
    with_flip: bool = True
    zoom_in: bool = True
    clicks_limit: Optional[int] = None        # None: the mode's default (5 / 8 / all), -1: all
    max_samples: Optional[int] = None         # first N samples of each dataset
    zoom_target: Optional[int] = None         # None: the dataset's (``zoom_in_params``)
    refinement: Optional[RefinementSpec] = None   # given: used as is (``mode`` is its name)
    canvas_step: Optional[int] = CANVAS_STEP  # network canvases: sizes rounded up to it; None: the dataset's canvas
    widen: Optional[float] = None             # batched: a click may join a program of up to this many times its
                                              # canvas's pixels (``BatchedEvaluator``); None: its own canvas only

    def refinement_spec(self) -> RefinementSpec:
        """The predictor's spec: ``refinement``, or the mode's preset with these settings."""
        if self.refinement is not None:
            return self.refinement
        overrides = dict(with_flip=self.with_flip, zoom_in=self.zoom_in, prob_thresh=self.pred_thr)
        if self.mode != 'NoBRS':
            overrides['solver'] = self.backend
        if self.clicks_limit is not None:
            overrides['clicks_limit'] = None if self.clicks_limit == -1 else self.clicks_limit
        return preset(self.mode, **overrides)


def zoom_in_params(dataset: str, target: Optional[int] = None) -> dict:
    """ZoomIn settings of a dataset: the evaluation script's target size 600 for DAVIS and 400
    for the other real sets, with its minimal crop of 200; for ``synthetic_shapes`` (120×160
    scenes) target 128 and minimal crop 80, the reference geometry scaled down, so that
    zoomed crops stay within the scales its models are trained at. ``target`` overrides the size."""
    default_target, min_crop = {'DAVIS': (600, 200), 'synthetic_shapes': (128, 80)}.get(dataset, (400, 200))
    return {'target_size': target or default_target, 'min_crop_size': min_crop}


def timed_predict(predictor, clicks) -> tuple[np.ndarray, float, int, bool]:
    """(probabilities, seconds, objective evaluations, cold) of one ``predict`` call; cold: it
    compiled a program or loaded one from the persistent cache."""
    counter = CompileCounter()
    t0 = time.perf_counter()
    probs = predictor.predict(clicks)
    seconds = time.perf_counter() - t0
    stats = getattr(predictor, 'stats', None)
    return probs, seconds, stats.num_evals if stats is not None else 0, counter.loaded_any()


def evaluate_sample(predictor, image, gt, n_clicks: int, target_iou: float, pred_thr: float,
                    per_click: Optional[Callable[[Any], dict]] = None) -> dict:
    """IoU (float32) after every click, the clicks, objective evaluations, seconds per click and
    whether the click was cold (compiled or loaded a program). ``per_click(predictor)``: more
    fields to record after every click (one list per key)."""
    clicker = Clicker(gt)
    pred = np.zeros(gt.shape, bool)
    predictor.set_image(image)
    clicks, ious, evals, seconds, cold, extra = [], [], [], [], [], {}
    for _ in range(n_clicks):
        clicks.append(clicker.make_next_click(pred))
        probs, dt, n, compiled = timed_predict(predictor, clicks)
        seconds.append(dt)
        evals.append(n)
        cold.append(int(compiled))
        pred = probs > pred_thr
        ious.append(float(np.float32(iou(gt, pred))))
        for k, v in (per_click(predictor) if per_click else {}).items():
            extra.setdefault(k, []).append(v)
        if np.float32(ious[-1]) >= np.float32(target_iou):
            break
    return {'ious': ious, 'clicks': [[int(c.row), int(c.col), int(c.is_positive)] for c in clicks],
            'evals': evals, 'seconds': seconds, 'cold': cold, **extra}


def write_atomic(path: pathlib.Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one step: a kill or a full disk leaves the old file or the
    new one, never a torn one."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ResultsFile:
    """``<dataset>.jsonl``: one JSON line per finished sample (a torn last line is dropped)."""

    def __init__(self, path: pathlib.Path, repair: bool = True):
        self.path = path
        self.records: list[dict] = []
        if path.exists():
            lines = path.read_text().splitlines()
            for line in lines:
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError:
                    break                      # interrupted while writing: redo that sample
            if repair:
                write_atomic(path, ''.join(json.dumps(r) + '\n' for r in self.records))

    def append(self, record: dict) -> None:
        with open(self.path, 'a') as f:
            f.write(json.dumps(record) + '\n')
            f.flush()
        self.records.append(record)


def dataset_summary(records: Sequence[dict], max_clicks: int) -> dict:
    """NoC/NoF from the IoU lists; SPC from the wall time spent in the loop (image loading,
    clicker and predictor, as the reference measures it) over all clicks made; the warm latency
    from the clicks that compiled nothing (records without ``cold`` flags count as warm); the
    hypervisor's share of the CPU while the samples ran (``cpu_steal``, wall-time weighted; None
    where not measured); with per-click ``flops`` records the dense FLOPs executed, those of
    every click at its exact size, and their ratio (``flops.py``); for a batched run the mean
    lanes per program (lane-clicks over programs run), and the host's CPU seconds per
    lane-click over the rounds that compiled nothing, outside and in its waits for results."""
    ious = [r['ious'] for r in records]
    out = summarize(ious, sum(r['wall_s'] for r in records), max_clicks=max_clicks)
    evals = [e for r in records for e in r['evals']]
    optimised = [e for r in records for e in r['evals'][1:]]
    out['predictor_s_per_click'] = (sum(sum(r['seconds']) for r in records) / out['clicks']
                                    if out['clicks'] else float('nan'))
    warm = [t for r in records for t, c in zip(r['seconds'], r.get('cold', [0] * len(r['seconds']))) if not c]
    out['warm_s_per_click'] = float(np.mean(warm)) if warm else float('nan')
    out['evals_per_click'] = float(np.mean(evals)) if evals else 0.0
    out['evals_per_optimised_click'] = float(np.mean(optimised)) if optimised else 0.0
    out['mean_iou_curve'] = mean_iou_curve(ious, max_clicks).tolist()
    flops = [f for r in records for f in r.get('flops', [])]
    if flops:
        out['flops_executed'] = float(sum(f[0] for f in flops))
        out['flops_exact'] = float(sum(f[1] for f in flops))
        out['flops_ratio'] = out['flops_executed'] / out['flops_exact']
    host = [t for r in records for t in r.get('host_s', []) if t is not None]
    if host:
        out['host_s_per_lane_click'] = float(np.mean(host))
    wait = [t for r in records for t in r.get('wait_s', []) if t is not None]
    if wait:
        out['host_wait_s_per_lane_click'] = float(np.mean(wait))
    lanes = [n for r in records for n in r.get('lanes', [])]
    if lanes:
        out['lanes_per_program'] = len(lanes) / sum(1 / n for n in lanes)
    stolen = [(r['cpu_steal'], r['wall_s']) for r in records if r.get('cpu_steal') is not None]
    weight = sum(w for _, w in stolen)
    out['cpu_steal'] = sum(f * w for f, w in stolen) / weight if weight > 0 else None
    return out


def format_table(results: dict) -> str:
    """The reference script's table (NoC@80/85/90, >=20@85/90, SPC, Time) for
    ``{mode: {dataset: summary}}``."""
    mw = max([11] + [len(m) for m in results])
    dw = max([10] + [len(n) for summaries in results.values() for n in summaries])
    head = (f"| {'Pipeline':<{mw}} | {'Dataset':<{dw}} | NoC@80 | NoC@85 | NoC@90 | >=20@85 | >=20@90 "
            f"|  SPC,s | Time     |")
    rows = [head, '|' + '|'.join('-' * len(c) for c in head.split('|')[1:-1]) + '|']
    for mode, summaries in results.items():
        for name, s in summaries.items():
            t = time.strftime('%H:%M:%S', time.gmtime(s.get('elapsed_s', 0.0)))
            rows.append(f"| {mode:<{mw}} | {name:<{dw}} | {s['NoC@80']:6.2f} | {s['NoC@85']:6.2f} "
                        f"| {s['NoC@90']:6.2f} | {s['NoF@85']:7d} | {s['NoF@90']:7d} "
                        f"| {s.get('SPC', float('nan')):6.3f} | {t} |")
    return '\n'.join(rows)


def plot_curves(path: pathlib.Path, results: dict) -> None:
    """Mean IoU after each click, one line per (mode, dataset) of ``{mode: {dataset: summary}}`` (PNG)."""
    plt = pyplot()
    if plt is None:
        return
    from matplotlib.ticker import MaxNLocator
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for mode, summaries in results.items():
        for name, s in summaries.items():
            curve = s['mean_iou_curve']
            label = name if len(results) == 1 else f'{mode} {name}'
            ax.plot(np.arange(1, len(curve) + 1), curve, marker='o', markersize=3, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('number of clicks')
    ax.set_ylabel('mean IoU')
    ax.set_title(f'{", ".join(results)}: IoU vs clicks')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def replay_clicks(predictor, image, clicks: Sequence) -> list[dict]:
    """Teacher forcing: predict after each prefix of a fixed click list (e.g. a reference
    trace's); per click the probabilities, the zoom box, evaluations and seconds."""
    predictor.set_image(image)
    out = []
    for k in range(len(clicks)):
        probs, seconds, evals, _ = timed_predict(predictor, clicks[:k + 1])
        roi = predictor.sample.zoom.roi if predictor.zoom is not None else None
        out.append({'probs': probs, 'roi': roi, 'seconds': seconds,
                    'evals': evals})
    return out
