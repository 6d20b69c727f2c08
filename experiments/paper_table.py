"""The official release's comparison for a released checkpoint: RGB-BRS and f-BRS-B on GrabCut,
Berkeley, DAVIS, SBD and COCO_MVal, ours beside the official README's NoC@85 / NoC@90.

    python experiments/paper_table.py --checkpoint resnet34_dh128_sbd.pth --data-root DATA \\
        [--datasets GrabCut,Berkeley] [--max-samples N] [--out runs/paper_table/resnet34_dh128_sbd]

or, as an ablation grid (the same cells, without the comparison):

    fbrs-jax ablate --config experiments/paper_table.py --checkpoint resnet34_dh128_sbd.pth --data-root DATA

Each mode runs twice: with the reference's protocol (refinement from click 2) and with the
refinement from click 3 (``optimize_after_n_clicks=2``), the protocol the ResNet rows of the
official table may come from: those 60 values are also in the README of the MXNet branch,
whose predictor starts refining at click 3, and the table dates from the initial commit. The
comparison (``comparison.md`` / ``.json`` in ``--out``) gives both rows beside the official
values and their differences. The official values are those of the README of
saic-vul/fbrs_interactive_segmentation (unchanged since its initial commit), keyed by the
checkpoint's file name (architecture and training set). Runs are resumable cell by cell
(``fbrs-jax ablate``'s folders).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Callable, Optional

from fbrs_jax.brs.spec import preset
from fbrs_jax.eval.ablation import AblationConfig

DATASETS = ('GrabCut', 'Berkeley', 'DAVIS', 'SBD', 'COCO_MVal')
FROM_CLICK_3 = ' from click 3'
# NoC@85, NoC@90 per dataset (DATASETS order), from the official README's table
OFFICIAL = {
    'resnet34_dh128_sbd.pth': {
        'RGB-BRS': [(2.04, 2.50), (2.22, 4.49), (5.34, 7.91), (4.19, 6.83), (4.16, 5.52)],
        'f-BRS-B': [(2.06, 2.48), (2.40, 4.17), (5.34, 7.73), (4.47, 7.28), (4.31, 5.79)]},
    'resnet50_dh128_sbd.pth': {
        'RGB-BRS': [(2.16, 2.56), (2.17, 4.27), (5.27, 7.51), (4.00, 6.59), (4.12, 5.61)],
        'f-BRS-B': [(2.20, 2.64), (2.17, 4.22), (5.44, 7.81), (4.55, 7.45), (4.31, 6.26)]},
    'resnet101_dh256_sbd.pth': {
        'RGB-BRS': [(2.10, 2.46), (2.34, 3.91), (5.19, 7.23), (3.78, 6.28), (3.98, 5.45)],
        'f-BRS-B': [(2.30, 2.68), (2.61, 4.22), (5.32, 7.35), (4.20, 7.10), (4.11, 5.91)]},
    'hrnet18_ocr64_sbd.pth': {
        'RGB-BRS': [(1.68, 1.94), (1.99, 3.81), (5.49, 7.98), (4.19, 6.84), (3.62, 5.04)],
        'f-BRS-B': [(1.86, 2.18), (2.07, 3.96), (5.62, 8.08), (4.70, 7.65), (3.87, 5.57)]},
    'hrnet32_ocr128_sbd.pth': {
        'RGB-BRS': [(1.80, 2.16), (2.00, 3.58), (5.40, 7.59), (3.87, 6.33), (3.61, 5.12)],
        'f-BRS-B': [(1.78, 2.16), (2.13, 3.69), (5.54, 7.62), (4.31, 7.08), (3.82, 5.44)]},
    'resnet50_dh128_lvis.pth': {
        'RGB-BRS': [(1.54, 1.76), (1.56, 2.70), (4.93, 6.22), (4.04, 6.85), (2.41, 3.47)],
        'f-BRS-B': [(1.52, 1.74), (1.56, 2.61), (4.94, 6.36), (4.29, 7.20), (2.34, 3.43)]},
    'hrnet32_ocr128_lvis.pth': {
        'RGB-BRS': [(1.54, 1.60), (1.63, 2.59), (5.06, 6.34), (4.18, 6.96), (2.38, 3.55)],
        'f-BRS-B': [(1.54, 1.69), (1.64, 2.44), (5.17, 6.50), (4.37, 7.26), (2.35, 3.44)]},
}


def cells() -> dict:
    out = {}
    for mode in ('RGB-BRS', 'f-BRS-B'):
        out[mode] = preset(mode)
        out[mode + FROM_CLICK_3] = preset(mode, optimize_after_n_clicks=2)
    return out


def get_config() -> AblationConfig:
    return AblationConfig(cells=cells(), datasets=DATASETS)


def official(checkpoint: str) -> Optional[dict]:
    """{mode: {dataset: (NoC@85, NoC@90)}} of a released checkpoint (by file name), or None."""
    table = OFFICIAL.get(pathlib.Path(checkpoint).name)
    return None if table is None else {m: dict(zip(DATASETS, rows)) for m, rows in table.items()}


def comparison(rows, checkpoint: str) -> tuple[list[dict], str]:
    """Ablation rows -> (rows of ours, the official values and the differences; markdown)."""
    ref = official(checkpoint) or {}
    out = []
    for r in rows:
        mode = r['cell'].replace(FROM_CLICK_3, '')
        theirs = ref.get(mode, {}).get(r['dataset'])
        row = {'mode': mode, 'protocol': 'from click 3' if r['cell'].endswith(FROM_CLICK_3) else 'reference',
               'dataset': r['dataset'], 'samples': r['samples'], 'NoC@85': r['NoC@85'], 'NoC@90': r['NoC@90'],
               'official@85': theirs and theirs[0], 'official@90': theirs and theirs[1]}
        row['diff@85'] = None if theirs is None else r['NoC@85'] - theirs[0]
        row['diff@90'] = None if theirs is None else r['NoC@90'] - theirs[1]
        out.append(row)
    f = lambda v: '-' if v is None else f'{v:.2f}'
    d = lambda v: '-' if v is None else f'{v:+.2f}'
    lines = [f'{pathlib.Path(checkpoint).name}: ours against the official README', '',
             '| mode | protocol | dataset | samples | NoC@85 | official | diff | NoC@90 | official | diff |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in out:
        lines.append(f"| {r['mode']} | {r['protocol']} | {r['dataset']} | {r['samples']} | {f(r['NoC@85'])} | "
                     f"{f(r['official@85'])} | {d(r['diff@85'])} | {f(r['NoC@90'])} | {f(r['official@90'])} | "
                     f"{d(r['diff@90'])} |")
    return out, '\n'.join(lines)


def run_paper_table(checkpoint: pathlib.Path, data_root, out: pathlib.Path, datasets=DATASETS,
                    samples: Optional[int] = None, write: Callable[[dict], None] = lambda r: None,
                    precision: str = 'highest') -> dict:
    """Evaluate the cells on the ``datasets`` present under ``data_root`` and write the comparison;
    ``write`` gets the partial result after every cell (the accelerator suite keeps it)."""
    import fbrs_jax
    from fbrs_jax.data.readers import DatasetError, open_dataset
    from fbrs_jax.eval.ablation import run_ablation
    readers, missing = {}, []
    for name in datasets:
        try:
            readers[name] = open_dataset(name, data_root)
        except DatasetError:
            missing.append(name)
    if not readers:
        raise FileNotFoundError(f'none of {", ".join(datasets)} under {data_root}')
    model = fbrs_jax.load_model(str(checkpoint), precision=precision)
    cfg = get_config()
    cfg.max_samples = samples
    result = {'checkpoint': checkpoint.name, 'precision': precision, 'datasets_missing': missing}

    def log(line):
        rows = json.loads((out / 'cells.json').read_text()) if (out / 'cells.json').exists() else []
        result['rows'], result['markdown'] = comparison(rows, str(checkpoint))
        write(result)
        print(line, flush=True)
    rows = run_ablation(cfg, model, str(checkpoint), readers, out, quiet=True, log=log)
    result['rows'], result['markdown'] = comparison(rows, str(checkpoint))
    (out / 'comparison.json').write_text(json.dumps(result, indent=1))
    (out / 'comparison.md').write_text(result['markdown'] + '\n')
    write(result)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', required=True, type=pathlib.Path)
    p.add_argument('--data-root', required=True)
    p.add_argument('--datasets', default=','.join(DATASETS))
    p.add_argument('--max-samples', type=int, default=None)
    p.add_argument('--precision', default='highest')
    p.add_argument('--out', type=pathlib.Path, default=None)
    args = p.parse_args(argv)
    if official(str(args.checkpoint)) is None:
        print(f'note: {args.checkpoint.name} is not a released checkpoint name ({", ".join(OFFICIAL)}); '
              'no official values to compare with', file=sys.stderr)
    out = args.out or pathlib.Path('runs/paper_table') / args.checkpoint.stem
    result = run_paper_table(args.checkpoint, args.data_root, out, args.datasets.split(','), args.max_samples,
                             precision=args.precision)
    print(result['markdown'])
    if result['datasets_missing']:
        print(f"not found under {args.data_root}: {', '.join(result['datasets_missing'])}", file=sys.stderr)
    print(f'results in {out}/ (comparison.md, comparison.json; the cells as fbrs-jax ablate writes them)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
