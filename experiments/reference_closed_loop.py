"""Closed-loop evaluation of fbrs_jax beside the official PyTorch code on a real test set.

    REF_HOME=/work/fbrs-ref ../shared/reference/live/setup.sh GIT_DIR     # once (see live/README.md)
    python experiments/reference_closed_loop.py --checkpoint ../shared/reference/weights/resnet34_dh128_synth.pth \\
        --ref-home /work/fbrs-ref --datasets GrabCut --modes NoBRS --work runs/closed_loop \\
        --out experiments/results/closed_loop_r34_grabcut_cpu

Expected (2-core CPU; 1.6 h for each code, run side by side): all 50 GrabCut samples make the same 20 clicks in
both codes, NoC@80/85/90 20.00 in both. ``--modes f-BRS-B --max-samples 10``: clicks 1-5
identical, NoC equal, mean IoU after 20 clicks 0.48 against 0.53 (``experiments/results/README.md``).

For each dataset the reference's own loader (``isegm.data``, OpenCV decoding) writes every
sample to ``.npz`` chunks; the script checks that ``fbrs_jax``'s reader gives the same image
and mask bytes. Then, for each mode, both codes run the reference evaluation protocol (flip,
ZoomIn 400, threshold 0.49, 20 clicks, stop at IoU 0.9): ours through ``run_evaluation`` into
``WORK/ours/<mode>`` (``<mode>_<backend>`` for a back end other than jaxopt; an ``fbrs-jax
evaluate`` folder), the reference through
``../shared/reference/live/closed_loop.py`` into ``WORK/reference/<dataset>_<mode>.jsonl``,
one chunk of samples at a time. Both resume: finished samples are kept.

Reported per (dataset, mode): NoC@80/85/90 and NoF of each code, the samples whose click
sequences are identical, the first click where the others part, the largest IoU difference
before that, and the seconds per click of each (they run one after the other; compare them
only within one run). NoBRS is deterministic, so its click sequences must agree on every
sample; closed-loop BRS is chaotic even in the reference (``../shared/reference/README.md``),
so there the NoC band is what compares.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

import numpy as np

import fbrs_jax
from fbrs_jax.data.readers import open_dataset
from fbrs_jax.eval.evaluate import EvalSettings, ResultsFile
from fbrs_jax.eval.metrics import mean_iou_curve, summarize
from fbrs_jax.eval.runinfo import enable_compilation_cache, environment
from fbrs_jax.eval.runner import run_evaluation

LIVE = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'reference' / 'live'
REFERENCE_DATASETS = {'GrabCut': 'isegm.data.grabcut:GrabCutDataset',
                      'Berkeley': 'isegm.data.berkeley:BerkeleyDataset'}

# Runs in the reference's venv: its dataset class decodes every sample (cv2.imread, its mask
# rules) into npz chunks of CHUNK samples, keys '<index>__image' / '<index>__gt_mask'.
_DUMP = '''
import sys, importlib, numpy as np
sys.path.insert(0, sys.argv[1]); import refshim
import torchvision.transforms as T
T.Compose = T.ToTensor = T.Normalize = lambda *a, **k: None
module, cls = sys.argv[2].split(':')
ds = getattr(importlib.import_module(module), cls)(sys.argv[3])
chunk, out = int(sys.argv[4]), sys.argv[5]
for start in range(0, len(ds.dataset_samples), chunk):
    arrays = {}
    for i in range(start, min(start + chunk, len(ds.dataset_samples))):
        s = ds.get_sample(i)
        arrays[f'{i:04d}__image'], arrays[f'{i:04d}__gt_mask'] = s['image'], s['instances_mask']
    np.savez(f'{out}/{start:04d}.npz', **arrays)
print(len(ds.dataset_samples))
'''


def _python(ref_home: pathlib.Path) -> str:
    return str(ref_home / 'venv' / 'bin' / 'python')


def _env(ref_home: pathlib.Path) -> dict:
    return {'REF_HOME': str(ref_home), 'PATH': '/usr/bin:/bin'}


def dump_reference_samples(ref_home: pathlib.Path, dataset: str, data_root: str, folder: pathlib.Path,
                           chunk: int) -> list[pathlib.Path]:
    """The reference loader's samples of ``dataset`` as npz chunks in ``folder`` (made once)."""
    chunks = sorted(folder.glob('*.npz'))
    if not chunks:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([_python(ref_home), '-c', _DUMP, str(LIVE), REFERENCE_DATASETS[dataset],
                        str(pathlib.Path(data_root) / dataset), str(chunk), str(folder)],
                       check=True, capture_output=True, text=True, env=_env(ref_home))
        chunks = sorted(folder.glob('*.npz'))
    return chunks


