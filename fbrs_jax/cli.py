"""``fbrs-jax`` command line. Errors are one line on stderr: exit 2 for usage, 1 for data problems;
``--debug`` shows the traceback instead."""
from __future__ import annotations

import argparse
import sys
import time


def _cmd_convert(args) -> int:
    from .convert.loading import convert
    t0 = time.perf_counter()
    model = convert(args.src, args.dst)
    print(f'{args.src} -> {args.dst}: {model.arch.name}, {model.num_values:,} values '
          f'({model.num_params:,} trainable), sha256 {model.source["sha256"][:12]}, '
          f'{time.perf_counter() - t0:.1f} s')
    return 0


def _enable_compilation_cache() -> None:
    """Persistent XLA cache (``$FBRS_JAX_CACHE`` or ~/.cache/fbrs_jax/xla): later runs skip compiles."""
    import os
    import pathlib

    import jax
    path = os.environ.get('FBRS_JAX_CACHE') or str(pathlib.Path.home() / '.cache' / 'fbrs_jax' / 'xla')
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


def _cmd_evaluate(args) -> int:
    import dataclasses
    import json
    import pathlib

    from tqdm import tqdm

    from .convert.loading import load_model
    from .data.readers import open_dataset
    from .eval.evaluate import (EvalSettings, ResultsFile, dataset_summary, evaluate_sample,
                                format_table, plot_curves, zoom_target)
    from .eval.runinfo import CompileCounter, environment
    from .inference.factory import make_predictor

    settings = EvalSettings(mode=args.mode, n_clicks=args.n_clicks, target_iou=args.target_iou,
                            pred_thr=args.thresh, backend=args.backend, with_flip=not args.no_flip,
                            zoom_in=not args.no_zoom_in, clicks_limit=args.clicks_limit,
                            max_samples=args.max_samples)
    datasets = [d.strip() for d in args.datasets.split(',') if d.strip()]
    readers = {d: open_dataset(d, args.data_root) for d in datasets}     # fail early on a bad folder
    _enable_compilation_cache()
    counter = CompileCounter()
    model = load_model(args.checkpoint)
    out = pathlib.Path(args.out or f'runs/evaluate/{model.arch.name}_{args.mode}')
    out.mkdir(parents=True, exist_ok=True)
    run = {'checkpoint': str(args.checkpoint), 'checkpoint_sha256': model.source.get('sha256'),
           'arch': model.arch.name, 'settings': dataclasses.asdict(settings)}
    run_file = out / 'run.json'
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if {k: previous.get(k) for k in run} != run:
            raise ValueError(f'{out} holds results of a different run (see {run_file}); choose another --out')
    run_file.write_text(json.dumps(run, indent=1))

    summaries, t_start = {}, time.perf_counter()
    for name, reader in readers.items():
        limit = settings.clicks_limit
        predictor = make_predictor(
            model, settings.mode, with_flip=settings.with_flip, backend=settings.backend,
            prob_thresh=settings.pred_thr,
            zoom_in={'target_size': zoom_target(name)} if settings.zoom_in else None,
            **({} if limit is None else {'net_clicks_limit': None if limit == -1 else limit}))
        results = ResultsFile(out / f'{name}.jsonl')
        n = len(reader) if settings.max_samples is None else min(len(reader), settings.max_samples)
        todo = [i for i in range(n) if i not in results.done()]
        bar = tqdm(todo, desc=f'{name} {settings.mode}', unit='sample', initial=n - len(todo), total=n,
                   disable=args.quiet)
        for i in bar:
            t0 = time.perf_counter()
            sample = reader[i]
            record = evaluate_sample(predictor, sample.image, sample.gt, settings.n_clicks,
                                     settings.target_iou, settings.pred_thr)
            record.update(index=i, name=sample.name, wall_s=time.perf_counter() - t0)
            results.append(record)
            bar.set_postfix(clicks=len(record['ious']), iou=f"{record['ious'][-1]:.3f}")
        summaries[name] = dataset_summary([r for r in results.records if r['index'] < n], settings.n_clicks)

    print(format_table(settings.mode, summaries))
    summary = {**run, 'environment': environment(), 'compilation': counter.read(),
               'session_s': time.perf_counter() - t_start, 'datasets': summaries}
    (out / 'summary.json').write_text(json.dumps(summary, indent=1))
    plot_curves(out / 'iou_vs_clicks.png', settings.mode, summaries)
    print(f'results in {out}/ (summary.json, iou_vs_clicks.png, <dataset>.jsonl)')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='fbrs-jax', description=__doc__)
    p.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    sub = p.add_subparsers(dest='command', required=True)
    c = sub.add_parser('convert', help='convert an official .pth checkpoint to a converted directory')
    c.add_argument('src', help='official f-BRS .pth file')
    c.add_argument('dst', help='output directory (created)')
    c.set_defaults(func=_cmd_convert)

    from .inference.factory import MODES
    e = sub.add_parser('evaluate', help='NoC evaluation on datasets in the reference layout')
    e.add_argument('--checkpoint', required=True, help='official .pth or converted directory')
    e.add_argument('--mode', required=True, choices=MODES)
    e.add_argument('--datasets', default='GrabCut,Berkeley', help='comma-separated (GrabCut, Berkeley, DAVIS, '
                   'COCO_MVal, SBD, SBD_Train)')
    e.add_argument('--data-root', required=True, help='folder holding one folder per dataset')
    e.add_argument('--n-clicks', type=int, default=20)
    e.add_argument('--target-iou', type=float, default=0.90)
    e.add_argument('--thresh', type=float, default=0.49,
                   help='probability threshold of the prediction and of the BRS click test')
    e.add_argument('--backend', default='jaxopt', choices=('jaxopt', 'optax', 'scipy'))
    e.add_argument('--clicks-limit', type=int, default=None,
                   help="network clicks limit (-1: all clicks); default: the mode's (5 input BRS, 8 f-BRS, all NoBRS)")
    e.add_argument('--no-flip', action='store_true')
    e.add_argument('--no-zoom-in', action='store_true')
    e.add_argument('--max-samples', type=int, default=None, help='only the first N samples of each dataset')
    e.add_argument('--out', default=None, help='results folder (resumes a run there)')
    e.add_argument('--quiet', action='store_true', help='no progress bar')
    e.set_defaults(func=_cmd_evaluate)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print('fbrs-jax: interrupted', file=sys.stderr)
        return 130
    except Exception as e:  # every failure is one line unless --debug
        if args.debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f'fbrs-jax: error: {msg}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
