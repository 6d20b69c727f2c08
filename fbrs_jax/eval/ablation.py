"""Ablation grids: named ``RefinementSpec`` cells -> NoC evaluations -> CSV / JSON / markdown and a
Pareto plot of NoC@90 against milliseconds per click.

Each cell is an ordinary resumable evaluation in ``<out>/cells/<cell>/``; a finished cell (its
``summary.json`` written with the same settings) is read back, not recomputed, so a rerun of an
interrupted grid continues where it stopped. The tables are rewritten after every cell.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import re
from typing import Callable, Optional, Sequence, Union

import jax

from ..brs.spec import RefinementSpec
from ..configs import load_python_config
from .evaluate import EvalSettings, write_atomic
from .runinfo import pyplot
from .runner import run_evaluation

Cells = Union[dict, Callable[[Sequence[str]], dict]]


@dataclasses.dataclass
class AblationConfig:
    """A grid. ``cells``: {name: RefinementSpec}, or a function of the model's tap names
    returning it (for grids over taps). ``checkpoint=None``: the shipped model."""
    cells: Cells
    checkpoint: Optional[str] = None
    datasets: tuple[str, ...] = ('synthetic_shapes',)
    data_root: Optional[str] = None
    # the protocol: overrides of EvalSettings' fields of the same names (None: its default, the reference's)
    n_clicks: Optional[int] = None
    target_iou: Optional[float] = None
    pred_thr: Optional[float] = None
    max_samples: Optional[int] = None       # None: every sample
    zoom_target: Optional[int] = None       # None: each dataset's

    def settings(self, name: str, spec: RefinementSpec) -> EvalSettings:
        """The evaluation of one cell."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(EvalSettings)
                 if hasattr(self, f.name) and getattr(self, f.name) is not None}
        return EvalSettings(mode=name, refinement=spec, **given)


COLUMNS = ('cell', 'dataset', 'tap', 'variables', 'solver', 'budget', 'NoC@85', 'NoC@90', 'NoF@85', 'NoF@90',
           'iou@1', 'iou@2', 'iou@3', 'iou@4', 'iou@5', 'ms_per_click', 'evals_per_optimised_click', 'compilations',
           'compile_s', 'cpu_steal', 'samples')


def load_ablation_config(path: str) -> AblationConfig:
    return load_python_config(path, AblationConfig)


def resolve_cells(cfg: AblationConfig, tap_names: Sequence[str]) -> dict:
    cells = cfg.cells(tap_names) if callable(cfg.cells) else dict(cfg.cells)
    if not cells:
        raise ValueError('the ablation config has no cells')
    bad = [k for k, v in cells.items() if not isinstance(v, RefinementSpec)]
    if bad:
        raise ValueError(f'cell {bad[0]!r} is not a RefinementSpec')
    return cells


def cell_folder(name: str) -> str:
    """A file-system-safe folder name for a cell."""
    return re.sub(r'[^A-Za-z0-9_.+-]+', '_', name)


def variables_label(spec: RefinementSpec) -> str:
    if spec.tap is None:
        return '-'
    parts = ([f'scale({spec.scale})'] if spec.scale != 'none' else []) + \
        ([f'{spec.bias} bias'] if spec.bias != 'none' else [])
    return ' + '.join(parts)


def cell_rows(name: str, spec: RefinementSpec, summary: dict) -> list[dict]:
    """One row per dataset of a finished cell."""
    rows = []
    for dataset, s in summary['datasets'].items():
        curve = s['mean_iou_curve']
        rows.append({
            'cell': name, 'dataset': dataset, 'tap': spec.tap or '-', 'variables': variables_label(spec),
            'solver': spec.solver if spec.tap else '-', 'budget': spec.maxfun if spec.tap else 0,
            'NoC@85': s['NoC@85'], 'NoC@90': s['NoC@90'], 'NoF@85': s['NoF@85'], 'NoF@90': s['NoF@90'],
            **{f'iou@{k}': curve[min(k, len(curve)) - 1] for k in range(1, 6)},   # held after the last click
            'ms_per_click': 1000.0 * s.get('warm_s_per_click', s['predictor_s_per_click']),   # compiles excluded
            'evals_per_optimised_click': s['evals_per_optimised_click'],
            'compilations': summary['compilation']['compilations'],
            'compile_s': summary['compilation']['compile_s'], 'cpu_steal': s.get('cpu_steal'),
            'samples': s['samples']})
    return rows