def _indices(chunk: pathlib.Path, n: int) -> list[int]:
    with np.load(chunk) as ref:
        return sorted(i for i in {int(k.split('__')[0]) for k in ref.files} if i < n)


def compare_decoding(reader, chunks: list[pathlib.Path], n: int) -> dict:
    """How many of the first ``n`` samples our reader decodes to the same image and mask bytes
    as the reference's loader."""
    same, differing = 0, []
    for path in chunks:
        with np.load(path) as ref:
            for key in (f'{i:04d}' for i in _indices(path, n)):
                s = reader[int(key)]
                ok = all(a.shape == b.shape and np.array_equal(a, b)
                         for a, b in ((s.image, ref[f'{key}__image']), (s.gt, ref[f'{key}__gt_mask'])))
                same += ok
                if not ok:
                    differing.append(s.name)
    return {'identical': same, 'samples': same + len(differing), 'differing': differing}


def run_reference(ref_home: pathlib.Path, checkpoint: str, chunks: list[pathlib.Path], n: int, mode: str,
                  results: pathlib.Path, args) -> list[dict]:
    """The reference closed loop on the first ``n`` samples, one chunk per process, skipping the
    samples already in ``results`` (JSONL, one sample a line)."""
    done = ResultsFile(results)
    finished = {r['index'] for r in done.records}
    for path in chunks:
        indices = _indices(path, n)
        if set(indices) <= finished:
            continue
        out = results.with_name(results.stem + '.chunk.json')
        proc = subprocess.run([_python(ref_home), str(LIVE / 'closed_loop.py'), checkpoint, str(path), mode,
                               '--threads', str(args.threads), '--n-clicks', str(args.n_clicks),
                               '--target-iou', str(args.target_iou), '--limit', str(len(indices)), '--out', str(out)],
                              capture_output=True, text=True, env=_env(ref_home))
        if proc.returncode:
            raise RuntimeError(f'the reference failed on {path.name}:\n{proc.stderr[-2000:]}')
        run = json.loads(out.read_text())
        for sample in run['samples']:
            if int(sample['name']) not in finished:
                done.append({'index': int(sample['name']), 'ious': sample['ious'],
                             'clicks': [[r, c, int(p)] for r, c, p in sample['clicks']],
                             'seconds': sample['seconds'], 'torch': run['torch'], 'threads': run['threads']})
        out.unlink()
        print(f'  reference {mode}: {len(done.records)} samples', file=sys.stderr, flush=True)
    return sorted((r for r in done.records if r['index'] < n), key=lambda r: r['index'])


def compare_runs(ours: list[dict], ref: list[dict], n_clicks: int, chunk: int = 10) -> dict:
    """NoC of both codes over the samples both finished; click-sequence agreement per sample."""
    by_index = {r['index']: r for r in ref}
    pairs = [(o, by_index[o['index']]) for o in ours if o['index'] in by_index]
    same, parted, max_diff, by_sample = 0, [], 0.0, {}
    for o, r in pairs:
        common = next((k for k, (a, b) in enumerate(zip(o['clicks'], r['clicks'])) if a != b),
                      min(len(o['clicks']), len(r['clicks'])))
        if o['clicks'] == r['clicks']:
            same += 1
            by_sample[str(o['index'])] = None
        else:
            parted.append(common + 1)
            by_sample[str(o['index'])] = common + 1
        # IoU k is the result of clicks 1..k: comparable while those clicks agree.
        diffs = [abs(a - b) for a, b in zip(o['ious'][:common], r['ious'][:common])]
        max_diff = max([max_diff] + diffs)

    def side(records):
        ious = [x['ious'] for x in records]
        summary = summarize(ious, max_clicks=n_clicks)
        return {**{k: v for k, v in summary.items() if k.startswith(('NoC', 'NoF')) or k in ('samples', 'clicks')},
                'mean_iou_curve': mean_iou_curve(ious, n_clicks).tolist(),
                's_per_click': float(np.mean([t for x in records for t in x['seconds']])) if records else None,
                's_per_warm_click': float(np.mean(warm(records))) if records else None}

    def warm(records):
        # ours flag the clicks that compiled or loaded a program; a reference process warms up
        # torch on its first click (one process per chunk of ``chunk`` samples)
        first = lambda x: [1] + [0] * (len(x['seconds']) - 1) if x['index'] % chunk == 0 else [0] * len(x['seconds'])
        return [t for x in records for t, c in zip(x['seconds'], x.get('cold') or first(x)) if not c]

    return {'samples': len(pairs), 'ours': side([o for o, _ in pairs]), 'reference': side([r for _, r in pairs]),
            'identical_click_sequences': same,
            'first_differing_click': {'min': min(parted), 'median': float(np.median(parted)),
                                      'max': max(parted)} if parted else None,
            'max_iou_difference_while_clicks_agree': max_diff, 'first_differing_click_by_sample': by_sample}


