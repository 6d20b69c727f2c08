"""``fbrs-jax benchmark``: per-click latency of each mode on a fixed scene, warm.

The scene is deterministic (a textured background with an elliptical object; ``scene``), the
clicks come from the reference clicker in closed loop and never stop early, so every mode
makes exactly ``clicks`` clicks. A first pass compiles (its compilations and seconds are
reported apart); ``repeats`` warm passes are timed: end-to-end wall time of ``predict`` and
the device part (the compiled step and the result transfer), median and p90 over all clicks,
objective evaluations per click, the network input sizes and how much of their canvas they
fill, the largest device footprint of the mode's click programs (``program_bytes``: XLA's
memory analysis, per mode), the process's peak device memory so far (where the backend reports
it; it includes the modes run before) and its peak resident memory. With ``batch`` > 1 the
batched evaluator runs ``batch`` copies of the scene at once and the time per batched step is
reported.
"""
from __future__ import annotations

import resource
import time
from typing import Optional, Sequence

import numpy as np
import jax

from ..brs.reference_settings import PROB_THRESH
from ..brs.solvers import DEFAULT_BACKEND
from ..data.readers import Sample
from ..inference import step as steps
from ..inference.factory import make_predictor
from .evaluate import evaluate_sample
from .runinfo import CompileCounter, cpu_ticks, environment, steal_fraction


