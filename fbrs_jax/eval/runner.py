"""``fbrs-jax evaluate``: datasets -> per-sample JSONL, summary JSON, table and plot.

Every image of a dataset is stored on one canvas (the largest image, rounded up to a multiple
of 8). The network runs on each image's or crop's size rounded up to ``canvas_step`` (32:
at most 31 pixels of padding a side), so a dataset needs one compiled program per size bucket
of its images and of its ZoomIn crops; ``canvas_step`` None runs every click on the dataset's
canvas or the square ZoomIn canvas (fewest programs, most padding). The summary reports the
programs compiled and the dense FLOPs executed against those of every click at its exact size.

Every on-device evaluation is one closed loop, ``batched.BatchedEvaluator``: sequentially
(``batch`` 1) it holds one sample in flight on one device, so each click's time is its
latency; ``batch`` > 1 runs programs of up to that many lanes, continuously batched from a pool
of samples in flight and sharded over the local devices. The host solver (SciPy) runs the
interactive predictor click by click (``evaluate.evaluate_sample``). With ``distributed``
the process joins ``jax.distributed`` and evaluates every ``process_count``-th block of
``batch`` samples, writing its own ``<dataset>.p<k>.jsonl``;
process 0 writes the summary once all processes are done. Results are written per sample, so
an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import sys
import time

from ..inference.factory import make_predictor
from ..inference.predictor import round_up
from ..inference.zoom_in import ZoomInParams
from .evaluate import (EvalSettings, ResultsFile, dataset_summary, evaluate_sample, format_table, write_atomic,
                       plot_curves, zoom_in_params)
from .flops import flop_fields
from .runinfo import STEAL_WARNING, CompileCounter, cpu_ticks, environment, steal_fraction


class _Samples:
    """``reader``'s samples at ``indices``, read when asked for."""

    def __init__(self, reader, indices):
        self.reader, self.indices = reader, indices

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        return self.reader[self.indices[k]]


def _written(shards, bar, record: dict) -> None:
    shards.mine.append(record)
    bar.update(1)
    bar.set_postfix(clicks=len(record['ious']), iou=f"{record['ious'][-1]:.3f}")


def dataset_canvas(reader, n: int) -> tuple[int, int]:
    """The full-image canvas of a dataset: the largest height and width, rounded up to 8."""
    sizes = [reader.image_hw(i) for i in range(n)]
    return round_up((max(h for h, _ in sizes), max(w for _, w in sizes)), 8)


class _Shards:
    """A dataset's results: this process's JSONL file, and every process's records."""

    def __init__(self, out: pathlib.Path, dataset: str, process: int, processes: int):
        self.files = ([out / f'{dataset}.jsonl'] if processes == 1
                      else [out / f'{dataset}.p{k}.jsonl' for k in range(processes)])
        self.mine = ResultsFile(self.files[process if processes > 1 else 0])

    def records(self) -> list[dict]:
        out = []
        for f in self.files:
            out.extend(self.mine.records if f == self.mine.path else ResultsFile(f, repair=False).records)
        return sorted(out, key=lambda r: r['index'])