def markdown(result: dict) -> str:
    rows = ['| dataset | mode | samples | NoC@80 ours / ref | NoC@85 ours / ref '
            '| NoC@90 ours / ref | NoF@90 ours / ref | mean IoU after 5 / 10 / 20 clicks, ours | reference '
            '| identical click sequences | first other click (min / median) | max IoU difference while clicks agree '
            '| s/click ours / ref | s/warm click ours / ref |',
            '|' + '---|' * 14]
    for dataset, d in result['datasets'].items():
        for mode, c in d['modes'].items():
            o, r, f = c['ours'], c['reference'], c['first_differing_click']
            noc = lambda k: f"{o[k]:.2f} / {r[k]:.2f}"
            miou = lambda s: ' / '.join(f"{s['mean_iou_curve'][k - 1]:.3f}" for k in (5, 10, 20)
                                        if k <= len(s['mean_iou_curve']))
            rows.append(
                f"| {dataset} | {mode} | {c['samples']} | "
                f"{noc('NoC@80')} | {noc('NoC@85')} | {noc('NoC@90')} | {o['NoF@90']} / {r['NoF@90']} | "
                f"{miou(o)} | {miou(r)} | "
                f"{c['identical_click_sequences']}/{c['samples']} | "
                f"{'-' if f is None else '%d / %g' % (f['min'], f['median'])} | "
                f"{c['max_iou_difference_while_clicks_agree']:.1e} | "
                f"{o['s_per_click']:.2f} / {r['s_per_click']:.2f} | "
                f"{o.get('s_per_warm_click', float('nan')):.2f} / {r.get('s_per_warm_click', float('nan')):.2f} |"
            )
    return '\n'.join(rows) + against_table(result)