def markdown(rows: Sequence[dict]) -> str:
    head = ('| cell | dataset | tap | variables | solver | budget | NoC@85 | NoC@90 | NoF@90 '
            '| IoU@1 | IoU@3 | IoU@5 | ms/click (warm) | evals per optimised click | compiles (s) | CPU steal |')
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['dataset']} | {r['tap']} | {r['variables']} | {r['solver']} "
                     f"| {r['budget']} | {r['NoC@85']:.2f} | {r['NoC@90']:.2f} | {r['NoF@90']} "
                     f"| {r['iou@1']:.3f} | {r['iou@3']:.3f} | {r['iou@5']:.3f} | {r['ms_per_click']:.0f} "
                     f"| {r['evals_per_optimised_click']:.1f} | {r['compilations']} ({r['compile_s']:.0f}) "
                     f"| {'–' if r.get('cpu_steal') is None else format(r['cpu_steal'], '.0%')} |")
    return '\n'.join(lines)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both coordinates (lower is better)."""
    return [i for i, (x, y) in enumerate(points)
            if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for x2, y2 in points)]


LABEL_ALL = 24


def plot_pareto(path: pathlib.Path, rows: Sequence[dict]) -> None:
    """NoC@90 against ms per click, one marker per (cell, dataset), the front joined; with more
    than ``LABEL_ALL`` cells per dataset only the front is labelled (the table names the rest)."""
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for dataset in dict.fromkeys(r['dataset'] for r in rows):
        sub = [r for r in rows if r['dataset'] == dataset]
        pts = [(r['ms_per_click'], r['NoC@90']) for r in sub]
        ax.scatter(*zip(*pts), s=18, label=dataset)
        front = sorted(pareto_front(pts), key=lambda i: pts[i][0])
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], lw=1, alpha=0.6)
        for i in (range(len(sub)) if len(sub) <= LABEL_ALL else front):
            ax.annotate(sub[i]['cell'], pts[i], fontsize=6, xytext=(3, 2), textcoords='offset points')
    ax.set_xscale('log')
    ax.set_xlabel('ms per click (predictor, warm)')
    ax.set_ylabel('NoC@90 (lower is better)')
    ax.set_title('refinement variables: accuracy against latency')
    ax.grid(alpha=0.3, which='both')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_results(out: pathlib.Path, rows: Sequence[dict]) -> None:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=COLUMNS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / 'cells.csv', table.getvalue())
    write_atomic(out / 'cells.json', json.dumps(list(rows), indent=1))
    write_atomic(out / 'table.md', markdown(rows) + '\n')


def run_ablation(cfg: AblationConfig, model, checkpoint: str, readers: dict, out: pathlib.Path,
                 quiet: bool = False, log=print) -> list[dict]:
    """Evaluate every cell (finished ones are read back), writing the tables after each."""
    from ..models.taps import tap_names
    cells = resolve_cells(cfg, [t for t in tap_names(model.module.STAGES) if t != 'points'])
    out.mkdir(parents=True, exist_ok=True)
    folders = [cell_folder(n) for n in cells]
    if len(set(folders)) != len(folders):
        raise ValueError('two cells map to the same folder name; rename one')
    rows, previous = [], None
    for k, ((name, spec), folder) in enumerate(zip(cells.items(), folders)):
        settings = cfg.settings(name, spec)
        cell_out = out / 'cells' / folder
        summary = _finished(cell_out, checkpoint, model, settings, list(readers))
        if summary is None:
            log(f'[{k + 1}/{len(cells)}] {name}')
            if previous is not None and not shares_programs(previous, spec):
                jax.clear_caches()
            previous = spec
            try:
                summary = run_evaluation(model, checkpoint, settings, readers, cell_out, quiet=quiet)
            except ValueError as e:
                raise ValueError(f'cell {name!r}: {e}') from None
        else:
            log(f'[{k + 1}/{len(cells)}] {name}: finished earlier, read back')
        rows.extend(cell_rows(name, spec, summary))
        write_results(out, rows)
    plot_pareto(out / 'pareto.png', rows)
    return rows


def shares_programs(a: RefinementSpec, b: RefinementSpec) -> bool:
    """Whether two cells run the same compiled programs: the budget is data of the click program.
    Between cells that do not, the grid drops the compiled programs it holds (``jax.clear_caches``):
    XLA:CPU keeps memory mappings for every loaded program, and a long grid in one process
    otherwise exhausts the kernel's limit (vm.max_map_count) and aborts in LLVM."""
    return dataclasses.replace(a, maxfun=b.maxfun) == b


def _finished(cell_out: pathlib.Path, checkpoint: str, model, settings: EvalSettings, datasets) -> Optional[dict]:
    path = cell_out / 'summary.json'
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    same = (
        summary.get('settings') == json.loads(json.dumps(dataclasses.asdict(settings)))
        and summary.get('checkpoint') == checkpoint
        and summary.get('checkpoint_sha256') == model.source.get('sha256')
        and summary.get('precision', 'highest') == str(model.module.precision)
        and list(summary.get('datasets', {})) == datasets
    )
    return summary if same else None
