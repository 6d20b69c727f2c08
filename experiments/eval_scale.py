"""What an evaluation costs the device and the host, counted device-independently.

    python experiments/eval_scale.py --checkpoint ../shared/reference/weights/resnet34_dh128_synth.pth \\
        --datasets GrabCut,Berkeley --modes NoBRS,f-BRS-B --batches 1,8 --canvases 32,dataset \\
        --work runs/eval_scale --out experiments/results/eval_scale_r34_cpu

Each (dataset, mode, batch, canvas policy) is one ``run_evaluation`` (the code of ``fbrs-jax
evaluate``) in its own folder under ``--work`` (resumable; no persistent compilation cache, so
every run compiles its own programs). Reported per run: NoC@90, lane-clicks, the programs
compiled and their seconds, the dense FLOPs executed against those of every click at its
exact size (``fbrs_jax/eval/flops.py``), the objective evaluations per click and, for batched
runs, the mean lanes per program and the host's CPU seconds per lane-click over the rounds that
compiled nothing (in brackets: the CPU its waits for results took, not counted as work). With
``--same-as DIR`` each run's records are compared, sample by sample, with the committed records
``DIR/<mode>/<dataset>.jsonl`` of an earlier run (same checkpoint and protocol): how many of the
samples both hold make the same clicks with the same IoUs.

The throughput model then predicts the wall time of an evaluation on one H100 from these
counts: programs x the measured compile seconds per program (a CPU figure; GPU compiles are
of the same order), plus executed FLOPs at the FP32 and TF32 dense peaks (a bound) and at a
stated utilisation of them, plus lane-clicks x host seconds per lane-click (a sequential run
waits for the host at every click; a batched one overlaps host and device, so only the longer
of the two counts), for a run of the measured
size scaled to the whole dataset (``--dataset-size``: instances) and an SBD-size run (6,671
instances, 7.28 clicks each - the official r34 f-BRS-B's NoC@90 on SBD - of ~500x375 images,
with this run's FLOPs per click and pixel and its ratio).

Writes <out>.json and <out>.md after every run, keeping the rows of earlier invocations with
the same checkpoint and clicks (a row is replaced by a new run of the same dataset, mode,
batch, canvas policy and sample count), so the grid can be measured a part at a time.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional

import numpy as np

import fbrs_jax
from fbrs_jax.data.readers import open_dataset
from fbrs_jax.eval.evaluate import EvalSettings, ResultsFile
from fbrs_jax.eval.runinfo import environment
from fbrs_jax.eval.runner import run_evaluation

HERE = pathlib.Path(__file__).resolve().parent
H100 = {'fp32_flops': 67e12, 'tf32_flops': 495e12}   # dense peaks of an H100 SXM
UTILISATION = 0.4            # assumed share of the peak a convolution network reaches
ROW_KEY = ('dataset', 'mode', 'batch', 'canvas', 'widen', 'max_samples')   # a new run replaces its row
SBD = {'instances': 6671, 'clicks_per_instance': 7.28, 'hw': (375, 500)}


def same_records(folder: pathlib.Path, earlier: pathlib.Path, dataset: str) -> Optional[dict]:
    """{'samples', 'identical'}: the samples of ``earlier`` (an ``evaluate`` folder's JSONL) that
    this run also holds, and how many of them made the same clicks with the same IoUs."""
    if not (earlier / f'{dataset}.jsonl').exists():
        return None
    ours = {r['index']: r for r in ResultsFile(folder / f'{dataset}.jsonl', repair=False).records}
    theirs = [r for r in ResultsFile(earlier / f'{dataset}.jsonl', repair=False).records if r['index'] in ours]
    same = sum(ours[r['index']]['clicks'] == r['clicks'] and ours[r['index']]['ious'] == r['ious'] for r in theirs)
    return {'samples': len(theirs), 'identical': same}


def one_run(model, checkpoint, dataset, reader, mode, batch, canvas, args) -> dict:
    step = None if canvas == 'dataset' else int(canvas)
    settings = EvalSettings(mode=mode, n_clicks=args.n_clicks, max_samples=args.max_samples, canvas_step=step,
                            widen=args.widen)
    widen = f'_w{args.widen:g}' if args.widen else ''
    folder = args.work / f'{dataset}_{mode}_b{batch}_c{canvas}{widen}_n{args.max_samples or "all"}'
    summary = run_evaluation(model, checkpoint, settings, {dataset: reader}, folder, batch=batch, quiet=True)
    d = summary['datasets'][dataset]
    comp = summary['compilation']
    return {'dataset': dataset, 'mode': mode, 'batch': batch, 'canvas': canvas, 'widen': args.widen,
            'max_samples': args.max_samples,
            'samples': d['samples'],
            'lane_clicks': d['clicks'], 'NoC@90': d['NoC@90'], 'programs': comp['compilations'],
            'compile_s': comp['compile_s'], 'flops_executed': d['flops_executed'], 'flops_exact': d['flops_exact'],
            'flops_ratio': d['flops_ratio'], 'evals_per_click': d['evals_per_click'],
            'host_s_per_lane_click': d.get('host_s_per_lane_click'),
            'host_wait_s_per_lane_click': d.get('host_wait_s_per_lane_click'),
            'lanes_per_program': d.get('lanes_per_program'), 'elapsed_s': d['elapsed_s'],
            'warm_s_per_click': d['warm_s_per_click'],
            'same_as_earlier': same_records(folder, args.same_as / mode, dataset) if args.same_as else None}


def throughput_model(row: dict) -> dict:
    """Predicted H100 seconds of this run and of an SBD-size run of the same mode and policy."""
    compile_s = row['compile_s']
    host = row['host_s_per_lane_click'] or 0.0
    out = {}
    sbd_clicks = SBD['instances'] * SBD['clicks_per_instance']
    whole = row['dataset_size'] / row['samples']
    scale = sbd_clicks / row['lane_clicks'] * (SBD['hw'][0] * SBD['hw'][1]) / (row['mean_image_px'])
    for name, flops, clicks in (('dataset', row['flops_executed'] * whole, row['lane_clicks'] * whole),
                                ('SBD-size', row['flops_executed'] * scale, sbd_clicks)):
        for precision in ('fp32', 'tf32'):
            peak = flops / H100[f'{precision}_flops']
            device = peak / UTILISATION
            out[f'{name} {precision}'] = {'compile_s': compile_s, 'device_peak_s': peak, 'device_s': device,
                                          'host_s': clicks * host,
                                          'total_s': compile_s + (device + clicks * host if row['batch'] == 1
                                                                  else max(device, clicks * host))}
    return out


def policy(row: dict) -> str:
    return str(row['canvas']) + (f" widen {row['widen']:g}" if row.get('widen') else '')


def markdown(result: dict) -> str:
    rows = ['| dataset | mode | batch | canvas | samples | lane-clicks | NoC@90 | programs | compile s | '
            'executed / exact FLOPs | evals / click | lanes / program | host ms / lane-click (waiting) | '
            's / warm click | same as earlier |',
            '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in result['runs']:
        ms = lambda key: '-' if r.get(key) is None else f'{1e3 * r[key]:.2f}'
        host = ms('host_s_per_lane_click') + (f" ({ms('host_wait_s_per_lane_click')})"
                                              if r.get('host_wait_s_per_lane_click') is not None else '')
        lanes = '-' if r.get('lanes_per_program') is None else f"{r['lanes_per_program']:.2f}"
        earlier = r.get('same_as_earlier')
        same = f"{earlier['identical']} / {earlier['samples']}" if earlier else '-'
        rows.append(f"| {r['dataset']} | {r['mode']} | {r['batch']} | {policy(r)} | {r['samples']} | "
                    f"{r['lane_clicks']} | {r['NoC@90']:.2f} | {r['programs']} | {r['compile_s']:.0f} | "
                    f"{r['flops_ratio']:.3f} | {r['evals_per_click']:.1f} | {lanes} | {host} | "
                    f"{r['warm_s_per_click']:.2f} | {same} |")
    rows += ['', f"Throughput model, one H100 (seconds; device at the dense peak and at {UTILISATION:.0%} of it; "
                 "total = compile + the larger of device and host, which overlap):", '',
             '| dataset | mode | batch | canvas | run | compile | device at peak | device | host | total |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in result['runs']:
        for name, m in r['h100_model'].items():
            rows.append(f"| {r['dataset']} | {r['mode']} | {r['batch']} | {policy(r)} | {name} | "
                        f"{m['compile_s']:.0f} | {m['device_peak_s']:.1f} | {m['device_s']:.1f} | {m['host_s']:.1f} | "
                        f"{m['total_s']:.0f} |")
    env = result['environment']
    return (f"{result['checkpoint']}, {result['n_clicks']} clicks, on {env['device']} ({env['machine']}), "
            f"jax {env['packages']['jax']}, float32 'highest'\n\n" + '\n'.join(rows) + '\n')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', default=None, help='default: the shipped model')
    p.add_argument('--data-root', default=str(HERE.parents[1] / 'shared' / 'data'))
    p.add_argument('--datasets', default='GrabCut,Berkeley')
    p.add_argument('--modes', default='NoBRS,f-BRS-B')
    p.add_argument('--batches', default='1,8')
    p.add_argument('--canvases', default='32,dataset', help='canvas policies: a step in pixels or "dataset"')
    p.add_argument('--n-clicks', type=int, default=20)
    p.add_argument('--widen', type=float, default=None, help="batched runs: evaluate's --widen")
    p.add_argument('--max-samples', type=int, default=None)
    p.add_argument('--same-as', type=pathlib.Path, default=None,
                   help='earlier records to compare with: DIR/<mode>/<dataset>.jsonl')
    p.add_argument('--work', required=True, type=pathlib.Path)
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    from fbrs_jax.convert.loading import SHIPPED_CHECKPOINT
    checkpoint = args.checkpoint or SHIPPED_CHECKPOINT
    model = fbrs_jax.load_model(checkpoint)
    out = pathlib.Path(args.out)
    result = {'checkpoint': pathlib.Path(checkpoint).name, 'n_clicks': args.n_clicks,
              'h100': H100, 'utilisation': UTILISATION, 'sbd': SBD, 'environment': environment(), 'runs': []}
    if out.with_suffix('.json').exists():
        earlier = json.loads(out.with_suffix('.json').read_text())
        if (earlier['checkpoint'], earlier['n_clicks']) == (result['checkpoint'], result['n_clicks']):
            result['runs'] = earlier['runs']
            for row in result['runs']:     # rows of an earlier version of this script
                row.setdefault('dataset_size', len(open_dataset(row['dataset'], args.data_root)))
                row['h100_model'] = throughput_model(row)
    for dataset in args.datasets.split(','):
        reader = open_dataset(dataset, args.data_root)
        n = len(reader) if args.max_samples is None else min(len(reader), args.max_samples)
        mean_px = float(np.mean([np.prod(reader.image_hw(i)) for i in range(n)]))
        for mode in args.modes.split(','):
            for batch in (int(b) for b in args.batches.split(',')):
                for canvas in args.canvases.split(','):
                    row = one_run(model, checkpoint, dataset, reader, mode, batch, canvas, args)
                    row['mean_image_px'], row['dataset_size'] = mean_px, len(reader)
                    row['h100_model'] = throughput_model(row)
                    key = lambda r: tuple(r.get(k) for k in ROW_KEY)
                    result['runs'] = [r for r in result['runs'] if key(r) != key(row)] + [row]
                    out.with_suffix('.json').write_text(json.dumps(result, indent=1))
                    out.with_suffix('.md').write_text(markdown(result))
                    print(json.dumps({k: v for k, v in row.items() if k != 'h100_model'}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
