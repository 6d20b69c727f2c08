"""One command on a GPU or TPU machine (or this CPU): latency, throughput and parity, item by item.

    python experiments/accelerator_suite.py                  # defaults below; results under
                                                             # experiments/results/<device>/
    PYTHONPATH=BUNDLE/site python BUNDLE/accelerator_suite.py --bundle BUNDLE   # offline bundle
    python experiments/accelerator_suite.py --dry-run --out /tmp/suite          # tiny sizes (CI)

Within ``--deadline`` seconds (default 540) it runs these items in order, each in its own
process (so each reports its own peak device memory and a stuck item is cut at the deadline),
and rewrites ``<out>.json`` and ``<out>.md`` after every item: a run cut short keeps what it
measured.

1. ``benchmark``: NoBRS, f-BRS-B, f-BRS-C (r34, 400x600 scene, 10 clicks) at precision
   'highest' (float32), 'default' (TF32 on NVIDIA, bfloat16 passes on TPU) and 'bfloat16'
   (bfloat16 convolution operands, float32 accumulation, on every device): warm ms per
   click (wall and device, median / p90), compile seconds, evaluations per click, and per mode
   the largest device footprint of its click programs (XLA's memory analysis: arguments,
   outputs and temporaries); each item also reports its process's peak device memory.
2. ``throughput``: batched f-BRS-B on the first ``--samples`` (12) of GrabCut and Berkeley
   (``--batch`` lanes, precision 'highest'): lane-clicks per second, host seconds per
   lane-click, programs, executed / exact FLOPs, NoC beside the baseline run's.
3. ``reference``: the official PyTorch code on the same device, weights and scene
   (``experiments/reference_on_device.py``), for the per-click ratio; skipped without the
   reference source or torch.
4. ``main_job``: the README's main job (shipped model, synthetic split, NoBRS and f-BRS-B),
   NoC beside the README's CPU table (the baseline run's).
5. ``training``: steps per second of the shipped model's training config.
6. ``rgb_brs``: RGB-BRS latency (the whole network per evaluation), if time is left.
7. ``paper_table``: ``experiments/paper_table.py`` when ``--official-dir`` holds the
   official checkpoints and the datasets are present; skipped with the reason otherwise.

The baseline (``--baseline``, default ``experiments/results/accelerator_suite_cpu.json``) is
the committed CPU run of this suite; ``--dry-run`` makes every size tiny and compiles few
programs (main job in NoBRS only, training on ResNet-34); it uses the shipped model only
where no r34 weights are at hand. Precision and TF32: 'highest' reproduces the CPU's numbers; 'default' is the
speed a user gets with JAX's defaults, its NoC may differ slightly (rounding in a closed loop).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from typing import Callable, Optional

HERE = pathlib.Path(__file__).resolve().parent
ITEMS = ('benchmark', 'throughput', 'reference', 'main_job', 'training', 'rgb_brs', 'paper_table')
MARGIN_S = 15          # kept back from the deadline to write the results


@dataclasses.dataclass
class Context:
    """What every item needs (written as JSON for the item's process)."""
    checkpoint: str
    data_root: str
    dry_run: bool
    batch: int
    samples: int
    ref_home: Optional[str]
    ref_source: Optional[str]
    ref_shims: str                 # the folder of refshim.py (../shared/reference/live, or the bundle's)
    official_dir: Optional[str]
    work: str

    @property
    def sizes(self) -> dict:
        if self.dry_run:     # few, small programs: ZoomIn's target 64 (the throughput item's first clicks stay
            # full size), GrabCut alone, RGB-BRS for one click, the main job as the CLI test runs it (its
            # programs come from the persistent cache there), training on ResNet-34 (HRNet compiles ~3x longer)
            return {'scene': (64, 96), 'zoom': 64, 'clicks': 2, 'rgb_clicks': 1, 'repeats': 1, 'eval_clicks': 2,
                    'main_samples': 1, 'modes': ('NoBRS', 'f-BRS-B'), 'datasets': ('GrabCut',), 'train_steps': 2,
                    'train': {'arch': 'resnet34_dh128', 'batch_size': 2, 'aux_loss_weight': 0.0}}
        return {'scene': (400, 600), 'zoom': None, 'clicks': 10, 'rgb_clicks': 10, 'repeats': 3, 'eval_clicks': 20,
                'main_samples': None, 'datasets': ('GrabCut', 'Berkeley'), 'train_steps': 30, 'train': {},
                'modes': ('NoBRS', 'f-BRS-B', 'f-BRS-C')}


# -- the items (each runs in its own process; ``write`` keeps partial results) ------------------
def item_benchmark(ctx: Context, write: Callable[[dict], None], modes=None,
                   precisions=('highest', 'default', 'bfloat16'),
                   clicks: str = 'clicks'):
    from fbrs_jax.convert.loading import load_model
    from fbrs_jax.eval.benchmark import run_benchmark
    s = ctx.sizes
    out = {}
    for precision in precisions:
        model = load_model(ctx.checkpoint, precision=precision)
        # a dry run times NoBRS alone at the later precisions (fewer programs to compile)
        for mode in modes or (s['modes'] if precision == precisions[0] or not ctx.dry_run else s['modes'][:1]):
            r = run_benchmark(model, ctx.checkpoint, [mode], s['scene'], s[clicks], s['repeats'], 1, precision,
                              zoom_target=s['zoom'] or 400)
            out.setdefault(precision, {'settings': r['settings'], 'modes': {}})['modes'][mode] = r['modes'][mode]
            write(out)


def item_rgb_brs(ctx: Context, write):
    item_benchmark(ctx, write, modes=('RGB-BRS',), precisions=('highest',), clicks='rgb_clicks')


def item_throughput(ctx: Context, write):
    from fbrs_jax.convert.loading import load_model
    from fbrs_jax.data.readers import open_dataset
    from fbrs_jax.eval.evaluate import EvalSettings
    from fbrs_jax.eval.runner import run_evaluation
    model = load_model(ctx.checkpoint)
    out = {}
    for dataset in ctx.sizes['datasets']:
        settings = EvalSettings(mode='f-BRS-B', n_clicks=ctx.sizes['eval_clicks'], max_samples=ctx.samples,
                                zoom_target=ctx.sizes['zoom'])
        t0 = time.perf_counter()
        summary = run_evaluation(model, ctx.checkpoint, settings, {dataset: open_dataset(dataset, ctx.data_root)},
                                 pathlib.Path(ctx.work) / f'throughput_{dataset}', batch=ctx.batch, quiet=True)
        d, wall = summary['datasets'][dataset], time.perf_counter() - t0
        out[dataset] = {'batch': ctx.batch, 'samples': d['samples'], 'lane_clicks': d['clicks'], 'wall_s': wall,
                        'compilation': summary['compilation'],
                        'lane_clicks_per_s': d['clicks'] / wall,
                        'lane_clicks_per_s_warm': d['clicks'] / max(wall - summary['compilation']['compile_s'], 1e-9),
                        'host_s_per_lane_click': d.get('host_s_per_lane_click'),
                        'host_wait_s_per_lane_click': d.get('host_wait_s_per_lane_click'),
                        'lanes_per_program': d.get('lanes_per_program'),
                        'flops_ratio': d.get('flops_ratio'), 'flops_executed': d.get('flops_executed'),
                        **{k: d[k] for k in ('NoC@80', 'NoC@85', 'NoC@90', 'NoF@90')}}
        write(out)


def item_main_job(ctx: Context, write):
    from fbrs_jax.convert.loading import SHIPPED_CHECKPOINT, load_model
    from fbrs_jax.data.readers import open_dataset
    from fbrs_jax.eval.evaluate import EvalSettings
    from fbrs_jax.eval.runner import run_evaluation
    model = load_model(SHIPPED_CHECKPOINT)
    reader = open_dataset('synthetic_shapes')
    out = {}
    for mode in ('NoBRS', 'f-BRS-B'):
        settings = EvalSettings(mode=mode, n_clicks=ctx.sizes['eval_clicks'], max_samples=ctx.sizes['main_samples'])
        summary = run_evaluation(model, 'shipped', settings, {'synthetic_shapes': reader},
                                 pathlib.Path(ctx.work) / f'main_job_{mode}', quiet=True)
        d = summary['datasets']['synthetic_shapes']
        out[mode] = {k: d[k] for k in ('samples', 'NoC@80', 'NoC@85', 'NoC@90', 'NoF@85', 'NoF@90', 'SPC',
                                       'warm_s_per_click', 'elapsed_s')}
        out[mode]['compilation'] = summary['compilation']
        write(out)


def item_training(ctx: Context, write):
    import importlib.util
    from fbrs_jax.train.trainer import Trainer
    spec = importlib.util.spec_from_file_location('config', HERE / 'train_hrnet18s_synthetic.py')
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)
    steps = ctx.sizes['train_steps']
    cfg = dataclasses.replace(config.get_config(), log_every=1, checkpoint_every=10 ** 9, **ctx.sizes['train'])
    workdir = pathlib.Path(ctx.work) / 'training'
    shutil.rmtree(workdir, ignore_errors=True)
    trainer = Trainer(cfg, str(workdir), log=lambda line: None)
    t0 = time.perf_counter()
    trainer.fit(steps)
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in pathlib.Path(trainer.metrics_path).read_text().splitlines()]
    warm = [x['s_per_step'] for x in lines[1:]]  # the first step compiles
    write(
        {
            'config': 'train_hrnet18s_synthetic.py',
            'arch': cfg.arch,
            'batch_size': cfg.batch_size,
            'crop_hw': list(cfg.crop_hw),
            'steps': steps,
            'wall_s': wall,
            'first_step_s': lines[0]['s_per_step'],
            'steps_per_s': 1.0 / (sum(warm) / len(warm)) if warm else None,
        }
    )


