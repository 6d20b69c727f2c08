"""``fbrs-jax`` command line. Errors are one line on stderr: exit 2 for usage, 1 for data problems;
``--debug`` shows the traceback instead."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Optional


class UsageError(ValueError):
    """A bad option value (exit code 2, like argparse's own errors)."""


def _cmd_convert(args) -> int:
    from .convert.loading import convert
    t0 = time.perf_counter()
    model = convert(args.src, args.dst)
    print(f'{args.src} -> {args.dst}: {model.arch.name}, {model.num_values:,} values '
          f'({model.num_params:,} trainable), sha256 {model.source["sha256"][:12]}, '
          f'{time.perf_counter() - t0:.1f} s')
    return 0


def _modes(text: str) -> list[str]:
    from .inference.factory import MODES
    modes = [m.strip() for m in text.split(',') if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise UsageError(f'unknown mode {unknown[0] if unknown else text!r}; choose from {", ".join(MODES)}')
    return modes


def _datasets(text: str) -> list[str]:
    from .data.readers import READERS
    names = [d.strip() for d in text.split(',') if d.strip()]
    unknown = [d for d in names if d not in READERS]
    if unknown or not names:
        raise UsageError(f'unknown dataset {unknown[0] if unknown else text!r}; choose from {", ".join(READERS)}')
    return names


def _check_batch(batch: int, backend: str) -> None:
    if batch < 1:
        raise UsageError(f'--batch must be at least 1, got {batch}')
    from .brs.solvers import get_backend
    if batch > 1 and not get_backend(backend).on_device:
        raise UsageError(f'--batch > 1 needs an on-device back end; {backend} runs on the host')


# evaluate's protocol flags -> EvalSettings fields: given flags override the settings' defaults (their one home)
EVAL_FLAGS = {'n_clicks': 'n_clicks', 'target_iou': 'target_iou', 'thresh': 'pred_thr', 'backend': 'backend',
              'clicks_limit': 'clicks_limit', 'zoom_target': 'zoom_target', 'canvas': 'canvas_step',
              'max_samples': 'max_samples', 'widen': 'widen'}


def _eval_overrides(args) -> dict:
    out = {field: getattr(args, flag) for flag, field in EVAL_FLAGS.items() if hasattr(args, flag)}
    if args.no_flip:
        out['with_flip'] = False
    if args.no_zoom_in:
        out['zoom_in'] = False
    return out


def _checkpoint(given, configured=None) -> str:
    """``--checkpoint``, else the config's, else the shipped model; it must exist."""
    import os
    from .convert.loading import SHIPPED_CHECKPOINT
    checkpoint = given or configured or os.path.normpath(SHIPPED_CHECKPOINT)
    if not os.path.exists(checkpoint):
        raise ValueError(f'checkpoint not found: {checkpoint}' + ('' if given or configured else
                         ' (the shipped model is not in this checkout; pass --checkpoint)'))
    return checkpoint


def _cmd_evaluate(args) -> int:
    import json
    import pathlib

    from .convert.loading import load_model
    from .data.readers import open_dataset
    from .eval.evaluate import EvalSettings, format_table, plot_curves, write_atomic
    from .eval.runinfo import enable_compilation_cache
    from .eval.runner import run_evaluation

    overrides = _eval_overrides(args)
    limit = overrides.get('clicks_limit')
    if limit is not None and limit < 1 and limit != -1:
        raise UsageError(f'--clicks-limit must be positive or -1 (all clicks), got {limit}')
    modes = _modes(args.mode)
    settings = {mode: EvalSettings(mode=mode, **overrides) for mode in modes}
    _check_batch(args.batch, settings[modes[0]].backend)
    datasets = _datasets(args.datasets)
    readers = {d: open_dataset(d, args.data_root) for d in datasets}     # fail early on a bad folder
    checkpoint = _checkpoint(args.checkpoint)
    if args.distributed:
        import jax
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    enable_compilation_cache()
    model = load_model(checkpoint, precision=args.precision)
    out = pathlib.Path(args.out or f'runs/evaluate/{model.arch.name}_{"_".join(modes)}')
    results = {}
    for mode in modes:
        summary = run_evaluation(model, str(checkpoint), settings[mode], readers, out / mode if len(modes) > 1 else out,
                                 batch=args.batch, distributed=args.distributed, quiet=args.quiet)
        results[mode] = summary
    if len(modes) > 1 and all(results.values()):   # process 0 (or the only one) holds the summaries
        print(format_table({m: r['datasets'] for m, r in results.items()}))
        write_atomic(out / 'summary.json', json.dumps(results, indent=1))
        plot_curves(out / 'iou_vs_clicks.png', {m: r['datasets'] for m, r in results.items()})
        print(f'comparison in {out}/ (summary.json, iou_vs_clicks.png; per mode in {out}/<mode>/)')
    return 0


def _cmd_ablate(args) -> int:
    import pathlib

    from .convert.loading import load_model
    from .data.readers import open_dataset
    from .eval.ablation import load_ablation_config, markdown, run_ablation
    from .eval.runinfo import enable_compilation_cache

    cfg = load_ablation_config(args.config)
    datasets = _datasets(args.datasets) if args.datasets else list(cfg.datasets)
    data_root = args.data_root or cfg.data_root
    readers = {d: open_dataset(d, data_root) for d in datasets}
    if args.max_samples is not None:
        cfg.max_samples = args.max_samples
    checkpoint = _checkpoint(args.checkpoint, cfg.checkpoint)
    enable_compilation_cache()
    model = load_model(checkpoint, precision=args.precision)
    default = f'runs/ablation/{pathlib.Path(args.config).stem}_{model.arch.name}' + (
        f'_n{cfg.max_samples}' if args.max_samples is not None else '')
    out = pathlib.Path(args.out or default)
    rows = run_ablation(cfg, model, checkpoint, readers, out, quiet=args.quiet)
    print(markdown(rows))
    print(f'results in {out}/ (table.md, cells.csv, cells.json, pareto.png; per cell in {out}/cells/)')
    return 0


def _cmd_train(args) -> int:
    import dataclasses

    from .eval.runinfo import enable_compilation_cache
    from .train.config import load_config, override
    from .train.trainer import train

    cfg = override(load_config(args.config), args.set or [])
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    enable_compilation_cache()
    train(cfg, args.workdir, stop_step=args.stop_step)
    return 0


def _canvas(text: str) -> Optional[int]:
    if text == 'dataset':
        return None
    try:
        step = int(text)
    except ValueError:
        step = 0
    if step < 1:
        raise argparse.ArgumentTypeError(f'expected a positive number of pixels or "dataset", got {text!r}')
    return step


def _widen(text: str) -> float:
    try:
        factor = float(text)
    except ValueError:
        factor = 0.0
    if not factor >= 1.0 or factor == float('inf'):
        raise argparse.ArgumentTypeError(f'expected a factor of at least 1, got {text!r}')
    return factor


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition('x')
    return int(h), int(w or h)


def _cmd_benchmark(args) -> int:
    import json
    import pathlib

    import numpy as np

    from .convert.loading import load_model
    from .eval.benchmark import markdown_table, run_benchmark, scene
    from .eval.runinfo import enable_compilation_cache

    _check_batch(args.batch, args.backend)
    modes = _modes(args.modes)
    if args.save_scene:
        s = scene(*args.size)
        np.savez_compressed(args.save_scene, **{f'{s.name}__image': s.image, f'{s.name}__gt_mask': s.gt})
    enable_compilation_cache()
    model = load_model(args.checkpoint, precision=args.precision)
    result = run_benchmark(model, str(args.checkpoint), modes, args.size, args.clicks, args.repeats, args.batch,
                           args.precision, with_flip=not args.no_flip,
                           zoom_target=None if args.no_zoom_in else args.zoom_target, backend=args.backend)
    table = markdown_table(result)
    print(table)
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix('.json').write_text(json.dumps(result, indent=1))
        out.with_suffix('.md').write_text(table + '\n')
        print(f'written {out.with_suffix(".json")} and {out.with_suffix(".md")}')
    return 0


def _cmd_demo(args) -> int:
    try:
        from .demo.server import create_app, serve
    except ImportError as e:
        raise UsageError(str(e)) from None
    from .convert.loading import load_model
    from .eval.runinfo import enable_compilation_cache
    from .inference.factory import MODES
    if args.mode not in MODES:
        raise UsageError(f'unknown mode {args.mode!r}; choose from {", ".join(MODES)}')
    if not 1 <= args.port <= 65535:
        raise UsageError(f'--port must be 1 to 65535, got {args.port}')
    if args.max_side < 32:
        raise UsageError(f'--max-side must be at least 32, got {args.max_side}')
    enable_compilation_cache()
    model = load_model(_checkpoint(args.checkpoint), precision=args.precision)
    app = create_app(model, mode=args.mode, images_dir=args.images, max_side=args.max_side)
    serve(app, args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='fbrs-jax', description=__doc__)
    p.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    common = argparse.ArgumentParser(add_help=False)     # --debug also after the command
    common.add_argument('--debug', action='store_true', default=argparse.SUPPRESS, help='show tracebacks of errors')
    from .models.model import PRECISIONS
    precision = argparse.ArgumentParser(add_help=False)
    precision.add_argument('--precision', default='highest', choices=PRECISIONS,
                           help="convolution precision: 'highest' float32 (reference parity), 'default' the "
                                "device's fast mode (TF32 on NVIDIA Ampere and later, bfloat16 passes on TPU), "
                                "'high' in between, 'bfloat16' bfloat16 operands with float32 accumulation (mixed "
                                "precision); recorded in the results")
    sub = p.add_subparsers(dest='command', required=True)
    c = sub.add_parser('convert', parents=[common],
                       help='convert an official .pth checkpoint to a converted directory')
    c.add_argument('src', help='official f-BRS .pth file')
    c.add_argument('dst', help='output directory (created)')
    c.set_defaults(func=_cmd_convert)

    from .brs.solvers import DEFAULT_BACKEND
    from .brs.spec import SOLVERS
    from .eval.evaluate import EvalSettings
    from .inference.factory import MODES

    e = sub.add_parser(
        'evaluate', parents=[common, precision], help='NoC evaluation on datasets in the reference layout'
    )
    e.add_argument('--checkpoint', default=None,
                   help='official .pth or converted directory (default: the shipped checkpoints/ model)')
    e.add_argument('--mode', default='NoBRS,f-BRS-B', help=f'comma-separated modes ({", ".join(MODES)})')
    e.add_argument('--datasets', default='synthetic_shapes', help='comma-separated (GrabCut, Berkeley, DAVIS, '
                   'COCO_MVal, SBD, SBD_Train)')
    e.add_argument('--data-root', default=None, help='folder holding one folder per dataset '
                   '(synthetic_shapes needs none)')
    base = EvalSettings(mode='')          # the defaults, shown in the help; a given flag overrides its field
    e.add_argument('--n-clicks', type=int, default=argparse.SUPPRESS, help=f'default {base.n_clicks}')
    e.add_argument('--target-iou', type=float, default=argparse.SUPPRESS, help=f'default {base.target_iou}')
    e.add_argument('--thresh', type=float, default=argparse.SUPPRESS,
                   help=f'probability threshold of the prediction and of the BRS click test (default {base.pred_thr})')
    e.add_argument('--backend', default=argparse.SUPPRESS, choices=SOLVERS, help=f'default {base.backend}')
    e.add_argument('--clicks-limit', type=int, default=argparse.SUPPRESS,
                   help="network clicks limit (-1: all clicks); default: the mode's (5 input BRS, 8 f-BRS, all NoBRS)")
    e.add_argument('--no-flip', action='store_true')
    e.add_argument('--zoom-target', type=int, default=argparse.SUPPRESS,
                   help="ZoomIn target size (default: the dataset's; 600 DAVIS, 128 synthetic_shapes, 400 others)")
    e.add_argument('--no-zoom-in', action='store_true')
    e.add_argument('--canvas', type=_canvas, default=argparse.SUPPRESS, metavar='STEP|dataset',
                   help=f'the network runs on each image or crop size rounded up to STEP pixels (default '
                        f'{base.canvas_step}: one program per size bucket); "dataset": on one canvas per dataset '
                        f'and the square ZoomIn canvas (fewest programs, most padding)')
    e.add_argument('--max-samples', type=int, default=argparse.SUPPRESS,
                   help='only the first N samples of each dataset')
    e.add_argument('--widen', type=_widen, default=argparse.SUPPRESS, metavar='F',
                   help='with several lanes per device: a program its own clicks do not fill takes clicks of '
                        'smaller canvases too, up to F times their pixels (fuller programs, more padding; the '
                        'same numbers up to rounding); default: every click on its own canvas')
    e.add_argument('--out', default=None, help='results folder (resumes a run there)')
    e.add_argument('--batch', type=int, default=1,
                   help='samples evaluated at once, split over the local devices (a multiple of their number)')
    e.add_argument('--distributed', action='store_true',
                   help='join jax.distributed (multi-host); each process evaluates its share of the batches')
    e.add_argument('--coordinator', default=None,
                   help='with --distributed: host:port of process 0 (default: detected from the cluster)')
    e.add_argument('--num-processes', type=int, default=None, help='with --distributed (default: detected)')
    e.add_argument('--process-id', type=int, default=None, help='with --distributed (default: detected)')
    e.add_argument('--quiet', action='store_true', help='no progress bar')
    e.set_defaults(func=_cmd_evaluate)

    a = sub.add_parser('ablate', parents=[common, precision],
                       help='evaluate a grid of refinement specs (resumable) -> table, CSV, Pareto plot')
    a.add_argument('--config', required=True, help='Python file with get_config() (see experiments/ablation_*.py)')
    a.add_argument('--checkpoint', default=None, help="default: the config's, else the shipped model")
    a.add_argument('--datasets', default=None, help="comma-separated (default: the config's)")
    a.add_argument('--data-root', default=None, help='folder holding one folder per dataset')
    a.add_argument('--max-samples', type=int, default=None, help="first N samples per dataset (default: the config's)")
    a.add_argument('--out', default=None, help='results folder (a rerun resumes there)')
    a.add_argument('--quiet', action='store_true', help='no progress bars')
    a.set_defaults(func=_cmd_ablate)

    t = sub.add_parser('train', parents=[common], help='train a model from a config file (resumes in its workdir)')
    t.add_argument('--config', required=True, help='Python file with get_config() (see experiments/train_*.py)')
    t.add_argument('--workdir', required=True, help='checkpoints, metrics.jsonl and the exported model')
    t.add_argument('--set', action='append', metavar='KEY=VALUE', help='override a config field (repeatable)')
    t.add_argument('--epochs', type=int, default=None, help='override the number of epochs')
    t.add_argument('--stop-step', type=int, default=None, help='stop (checkpointed) after this global step')
    t.set_defaults(func=_cmd_train)

    b = sub.add_parser('benchmark', parents=[common, precision],
                       help='per-click latency of modes on a fixed synthetic scene (warm)')
    b.add_argument('--checkpoint', required=True, help='official .pth or converted directory')
    b.add_argument('--modes', default='NoBRS,f-BRS-B', help='comma-separated modes')
    b.add_argument('--size', type=_size, default=(400, 600), help='scene size HxW (or one number: square)')
    b.add_argument('--clicks', type=int, default=20)
    b.add_argument('--repeats', type=int, default=3, help='timed passes after the compile pass')
    b.add_argument('--batch', type=int, default=1, help='copies of the scene evaluated at once (batched program)')
    b.add_argument('--backend', default=DEFAULT_BACKEND, choices=SOLVERS)
    b.add_argument('--zoom-target', type=int, default=400)
    b.add_argument('--no-zoom-in', action='store_true')
    b.add_argument('--no-flip', action='store_true')
    b.add_argument('--save-scene', default=None, help='also write the scene as NPZ (<name>__image, <name>__gt_mask)')
    b.add_argument('--out', default=None, help='path prefix of the JSON and markdown results')
    b.set_defaults(func=_cmd_benchmark)

    d = sub.add_parser('demo', parents=[common, precision], help="interactive demo in the browser (extra 'demo')")
    d.add_argument(
        '--checkpoint', default=None, help='official .pth or converted directory (default: the shipped model)'
    )
    d.add_argument('--mode', default='f-BRS-B', help='the initial mode (the page switches)')
    d.add_argument('--host', default='127.0.0.1', help='address to listen on (0.0.0.0: every interface)')
    d.add_argument('--port', type=int, default=8765)
    d.add_argument(
        '--images', default=None, help='a folder of images added to the sample gallery (e.g. GrabCut/data_GT)'
    )
    d.add_argument('--max-side', type=int, default=1024, help='larger images are downscaled to this longest side')
    d.set_defaults(func=_cmd_demo)
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
        return 2 if isinstance(e, UsageError) else 1


if __name__ == '__main__':
    sys.exit(main())
