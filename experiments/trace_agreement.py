"""Agreement of the BRS back ends with the reference traces, teacher-forced with the reference
clicks: per click the IoU of our mask (prob > 0.49) with the reference's, max |dprob| and
objective evaluations next to the reference's counts.

    python experiments/trace_agreement.py --backends scipy,jaxopt --out experiments/results/trace_agreement_cpu
writes <out>.json and <out>.md (one row per trace and back end) after every row; a rerun with the
same --out keeps the rows already there and runs the rest. Each row drops the compiled programs
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
    args = p.parse_args(argv)
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
            for backend in args.backends.split(','):
                if (model.arch.name, mode, image_name, backend) in done:
                    continue
                jax.clear_caches()
                steps = replay_clicks(fbrs_jax.make_predictor(model, mode, solver=backend),
                                      images[f'{image_name}__image'], clicks)
                ref = trace['probs'].astype(np.float32)
                row = {'model': model.arch.name, 'mode': mode, 'image': image_name, 'backend': backend,
                       'mask_iou': [round(iou((r > 0.49).astype(np.int32), s['probs'] > 0.49), 4)
                                    if (r > 0.49).any() or (s['probs'] > 0.49).any() else 1.0
                                    for r, s in zip(ref, steps)],
                       'max_abs_dprob': [float(np.abs(s['probs'] - r).max()) for r, s in zip(ref, steps)],
                       'evals': [s['evals'] for s in steps],
                       'reference_evals': trace['n_fun_calls'].tolist()}
                rows.append(row)
                print(json.dumps({k: row[k] for k in ('model', 'mode', 'image', 'backend', 'evals', 'reference_evals')}),
                      file=sys.stderr)
                out.with_suffix('.json').write_text(json.dumps({'environment': environment(), 'rows': rows}, indent=1))
                out.with_suffix('.md').write_text(markdown(rows))
    return 0


def markdown(rows) -> str:
    lines = ['| model | mode | image | back end | mask IoU per click | evaluations (reference) |', '|---|---|---|---|---|---|']
    for r in rows:
        ious = ' '.join(f'{v:.3f}' for v in r['mask_iou'])
        evals = ' '.join(f'{a}({b})' if a != b else str(a) for a, b in zip(r['evals'], r['reference_evals']))
        lines.append(f"| {r['model']} | {r['mode']} | {r['image']} | {r['backend']} | {ious} | {evals} |")
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    sys.exit(main())