def scene(h: int, w: int, seed: int = 0) -> Sample:
    """A deterministic (h, w) RGB scene with one elliptical object and its mask."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    background = 90 + 40 * np.sin(rows / 17.0)[..., None] * np.cos(cols / 23.0)[..., None] * np.array([1.0, 0.6, 0.3])
    inside = ((rows - 0.55 * h) / (0.28 * h)) ** 2 + ((cols - 0.45 * w) / (0.22 * w)) ** 2 <= 1.0
    image = background + rng.normal(0, 12, (h, w, 3))
    image[inside] = np.array([170.0, 60.0, 50.0]) + rng.normal(0, 12, (int(inside.sum()), 3))
    return Sample(f'scene_{h}x{w}', np.clip(image, 0, 255).astype(np.uint8), inside.astype(np.int32))


def _percentiles(xs: Sequence[float]) -> Optional[dict]:
    """Median, p90, mean and count; None when there is nothing (e.g. after the first of one click)."""
    xs = np.asarray(xs, np.float64)
    if xs.size == 0:
        return None
    return {'median': float(np.median(xs)), 'p90': float(np.percentile(xs, 90)), 'mean': float(xs.mean()),
            'n': int(xs.size)}


def _peak_device_bytes() -> Optional[int]:
    stats = jax.local_devices()[0].memory_stats()
    return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def _click_details(predictor) -> dict:
    (h, w), (ch, cw) = predictor.stats.net_hw, predictor.stats.net_canvas
    return {'wall_s': predictor.last_wall_s, 'device_s': predictor.last_device_s, 'net_hw': [h, w],
            'canvas_fill': h * w / (ch * cw)}


def program_bytes(predictor, sample: Sample, clicks) -> Optional[int]:
    """The largest arguments + outputs + temporaries - aliased bytes of the compiled click programs
    that ``clicks`` run on ``sample`` (None where the backend gives no memory analysis)."""
    if not predictor.on_device:
        return None
    predictor.set_image(sample.image)
    seen, most = set(), None
    for k in range(len(clicks)):
        plan, _ = predictor.plan(predictor.sample, clicks[:k + 1])
        if plan.spec not in seen:
            seen.add(plan.spec)
            m = steps.run_batch.lower(*predictor.program_args(plan)).compile().memory_analysis()
            if m is not None:
                size = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
                most = max(most or 0, int(size))
        predictor.predict(clicks[:k + 1])
    return most


def benchmark_mode(model, mode: str, sample: Sample, clicks: int, repeats: int, batch: int = 1,
                   **predictor_kwargs) -> dict:
    """Compile pass, then ``repeats`` timed passes of ``clicks`` closed-loop clicks."""
    new = lambda: make_predictor(model, mode, **predictor_kwargs)
    counter = CompileCounter()
    t0 = time.perf_counter()
    if batch == 1:
        run = lambda: evaluate_sample(new(), sample.image, sample.gt, clicks, 2.0, PROB_THRESH,
                                      per_click=_click_details)
    else:
        from .batched import BatchedEvaluator
        evaluator = BatchedEvaluator(new(), batch)
        run = lambda: evaluator.evaluate([sample] * batch, clicks, 2.0, PROB_THRESH)
    run()
    compile_pass_s = time.perf_counter() - t0
    compiled = counter.read()
    ticks = cpu_ticks()
    passes = [run() for _ in range(repeats)]
    after, steal = counter.read(), steal_fraction(ticks, cpu_ticks())
    out = {'mode': mode, 'clicks': clicks, 'repeats': repeats, 'batch': batch,
           'compilations': compiled['compilations'], 'compile_s': compiled['compile_s'],
           'compile_cache_hits': compiled['cache_hits'], 'cache_load_s': compiled['load_s'],
           'first_pass_s': compile_pass_s,
           'compilations_while_timed': after['compilations'] - compiled['compilations'],
           'cpu_steal_while_timed': steal}
    if batch == 1:
        every = lambda key, start=0: [v for p in passes for v in p[key][start:]]
        optimised = every('evals', 1)
        out.update(wall_s=_percentiles(every('wall_s')), device_s=_percentiles(every('device_s')),
                   wall_s_after_first_click=_percentiles(every('wall_s', 1)),
                   evals_per_optimised_click=float(np.mean(optimised)) if optimised else 0.0,
                   evals=passes[0]['evals'], ious=[round(v, 4) for v in passes[0]['ious']],
                   net_hw=passes[0]['net_hw'], canvas_fill=float(np.mean(every('canvas_fill'))),
                   wall_s_per_click=every('wall_s'),
                   program_bytes=program_bytes(new(), sample, passes[0]['clicks']))
    else:
        steps = [s for p in passes for s in p[0]['seconds']]
        out.update(step_s=_percentiles(steps), sample_click_s=_percentiles(np.asarray(steps) / batch),
                   evals=passes[0][0]['evals'], ious=[round(v, 4) for v in passes[0][0]['ious']],
                   lanes_identical=all(r['clicks'] == passes[0][0]['clicks'] for r in passes[0]))
    out['peak_device_bytes'] = _peak_device_bytes()
    out['peak_host_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_benchmark(model, checkpoint: str, modes: Sequence[str], size: tuple[int, int], clicks: int,
                  repeats: int, batch: int, precision: str, with_flip: bool = True,
                  zoom_target: Optional[int] = 400, backend: str = DEFAULT_BACKEND) -> dict:
    """Every mode on one scene; the result dictionary written as the benchmark JSON."""
    sample = scene(*size)
    kwargs = dict(with_flip=with_flip, zoom_in={'target_size': zoom_target} if zoom_target else None)
    results = {}
    for mode in modes:
        mode_kwargs = dict(kwargs, **({} if mode == 'NoBRS' else {'solver': backend}))
        results[mode] = benchmark_mode(model, mode, sample, clicks, repeats, batch, **mode_kwargs)
    return {'benchmark': 'click_latency', 'checkpoint': checkpoint, 'arch': model.arch.name,
            'checkpoint_sha256': model.source.get('sha256'),
            'settings': {'size_hw': list(size), 'clicks': clicks, 'repeats': repeats, 'batch': batch,
                         'precision': precision, 'with_flip': with_flip, 'zoom_in_target': zoom_target,
                         'backend': backend, 'scene': sample.name},
            'environment': environment(), 'modes': results}


def markdown_table(result: dict) -> str:
    """One row per mode: compile, warm wall/device latency (median, p90), evaluations, memory."""
    s, env = result['settings'], result['environment']
    lines = [f"{result['arch']} on {env['device']} ({env['backend']}), {s['size_hw'][0]}x{s['size_hw'][1]} scene, "
             f"{s['clicks']} clicks x {s['repeats']} repeats, batch {s['batch']}, precision {s['precision']}, "
             f"flip {s['with_flip']}, zoom-in {s['zoom_in_target']}", '']
    if s['batch'] == 1:
        lines += ['| mode | compile s (programs) | wall ms median | wall ms p90 | device ms median | device ms p90 '
                  '| evals / optimised click | program MB | peak device MB (process) | peak host MB |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        for m, r in result['modes'].items():
            mem = '-' if r['peak_device_bytes'] is None else f"{r['peak_device_bytes'] / 2**20:.0f}"
            program = '-' if r.get('program_bytes') is None else f"{r['program_bytes'] / 2**20:.0f}"
            lines.append(
                f"| {m} | {r['compile_s']:.1f} ({r['compilations']}) | {1e3 * r['wall_s']['median']:.1f} "
                f"| {1e3 * r['wall_s']['p90']:.1f} | {1e3 * r['device_s']['median']:.1f} "
                f"| {1e3 * r['device_s']['p90']:.1f} | {r['evals_per_optimised_click']:.1f} | {program} | {mem} "
                f"| {r['peak_host_rss_mb']:.0f} |"
            )
    else:
        lines += [
            '| mode | compile s (programs) | step ms median | step ms p90 | ms per sample-click | peak device MB |',
            '|---|---|---|---|---|---|',
        ]
        for m, r in result['modes'].items():
            mem = '-' if r['peak_device_bytes'] is None else f"{r['peak_device_bytes'] / 2**20:.0f}"
            lines.append(f"| {m} | {r['compile_s']:.1f} ({r['compilations']}) | {1e3 * r['step_s']['median']:.1f} "
                         f"| {1e3 * r['step_s']['p90']:.1f} | {1e3 * r['sample_click_s']['median']:.1f} | {mem} |")
    return '\n'.join(lines)