def against_table(result: dict) -> str:
    """Per sample, the first click where our run parts from the reference and from our other
    back end (``--against``; '-' where all clicks agree), and the mean IoU curves of the three."""
    out = []
    for dataset, d in result['datasets'].items():
        for mode, c in d['modes'].items():
            if 'against' not in c:
                continue
            a = c['against']
            name = a['backend']
            miou = lambda s: ' / '.join(f"{s['mean_iou_curve'][k - 1]:.3f}" for k in (5, 10, 20))
            out += [
                '',
                f"{dataset} {mode}: ours ({result['backend']}) against the reference and against our `{name}` back end",
                '',
                '| sample | first other click: reference | first other click: ' + name + ' |',
                '|---|---|---|',
            ]
            for index, k in c['first_differing_click_by_sample'].items():
                j = a['first_differing_click_by_sample'].get(index)
                out.append(f"| {index} | {'-' if k is None else k} | {'-' if j is None else j} |")
            out += ['', "| run | NoC@80 / 85 / 90 | mean IoU after 5 / 10 / 20 clicks |", '|---|---|---|']
            for label, s in ((result['backend'], c['ours']), (name, a['reference']), ('reference', c['reference'])):
                out.append(f"| {label} | {s['NoC@80']:.2f} / {s['NoC@85']:.2f} / {s['NoC@90']:.2f} | {miou(s)} |")
    return '\n'.join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--ref-home', required=True, type=pathlib.Path, help='REF_HOME of live/setup.sh')
    p.add_argument('--data-root', default=str(LIVE.parents[1] / 'data'))
    p.add_argument('--datasets', default='GrabCut')
    p.add_argument('--modes', default='NoBRS', help="comma-separated; '' compares the decoded samples only")
    p.add_argument('--max-samples', type=int, default=None, help='only the first N samples of each dataset')
    p.add_argument('--backend', default='jaxopt', help="our solver back end ('scipy' replays the reference's L-BFGS-B)")
    p.add_argument('--against', default=None,
                   help='another of our back ends whose finished run in WORK is compared too (e.g. scipy)')
    p.add_argument('--n-clicks', type=int, default=20)
    p.add_argument('--target-iou', type=float, default=0.9)
    p.add_argument('--threads', type=int, default=2, help="the reference's torch threads")
    p.add_argument('--chunk', type=int, default=10, help='samples per reference process')
    p.add_argument('--work', required=True, type=pathlib.Path, help='both codes\' per-sample results (resumable)')
    p.add_argument('--out', required=True, help='path prefix of the JSON and markdown results')
    args = p.parse_args()

    enable_compilation_cache()
    model = fbrs_jax.load_model(args.checkpoint)
    result = {'experiment': 'reference_closed_loop', 'checkpoint': args.checkpoint, 'arch': model.arch.name,
              'backend': args.backend,
              'n_clicks': args.n_clicks, 'target_iou': args.target_iou, 'environment': environment(),
              'datasets': {}}
    for dataset in args.datasets.split(','):
        reader = open_dataset(dataset, args.data_root)
        n = len(reader) if args.max_samples is None else min(len(reader), args.max_samples)
        chunks = dump_reference_samples(args.ref_home, dataset, args.data_root,
                                        args.work / 'reference' / f'{dataset}_samples', args.chunk)
        chunks = [c for c in chunks if int(c.stem) < n]
        entry = result['datasets'][dataset] = {'decoding': compare_decoding(reader, chunks, n), 'modes': {}}
        for mode in filter(None, args.modes.split(',')):
            settings = EvalSettings(mode=mode, n_clicks=args.n_clicks, target_iou=args.target_iou,
                                    backend=args.backend, max_samples=args.max_samples)
            ours_dir = args.work / 'ours' / (mode if args.backend == 'jaxopt' else f'{mode}_{args.backend}')
            run_evaluation(model, args.checkpoint, settings, {dataset: reader}, ours_dir)
            ours = [r for r in ResultsFile(ours_dir / f'{dataset}.jsonl', repair=False).records if r['index'] < n]
            ref = run_reference(args.ref_home, args.checkpoint, chunks, n, mode,
                                args.work / 'reference' / f'{dataset}_{mode}.jsonl', args)
            entry['modes'][mode] = compare_runs(ours, ref, args.n_clicks, args.chunk)
            if args.against:
                other = args.work / 'ours' / (mode if args.against == 'jaxopt' else f'{mode}_{args.against}')
                theirs = [r for r in ResultsFile(other / f'{dataset}.jsonl', repair=False).records if r['index'] < n]
                entry['modes'][mode]['against'] = {
                    'backend': args.against,
                    **compare_runs(ours, theirs, args.n_clicks, args.chunk),
                }
            if ref:
                result['reference'] = {'torch': ref[0]['torch'], 'threads': ref[0]['threads']}
            print(dataset, mode, json.dumps(entry['modes'][mode]), file=sys.stderr, flush=True)
    ref = result.get('reference')
    table = (f"{model.arch.name} ({pathlib.Path(args.checkpoint).name}), closed loop, {args.n_clicks} clicks, "
             f"target IoU {args.target_iou}, our back end {args.backend}, on {result['environment']['device']}"
             + (f"; reference: torch {ref['torch']}, {ref['threads']} threads" if ref else '') + '\n\n'
             + ''.join(f"{name}: the reference loader and ours decode {d['decoding']['identical']} of "
                       f"{d['decoding']['samples']} images and masks to identical bytes\n"
                       for name, d in result['datasets'].items())
             + ('\n' + markdown(result) if any(d['modes'] for d in result['datasets'].values()) else ''))
    print(table)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.json').write_text(json.dumps(result, indent=1))
    out.with_suffix('.md').write_text(table + '\n')


if __name__ == '__main__':
    main()
