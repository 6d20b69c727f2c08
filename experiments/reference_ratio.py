"""Per-click time of fbrs_jax and of the official PyTorch code, in one run on this machine.

    python experiments/reference_ratio.py --checkpoint ../shared/reference/weights/resnet34_dh128_synth.pth \
        --ref-home /work/fbrs-ref --out experiments/results/reference_ratio_r34_cpu

Both run the same synthetic scene (``fbrs_jax.eval.benchmark.scene``, 400x600 by default),
the evaluation settings (flip, ZoomIn 400, threshold 0.49) and closed-loop clicks that never
stop early (``--clicks``, 10 as in ``../shared/reference/timing_anchor.md``). The reference
runs ``../shared/reference/live/closed_loop.py`` (set it up with ``live/setup.sh``; its
``--threads``), ours the warm ``benchmark`` passes. Reported per mode: median seconds per
click over all clicks, over clicks 2-8 (f-BRS recomputes the backbone: the clicks limit is
8) and over clicks 9+ (f-BRS reuses the cached head input: the solve alone), and the
ratio ours / reference. NoBRS is the backbone-plus-head cost of a click, so f-BRS-B minus
NoBRS is the refinement's share.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

import fbrs_jax
from fbrs_jax.eval.benchmark import benchmark_mode, scene
from fbrs_jax.eval.runinfo import environment

LIVE = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'reference' / 'live'


def _split(per_sample_seconds) -> dict:
    flat = lambda sel: [t for s in per_sample_seconds for t in sel(s)]
    med = lambda xs: float(np.median(xs)) if xs else None
    return {'all': med(flat(lambda s: s)), 'clicks_2_8': med(flat(lambda s: s[1:8])),
            'clicks_9_on': med(flat(lambda s: s[8:])), 'first': med(flat(lambda s: s[:1]))}


def reference_times(ref_home: pathlib.Path, weights: str, images: pathlib.Path, mode: str, clicks: int,
                    threads: int, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        proc = subprocess.run([str(ref_home / 'venv' / 'bin' / 'python'), str(LIVE / 'closed_loop.py'), weights,
                               str(images), mode, '--threads', str(threads), '--n-clicks', str(clicks),
                               '--target-iou', '2.0', '--out', str(images.with_suffix(f'.{mode}.json'))],
                              capture_output=True, text=True, env={'REF_HOME': str(ref_home), 'PATH': '/usr/bin:/bin'})
        if proc.returncode:
            raise RuntimeError(proc.stderr[-2000:])
        runs.append(json.loads(images.with_suffix(f'.{mode}.json').read_text()))
    seconds = [s['seconds'] for r in runs for s in r['samples']]
    return {'torch': runs[0]['torch'], 'threads': threads, 'repeats': repeats, 'median_s': _split(seconds),
            'ious': [round(v, 4) for v in runs[0]['samples'][0]['ious']]}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--ref-home', required=True, help='REF_HOME of live/setup.sh')
    p.add_argument('--modes', default='NoBRS,f-BRS-B')
    p.add_argument('--size', type=int, nargs=2, default=(400, 600), metavar=('H', 'W'))
    p.add_argument('--clicks', type=int, default=10)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', required=True, help='path prefix of the JSON and markdown results')
    args = p.parse_args()

    model = fbrs_jax.load_model(args.checkpoint)
    sample = scene(*args.size)
    result = {'benchmark': 'reference_ratio', 'arch': model.arch.name, 'scene': sample.name,
              'clicks': args.clicks, 'environment': environment(), 'modes': {}}
    with tempfile.TemporaryDirectory() as tmp:
        images = pathlib.Path(tmp) / 'scene.npz'
        np.savez_compressed(images, **{f'{sample.name}__image': sample.image, f'{sample.name}__gt_mask': sample.gt})
        for mode in args.modes.split(','):
            ours = benchmark_mode(model, mode, sample, args.clicks, args.repeats)
            per_pass = [ours['wall_s_per_click'][i:i + args.clicks]
                        for i in range(0, len(ours['wall_s_per_click']), args.clicks)]
            ref = reference_times(pathlib.Path(args.ref_home), args.checkpoint, images, mode, args.clicks,
                                  args.threads, args.repeats)
            mine = _split(per_pass)
            result['modes'][mode] = {
                'ours': {'median_s': mine, 'device_median_s': ours['device_s']['median'], 'evals': ours['evals'],
                         'ious': ours['ious'], 'compile_s': ours['compile_s'], 'compilations': ours['compilations']},
                'reference': ref,
                'ratio': {k: (mine[k] / ref['median_s'][k] if mine[k] and ref['median_s'][k] else None) for k in mine}}
            print(mode, json.dumps(result['modes'][mode]['ratio']), file=sys.stderr, flush=True)
    rows = ['| mode | part | ours s/click | reference s/click | ours / reference |', '|---|---|---|---|---|']
    for mode, r in result['modes'].items():
        for part in ('all', 'first', 'clicks_2_8', 'clicks_9_on'):
            o, f, q = r['ours']['median_s'][part], r['reference']['median_s'][part], r['ratio'][part]
            if o is not None and f is not None:
                rows.append(f'| {mode} | {part} | {o:.3f} | {f:.3f} | {q:.2f} |')
    env = result['environment']
    table = (
        f"{model.arch.name}, {args.size[0]}x{args.size[1]} scene, {args.clicks} closed-loop clicks, "
        f"{args.repeats} repeats, on {env['device']} ({env['processor'] or env['machine']}); reference: torch "
        f"{next(iter(result['modes'].values()))['reference']['torch']}, {args.threads} threads\n\n" + '\n'.join(rows)
    )
    print(table)
    out = pathlib.Path(args.out)
    out.with_suffix('.json').write_text(json.dumps(result, indent=1))
    out.with_suffix('.md').write_text(table + '\n')


if __name__ == '__main__':
    main()