def item_reference(ctx: Context, write):
    source = ctx.ref_source or (ctx.ref_home and str(pathlib.Path(ctx.ref_home) / 'src'))
    if not source or not pathlib.Path(source).is_dir():
        raise SkipItem('no reference source (--ref-home or --ref-source, or the bundle\'s reference/)')
    import importlib.util
    python = pathlib.Path(sys.executable)
    if importlib.util.find_spec('torch') is None:
        python = pathlib.Path(ctx.ref_home or '') / 'venv' / 'bin' / 'python'
        if not python.exists():
            raise SkipItem('torch is not installed')
    from fbrs_jax.convert.loading import load_model
    from fbrs_jax.eval.benchmark import benchmark_mode, scene
    s = ctx.sizes
    sample = scene(*s['scene'])
    work = pathlib.Path(ctx.work) / 'reference'
    work.mkdir(parents=True, exist_ok=True)
    import numpy as np
    images = work / 'scene.npz'
    np.savez_compressed(images, **{f'{sample.name}__image': sample.image, f'{sample.name}__gt_mask': sample.gt})
    model = load_model(ctx.checkpoint)
    out = {}
    for mode in s['modes'][:2]:
        ours = benchmark_mode(model, mode, sample, s['clicks'], s['repeats'], zoom_in={'target_size': 400},
                              **({} if mode == 'NoBRS' else {'solver': 'jaxopt'}))
        result = work / f'{mode}.json'
        proc = subprocess.run(
            [
                str(python),
                str(HERE / 'reference_on_device.py'),
                ctx.checkpoint,
                str(images),
                mode,
                '--source',
                source,
                '--live',
                ctx.ref_shims,
                '--clicks',
                str(s['clicks']),
                '--repeats',
                str(s['repeats']),
                '--out',
                str(result),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            raise RuntimeError(f'reference ({mode}): ' + (proc.stderr.strip().splitlines() or ['failed'])[-1])
        ref = json.loads(result.read_text())
        mine = ours['wall_s']['median']
        out[mode] = {'ours_s': mine, 'reference_s': ref['median_s'], 'device': ref['device'], 'torch': ref['torch'],
                     'ratio': mine / ref['median_s'], 'ours_ious': ours['ious'], 'reference_ious': ref['ious']}
        write(out)


def item_paper_table(ctx: Context, write):
    if not ctx.official_dir:
        raise SkipItem('no --official-dir with the official checkpoints')
    from paper_table import DATASETS, OFFICIAL, run_paper_table     # experiments/paper_table.py, beside this file
    found = [pathlib.Path(ctx.official_dir) / n for n in OFFICIAL if (pathlib.Path(ctx.official_dir) / n).exists()]
    if not found:
        raise SkipItem(f'none of the official checkpoints ({", ".join(OFFICIAL)}) in {ctx.official_dir}')
    present = [d for d in DATASETS if (pathlib.Path(ctx.data_root) / d).is_dir()]
    if not present:
        raise SkipItem(f'none of {", ".join(DATASETS)} under {ctx.data_root}')
    out = {}

    def keep(name, result):
        out[name] = result
        write({'checkpoints': out, 'markdown': '\n\n'.join(r['markdown'] for r in out.values() if r.get('markdown'))})
    for checkpoint in found:
        run_paper_table(checkpoint, ctx.data_root, pathlib.Path(ctx.work) / 'paper_table' / checkpoint.stem, present,
                        samples=2 if ctx.dry_run else None, write=lambda r, name=checkpoint.name: keep(name, r))


class SkipItem(Exception):
    """An item that cannot run here; its message is the reason."""


# -- the driver -------------------------------------------------------------------------------
def run_item(name: str, ctx_file: str, out_file: str) -> int:
    """Entry point of an item's process: runs it, writing {'status', 'result'} as it goes."""
    sys.path.insert(0, str(HERE))
    ctx = Context(**json.loads(pathlib.Path(ctx_file).read_text()))
    out = pathlib.Path(out_file)
    write = lambda result, status='running': out.write_text(json.dumps({'status': status, 'result': result}))
    partial = {}

    def keep(result):
        partial.clear()
        partial.update(result)
        write(result)
    from fbrs_jax.eval.runinfo import enable_compilation_cache
    enable_compilation_cache()
    try:
        globals()[f'item_{name}'](ctx, keep)
    except SkipItem as e:
        out.write_text(json.dumps({'status': 'skipped', 'reason': str(e), 'result': {}}))
        return 0
    except Exception as e:      # the reason in one line, what was measured kept; the traceback on stderr
        out.write_text(json.dumps({'status': 'failed', 'reason': f'{type(e).__name__}: {e}'.splitlines()[0],
                                   'result': partial}))
        raise
    from fbrs_jax.eval.runinfo import environment
    memory = _peak_memory()
    out.write_text(json.dumps({'status': 'done', 'result': partial, 'peak_device_bytes': memory,
                               'environment': environment()}))
    return 0


def _peak_memory() -> Optional[int]:
    import jax
    stats = jax.local_devices()[0].memory_stats()
    return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def device_name() -> str:
    """A folder name for the results of this machine's first device, e.g. 'nvidia-h100-80gb-hbm3', 'cpu'."""
    import jax
    d = jax.devices()[0]
    kind = d.device_kind if d.platform != 'cpu' else 'cpu'
    return re.sub(r'[^a-z0-9]+', '-', kind.lower()).strip('-')


def markdown(suite: dict) -> str:
    env = suite.get('environment', {})
    lines = [f"# Accelerator suite on {suite['device']}", '',
             f"jax {env.get('packages', {}).get('jax')}, {env.get('device')}, deadline {suite['deadline_s']:.0f} s"
             + (' (dry run: tiny sizes)' if suite['dry_run'] else ''), '']
    base = suite.get('baseline') or {}
    for name, item in suite['items'].items():
        status = item['status'] + (f": {item['reason']}" if item.get('reason') else '')
        lines += [f"## {name} — {status}, {item.get('seconds', 0):.0f} s", '']
        r = item.get('result') or {}
        if name in ('benchmark', 'rgb_brs'):
            lines += ['| precision | mode | compile s (programs) | wall ms median / p90 | device ms median / p90 '
                      '| evals / optimised click | program MB |', '|---|---|---|---|---|---|---|']
            for precision, p in r.items():
                for mode, m in p['modes'].items():
                    lines.append(f"| {precision} | {mode} | {m['compile_s']:.1f} ({m['compilations']}) | "
                                 f"{1e3 * m['wall_s']['median']:.1f} / {1e3 * m['wall_s']['p90']:.1f} | "
                                 f"{1e3 * m['device_s']['median']:.1f} / {1e3 * m['device_s']['p90']:.1f} | "
                                 f"{m['evals_per_optimised_click']:.1f} | "
                                 f"{'-' if m.get('program_bytes') is None else round(m['program_bytes'] / 2**20)} |")
        elif name == 'throughput':
            lines += [
                '| dataset | batch | samples | lane-clicks / s (warm) | host ms / lane-click | lanes / program | '
                'programs | executed / exact FLOPs | NoC@85 / 90 | baseline NoC@85 / 90 |',
                '|---|---|---|---|---|---|---|---|---|---|',
            ]
            for ds, t in r.items():
                b = (base.get('throughput', {}).get('result') or {}).get(ds)
                host = '-' if t['host_s_per_lane_click'] is None else f"{1e3 * t['host_s_per_lane_click']:.2f}"
                lanes = '-' if t.get('lanes_per_program') is None else f"{t['lanes_per_program']:.2f}"
                lines.append(f"| {ds} | {t['batch']} | {t['samples']} | {t['lane_clicks_per_s']:.2f} "
                             f"({t['lane_clicks_per_s_warm']:.2f}) | {host} | {lanes} | "
                             f"{t['compilation']['compilations']} | "
                             f"{t['flops_ratio']:.3f} | {t['NoC@85']:.2f} / {t['NoC@90']:.2f} | "
                             + (f"{b['NoC@85']:.2f} / {b['NoC@90']:.2f} |" if b else '- |'))
        elif name == 'main_job':
            lines += [
                '| mode | samples | NoC@80 / 85 / 90 | baseline NoC@80 / 85 / 90 | s / warm click |',
                '|---|---|---|---|---|',
            ]
            for mode, t in r.items():
                b = (base.get('main_job', {}).get('result') or {}).get(mode)
                noc = lambda x: f"{x['NoC@80']:.2f} / {x['NoC@85']:.2f} / {x['NoC@90']:.2f}"
                lines.append(f"| {mode} | {t['samples']} | {noc(t)} | {noc(b) if b else '-'} | "
                             f"{t['warm_s_per_click']:.3f} |")
        elif name == 'training' and r:
            lines.append(f"{r['config']}: batch {r['batch_size']} at {r['crop_hw'][0]}x{r['crop_hw'][1]}, "
                         f"{r['steps']} steps, {r['steps_per_s'] or float('nan'):.2f} steps/s warm "
                         f"(first step {r['first_step_s']:.1f} s)")
        elif name == 'reference':
            lines += ['| mode | ours s / click | reference s / click | ours / reference |', '|---|---|---|---|']
            for mode, t in r.items():
                lines.append(f"| {mode} | {t['ours_s']:.4f} | {t['reference_s']:.4f} | {t['ratio']:.2f} |")
        elif name == 'paper_table' and r.get('markdown'):
            lines.append(r['markdown'])
        lines.append('')
    return '\n'.join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run-item', nargs=3, metavar=('NAME', 'CONTEXT', 'OUT'), help=argparse.SUPPRESS)
    p.add_argument('--bundle', type=pathlib.Path, default=None,
                   help='an offline bundle folder (experiments/offline_bundle.py): its weights, data and baseline')
    p.add_argument('--checkpoint', default=None, help='default: the bundle\'s, else ../shared\'s r34')
    p.add_argument('--data-root', default=None)
    p.add_argument('--deadline', type=float, default=540.0, help='seconds for the whole suite')
    p.add_argument('--items', default=','.join(ITEMS))
    p.add_argument('--batch', type=int, default=None, help='lanes of the throughput item (default: 32, 8 on CPU)')
    p.add_argument(
        '--samples', type=int, default=12, help='samples of each dataset in the throughput item (the bundle holds 12)'
    )
    p.add_argument('--ref-home', default=None, help='REF_HOME of ../shared/reference/live/setup.sh')
    p.add_argument('--ref-source', default=None, help='the official source tree (holding isegm/)')
    p.add_argument('--official-dir', default=None, help='folder of the official .pth checkpoints (paper table)')
    p.add_argument('--baseline', type=pathlib.Path, default=None)
    p.add_argument('--work', type=pathlib.Path, default=None, help='scratch folder (default: <out>_work)')
    p.add_argument('--out', default=None, help='path prefix of the JSON and markdown (default: '
                   'experiments/results/<device>/accelerator_suite)')
    p.add_argument(
        '--dry-run', action='store_true', help='tiny sizes (CI); the shipped model when no r34 weights are at hand'
    )
    args = p.parse_args(argv)
    if args.run_item:
        return run_item(*args.run_item)
    t_start = time.perf_counter()
    import jax
    from fbrs_jax.convert.loading import SHIPPED_CHECKPOINT
    from fbrs_jax.eval.runinfo import environment
    bundle = args.bundle
    shared = HERE.parents[1] / 'shared'
    r34 = shared / 'reference' / 'weights' / 'resnet34_dh128_synth.pth'
    checkpoint = args.checkpoint or (str(next((bundle / 'weights').iterdir())) if bundle else
                                     str(r34) if r34.exists() or not args.dry_run else SHIPPED_CHECKPOINT)
    data_root = args.data_root or str(bundle / 'data' if bundle else shared / 'data')
    device = device_name()
    out = pathlib.Path(args.out or HERE / 'results' / device / 'accelerator_suite')
    out.parent.mkdir(parents=True, exist_ok=True)
    work = args.work or out.with_name(out.name + '_work')
    work.mkdir(parents=True, exist_ok=True)
    baseline_path = args.baseline or ((bundle or HERE / 'results') / 'accelerator_suite_cpu.json')
    baseline = json.loads(baseline_path.read_text())['items'] if baseline_path.exists() else {}
    ctx = Context(checkpoint=str(checkpoint), data_root=data_root, dry_run=args.dry_run,
                  batch=args.batch or (2 if args.dry_run else 8 if jax.default_backend() == 'cpu' else 32),
                  samples=1 if args.dry_run else args.samples, ref_home=args.ref_home,
                  ref_source=args.ref_source or (str(bundle / 'reference' / 'src') if bundle else None),
                  ref_shims=str(bundle / 'reference' if bundle else shared / 'reference' / 'live'),
                  official_dir=args.official_dir, work=str(work))
    ctx_file = work / 'context.json'
    ctx_file.write_text(json.dumps(dataclasses.asdict(ctx)))
    suite = {'suite': 'accelerator', 'device': device, 'deadline_s': args.deadline, 'dry_run': args.dry_run,
             'context': dataclasses.asdict(ctx), 'environment': environment(),
             'baseline': {'file': str(baseline_path), **baseline} if baseline else None, 'items': {}}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get('PYTHONPATH')])))

    def save():
        out.with_suffix('.json').write_text(json.dumps(suite, indent=1))
        out.with_suffix('.md').write_text(markdown(suite))

    for name in args.items.split(','):
        if name not in ITEMS:
            raise SystemExit(f'accelerator_suite: unknown item {name!r}; items: {", ".join(ITEMS)}')
        left = args.deadline - (time.perf_counter() - t_start) - MARGIN_S
        if left < 5:
            suite['items'][name] = {'status': 'not run', 'reason': 'deadline reached'}
            save()
            continue
        item_file = work / f'{name}.json'
        item_file.unlink(missing_ok=True)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), '--run-item', name,
                                   str(ctx_file), str(item_file)], env=env, capture_output=True, text=True,
                                  timeout=left)
            failure = None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ['failed'])[-1]
            cut = False
        except subprocess.TimeoutExpired:
            failure, cut = None, True
        item = json.loads(item_file.read_text()) if item_file.exists() else {'result': {}}
        if cut:
            item.update(status='cut', reason=f'deadline reached after {time.perf_counter() - t0:.0f} s')
        elif failure and item.get('status') != 'failed':
            item.update(status='failed', reason=failure)
        item['seconds'] = time.perf_counter() - t0
        suite['items'][name] = item
        save()
        print(f"{name}: {item['status']}" + (f" ({item['reason']})" if item.get('reason') else '')
              + f", {item['seconds']:.0f} s", flush=True)
    print(f'results in {out}.json and {out}.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
