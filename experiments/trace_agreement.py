"""Agreement of the BRS back ends with the reference traces, teacher-forced with the reference
clicks: per click the IoU of our mask (prob > 0.49) with the reference's, max |dprob| and
objective evaluations next to the reference's counts.

    python experiments/trace_agreement.py --backends scipy,jaxopt,lbfgsb --out experiments/results/trace_agreement_cpu
writes <out>.json and <out>.md (one row per trace and back end) after every row; a rerun with the
same --out keeps the rows already there and runs the rest. With ``--against scipy`` each other
back end's row also compares its masks and evaluation counts with that back end's on the same
clicks (its masks are kept, bit-packed, under ``--masks``; a trace whose masks are missing
runs that back end again). Each row drops the compiled programs
of the previous one (XLA:CPU keeps memory mappings per loaded program, and the whole run in one
process otherwise exhausts vm.max_map_count); the persistent compilation cache reloads them.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import jax

import fbrs_jax
from fbrs_jax.eval.evaluate import replay_clicks
from fbrs_jax.eval.metrics import iou
from fbrs_jax.eval.runinfo import enable_compilation_cache, environment

REFERENCE = pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'reference'
MODELS = {'r34_trained': 'resnet34_dh128_synth.pth', 'hrnet18_random': 'hrnet18_ocr64.pth'}


def traces(folder: pathlib.Path, arch: str):
    for path in sorted(folder.glob(f'trace_{arch}_*.npz')):
        mode, image = path.stem[len(f'trace_{arch}_'):].split('_', 1)
        if mode != 'NoBRS':
            yield mode, image, path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--reference', default=str(REFERENCE))
    p.add_argument('--backends', default='scipy,jaxopt')
    p.add_argument('--folders', default=','.join(MODELS))
    p.add_argument('--out', required=True)
    p.add_argument('--against', default=None, help='a back end the others are compared with')
    p.add_argument('--masks', default='runs/trace_masks', help='where --against keeps its masks')
    args = p.parse_args(argv)
    backends = args.backends.split(',')
    if args.against is not None:
        backends = [args.against] + [b for b in backends if b != args.against]
    masks_dir = pathlib.Path(args.masks)
    enable_compilation_cache()
    reference = pathlib.Path(args.reference)
    out = pathlib.Path(args.out)
    rows = json.loads(out.with_suffix('.json').read_text())['rows'] if out.with_suffix('.json').exists() else []
    done = {(r['model'], r['mode'], r['image'], r['backend']) for r in rows}
    for folder in args.folders.split(','):
        model = fbrs_jax.load_model(reference / 'weights' / MODELS[folder])
        images = np.load(reference / folder / 'trace_images.npz')
        for mode, image_name, path in traces(reference / folder, model.arch.name):
            trace = np.load(path)
            clicks = [fbrs_jax.Click(int(r), int(c), bool(q)) for r, c, q in trace['clicks']]
            for backend in backends:
                key = (model.arch.name, mode, image_name, backend)
                masks_file = masks_dir / f'{"_".join(key)}.npz'
                if key in done and (backend != args.against or masks_file.exists()):
                    continue
                jax.clear_caches()
                steps = replay_clicks(fbrs_jax.make_predictor(model, mode, solver=backend),
                                      images[f'{image_name}__image'], clicks)
                masks = np.stack([s['probs'] > 0.49 for s in steps])
                evals = [s['evals'] for s in steps]
                if backend == args.against:
                    masks_dir.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(masks_file, bits=np.packbits(masks), shape=masks.shape, evals=evals)
                    if key in done:
                        continue
                ref = trace['probs'].astype(np.float32)
                row = {'model': model.arch.name, 'mode': mode, 'image': image_name, 'backend': backend,
                       'mask_iou': [round(iou((r > 0.49).astype(np.int32), s['probs'] > 0.49), 4)
                                    if (r > 0.49).any() or (s['probs'] > 0.49).any() else 1.0
                                    for r, s in zip(ref, steps)],
                       'max_abs_dprob': [float(np.abs(s['probs'] - r).max()) for r, s in zip(ref, steps)],
                       'evals': [s['evals'] for s in steps],
                       'reference_evals': trace['n_fun_calls'].tolist()}
                if args.against is not None and backend != args.against:
                    theirs = np.load(masks_dir / f'{"_".join(key[:3] + (args.against,))}.npz')
                    other = np.unpackbits(theirs['bits'])[:masks.size].reshape(theirs['shape']).astype(bool)
                    row[f'mask_iou_vs_{args.against}'] = [
                        round(iou(a.astype(np.int32), b), 4) if a.any() or b.any() else 1.0
                        for a, b in zip(other, masks)
                    ]
                    row[f'evals_{args.against}'] = theirs['evals'].tolist()
                rows.append(row)
                print(
                    json.dumps({k: row[k] for k in ('model', 'mode', 'image', 'backend', 'evals', 'reference_evals')}),
                    file=sys.stderr,
                )
                out.with_suffix('.json').write_text(json.dumps({'environment': environment(), 'rows': rows}, indent=1))
                out.with_suffix('.md').write_text(markdown(rows))
    return 0


def markdown(rows) -> str:
    """One row per trace and back end; rows compared with another back end (``--against``) add
    the minimum mask IoU against its masks and whether every click's evaluation count is equal."""
    against = sorted({k[len('evals_'):] for r in rows for k in r if k.startswith('evals_')})
    extra = ''.join(f' vs {a}: min mask IoU, evaluations equal |' for a in against)
    lines = ['| model | mode | image | back end | mask IoU per click | evaluations (reference) |' + extra,
             '|---|---|---|---|---|---|' + '---|' * len(against)]
    for r in rows:
        ious = ' '.join(f'{v:.3f}' for v in r['mask_iou'])
        evals = ' '.join(f'{a}({b})' if a != b else str(a) for a, b in zip(r['evals'], r['reference_evals']))
        cells = ''.join(f" {min(r[f'mask_iou_vs_{a}']):.3f}, {'yes' if r[f'evals_{a}'] == r['evals'] else 'no'} |"
                        if f'evals_{a}' in r else ' |' for a in against)
        lines.append(f"| {r['model']} | {r['mode']} | {r['image']} | {r['backend']} | {ious} | {evals} |" + cells)
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    sys.exit(main())