def run_evaluation(model, checkpoint: str, settings: EvalSettings, readers: dict, out: pathlib.Path, *,
                   batch: int = 1, distributed: bool = False, quiet: bool = False) -> dict:
    """Evaluate ``readers`` ({name: reader}); returns the summary (also written to ``out``)."""
    import jax
    from tqdm import tqdm
    from .batched import BatchedEvaluator

    process, processes = (jax.process_index(), jax.process_count()) if distributed else (0, 1)
    counter = CompileCounter()
    run = {'checkpoint': checkpoint, 'checkpoint_sha256': model.source.get('sha256'),
           'arch': model.arch.name, 'precision': str(model.module.precision), 'settings': dataclasses.asdict(settings)}
    out.mkdir(parents=True, exist_ok=True)
    run_file = out / 'run.json'
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        previous.setdefault('precision', 'highest')      # runs before the options existed
        previous.get('settings', {}).setdefault('widen', None)
        if {k: previous.get(k) for k in run} != run:
            raise ValueError(f'{out} holds results of a different run (see {run_file}); choose another --out')
    if process == 0:
        write_atomic(run_file, json.dumps(run, indent=1))

    sizes = {name: len(r) if settings.max_samples is None else min(len(r), settings.max_samples)
             for name, r in readers.items()}
    spec = settings.refinement_spec()
    zooms = {name: ZoomInParams(**zoom_in_params(name, settings.zoom_target)) if spec.zoom_in else None
             for name in readers}
    canvases, shard_files, t_start = {}, {}, time.perf_counter()
    for name, reader in readers.items():
        n = sizes[name]
        canvases[name] = dataset_canvas(reader, n)
        new_predictor = functools.partial(make_predictor, model, spec, zoom_in=zooms[name], canvas=canvases[name],
                                          canvas_step=settings.canvas_step)
        shards = shard_files[name] = _Shards(out, name, process, processes)
        records = shards.records()
        stale = next((r for r in records if r['index'] < len(reader) and r['name'] != reader.name(r['index'])), None)
        if stale is not None:
            raise ValueError(f'{out} holds results for another version of {name}: sample {stale["index"]} was '
                             f'{stale["name"]}, now {reader.name(stale["index"])}; choose another --out')
        done = {r['index'] for r in records}
        chunks = [list(range(i, min(i + batch, n))) for i in range(0, n, batch)][process::processes]
        todo = [c for c in ([i for i in chunk if i not in done] for chunk in chunks) if c]
        bar = tqdm(total=sum(map(len, chunks)), initial=sum(map(len, chunks)) - sum(map(len, todo)),
                   desc=f'{name} {settings.mode}', unit='sample', disable=quiet)
        predictor = new_predictor()
        if predictor.on_device:
            order = [i for chunk in todo for i in chunk]
            clock = [time.perf_counter(), cpu_ticks()]

            def keep(k: int, record: dict) -> None:
                # a sample's wall time: since the previous sample finished (they add up to the run's)
                now, ticks = time.perf_counter(), cpu_ticks()
                record.update(index=order[k], name=reader.name(order[k]), wall_s=now - clock[0],
                              cpu_steal=steal_fraction(clock[1], ticks))
                clock[:] = now, ticks
                _written(shards, bar, record)

            evaluator = BatchedEvaluator(predictor, batch, pool_size=None if batch > 1 else 1, widen=settings.widen)
            evaluator.evaluate(_Samples(reader, order), settings.n_clicks, settings.target_iou, settings.pred_thr,
                               on_record=keep)
        else:                    # the host solver (SciPy): the interactive predictor, click by click
            for chunk in todo:
                t0, ticks = time.perf_counter(), cpu_ticks()
                for i in chunk:
                    s = reader[i]
                    record = evaluate_sample(predictor, s.image, s.gt, settings.n_clicks, settings.target_iou,
                                             settings.pred_thr, per_click=flop_fields)
                    record.update(index=i, name=s.name, wall_s=time.perf_counter() - t0,
                                  cpu_steal=steal_fraction(ticks, cpu_ticks()))
                    _written(shards, bar, record)
        bar.close()

    if processes > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices('fbrs_jax evaluate done')
        if process != 0:
            return {}
    summaries = {name: dataset_summary([r for r in shard_files[name].records() if r['index'] < n],
                                       settings.n_clicks) for name, n in sizes.items()}
    print(format_table({settings.mode: summaries}))
    stolen = max((s['cpu_steal'] for s in summaries.values() if s['cpu_steal'] is not None), default=0.0)
    if stolen > STEAL_WARNING:
        print(f'warning: the hypervisor took {stolen:.0%} of the CPU time while samples ran; '
              f'timings may read up to {1 / (1 - stolen):.1f}x too long', file=sys.stderr)
    summary = {**run, 'refinement': dataclasses.asdict(spec),
               'zoom_in': {k: z and dataclasses.asdict(z) for k, z in zooms.items()},
               'environment': environment(), 'batch': batch, 'processes': processes,
               'canvases': {k: list(v) for k, v in canvases.items()},
               'compilation': counter.read(), 'session_s': time.perf_counter() - t_start, 'datasets': summaries}
    write_atomic(out / 'summary.json', json.dumps(summary, indent=1))
    plot_curves(out / 'iou_vs_clicks.png', {settings.mode: summaries})
    print(f'results in {out}/ (summary.json, iou_vs_clicks.png, <dataset>.jsonl)')
    return summary
