"""Refinement specs as data and ``fbrs-jax ablate``: presets are the named modes, bad specs are
clear errors, and a 2x2 grid runs end to end (table, CSV, JSON, Pareto plot) and resumes."""
import csv
import json

import numpy as np
import pytest

from fbrs_jax.brs.spec import MODES, PRESETS, RefinementSpec, preset
from fbrs_jax.cli import main
from fbrs_jax.eval.ablation import pareto_front, shares_programs

GRID = '''
from fbrs_jax.brs.spec import RefinementSpec
from fbrs_jax.eval.ablation import AblationConfig

COMMON = dict(maxfun=3, with_flip=False, zoom_in=False, clicks_limit=None)


def get_config():
    return AblationConfig(cells={
        'head_sep2/bias adam': RefinementSpec(tap='head_sep2', scale='none', solver='adam', **COMMON),
        'head_sep2/tanh scale': RefinementSpec(tap='head_sep2', bias='none', scale='tanh', **COMMON),
        'logits_lowres/bias adam': RefinementSpec(tap='logits_lowres', scale='none', solver='adam', **COMMON),
        'logits_lowres/tanh scale': RefinementSpec(tap='logits_lowres', bias='none', scale='tanh', **COMMON),
    }, datasets=('GrabCut',), n_clicks=3)
'''


def test_presets_are_the_named_modes():
    assert MODES == ('NoBRS', 'RGB-BRS', 'DistMap-BRS', 'f-BRS-A', 'f-BRS-B', 'f-BRS-C')
    assert PRESETS['RGB-BRS'] == RefinementSpec('image', 'pixel', 'none', reg_bias_weight=1.0, clicks_limit=5)
    assert PRESETS['f-BRS-B'].tap == 'f-BRS-B' and PRESETS['f-BRS-B'].reg_bias_weight == 10.0
    assert preset('f-BRS-C', maxfun=5).maxfun == 5 and PRESETS['NoBRS'].tap is None
    for bad in (dict(bias='both'), dict(scale='exp'), dict(solver='sgd'), dict(bias='none', scale='none'),
                dict(maxfun=0), dict(clicks_limit=0)):
        with pytest.raises(ValueError):
            RefinementSpec(tap='c3', **bad)
    with pytest.raises(ValueError, match='unknown mode'):
        preset('f-BRS-D')


def test_tap_variables_forms():
    """x = [s | b]: scale forms, channel and per-pixel bias (flipped for the mirrored half), and
    the regulariser reg_weight * (sum s^2 + reg_bias_weight * sum b^2)."""
    import jax.numpy as jnp
    from fbrs_jax.brs.objective import TapVariables
    f = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 5, 3)), jnp.float32)
    s, b = np.array([0.1, -0.2, 0.3], np.float32), np.array([1.0, 2.0, 3.0], np.float32)
    v = TapVariables('t', 3, 'channel', 'tanh', reg_weight=0.5, reg_bias_weight=2.0)
    edits, reg = v.edits_and_reg(jnp.asarray(np.concatenate([s, b])), with_flip=True)
    np.testing.assert_allclose(edits['t'](f), f * (1 + np.tanh(s)) + b, rtol=1e-6)
    assert v.size == 6 and float(reg) == pytest.approx(0.5 * (np.sum(s ** 2) + 2.0 * np.sum(b ** 2)), rel=1e-6)
    pixel = TapVariables('t', 3, 'pixel', 'none', hw=(4, 5), reg_weight=1.0, reg_bias_weight=1.0)
    bias = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)     # (C, h, w) as the reference
    edits, reg = pixel.edits_and_reg(jnp.asarray(bias.ravel()), with_flip=True, width=4)
    out = np.asarray(edits['t'](jnp.zeros_like(f)))
    hwc = bias.transpose(1, 2, 0)
    np.testing.assert_allclose(out[0], hwc)
    np.testing.assert_allclose(out[1, :, :4], hwc[:, 3::-1])    # mirrored within the image width 4
    np.testing.assert_allclose(out[1, :, 4], hwc[:, 4])          # the canvas beyond it is not moved
    assert pixel.size == 60 and float(reg) == pytest.approx(2 * np.sum(bias ** 2), rel=1e-5)


def test_a_cell_is_an_evaluation_with_the_grid_overrides():
    from fbrs_jax.eval.ablation import AblationConfig
    from fbrs_jax.eval.evaluate import EvalSettings
    spec = RefinementSpec(tap='c3')
    assert AblationConfig(cells={}).settings('c', spec) == EvalSettings(mode='c', refinement=spec)
    cfg = AblationConfig(cells={}, n_clicks=3, max_samples=2, zoom_target=300)
    assert cfg.settings('c', spec) == EvalSettings(mode='c', refinement=spec, n_clicks=3, max_samples=2,
                                                   zoom_target=300)


def test_pareto_front():
    pts = [(10, 5.0), (20, 4.0), (30, 4.5), (5, 6.0), (20, 4.0)]
    assert pareto_front(pts) == [0, 1, 3, 4]


def test_cells_that_differ_only_in_budget_share_programs():
    a = RefinementSpec(tap='c3', maxfun=5)
    assert shares_programs(a, RefinementSpec(tap='c3', maxfun=40))
    assert not shares_programs(a, RefinementSpec(tap='c3', maxfun=5, bias='none'))
    assert not shares_programs(a, RefinementSpec(tap='c4', maxfun=5))


def test_specs_that_do_not_fit_the_model_are_clear_errors(api_model):
    import fbrs_jax
    with pytest.raises(ValueError, match="cannot optimise at 'c9'; taps of resnet34_dh128: image, dist_maps"):
        fbrs_jax.make_predictor(api_model, RefinementSpec(tap='c9'))
    with pytest.raises(ValueError, match=r"per-pixel bias needs a tap at the input resolution.*'c3' is at 1/8"):
        fbrs_jax.make_predictor(api_model, RefinementSpec(tap='c3', bias='pixel'))
    assert fbrs_jax.make_predictor(api_model, 'f-BRS-A').tap == 'c4'


def test_ablate_runs_a_grid_writes_the_table_and_resumes(r34_checkpoint, tmp_path, capsys, monkeypatch):
    import jax
    from conftest import make_grabcut
    clears = []
    monkeypatch.setattr(jax, 'clear_caches', lambda: clears.append(1))   # counted, not run: fixtures keep theirs
    make_grabcut(tmp_path / 'data' / 'GrabCut')
    config = tmp_path / 'grid.py'
    config.write_text(GRID)
    out = tmp_path / 'ablation'
    args = ['ablate', '--config', str(config), '--checkpoint', r34_checkpoint, '--data-root', str(tmp_path / 'data'),
            '--out', str(out), '--quiet']
    assert main(args) == 0
    assert len(clears) == 3      # four cells, each its own programs: dropped between them
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(out / 'cells.csv')))
    assert [r['cell'] for r in rows] == ['head_sep2/bias adam', 'head_sep2/tanh scale', 'logits_lowres/bias adam',
                                         'logits_lowres/tanh scale']
    assert [r['variables'] for r in rows] == ['channel bias', 'scale(tanh)'] * 2
    for r in rows:
        assert r['dataset'] == 'GrabCut' and int(r['samples']) == 2 and float(r['ms_per_click']) > 0
        assert 1 <= float(r['NoC@90']) <= 3 and 0 <= float(r['iou@1']) <= 1
        assert 0 <= float(r['cpu_steal']) <= 1    # measured on Linux (CI)
        assert 0 < float(r['evals_per_optimised_click']) <= 3 + 20   # a budget of 3, the last iteration may overrun
        if r['solver'] == 'adam':
            assert float(r['evals_per_optimised_click']) <= 3   # one evaluation per step, at most maxfun
    table = (out / 'table.md').read_text()
    assert (
        table.count('\n') == 2 + 4
        and '| head_sep2/bias adam | GrabCut | head_sep2 | channel bias | adam | 3 |' in table
    )
    assert table.splitlines()[2] in printed
    assert json.loads((out / 'cells.json').read_text())[0]['tap'] == 'head_sep2'
    assert (out / 'pareto.png').stat().st_size > 1000
    summary = json.loads((out / 'cells' / 'head_sep2_tanh_scale' / 'summary.json').read_text())
    assert summary['settings']['refinement']['scale'] == 'tanh'
    # a cell is a plain evaluation of its spec: the same clicks and IoUs, the same NoC in the table
    import fbrs_jax
    from fbrs_jax.data.readers import open_dataset
    from fbrs_jax.eval.evaluate import EvalSettings
    from fbrs_jax.eval.runner import run_evaluation
    spec = RefinementSpec(tap='head_sep2', bias='none', scale='tanh', maxfun=3, with_flip=False, zoom_in=False,
                          clicks_limit=None)
    direct = run_evaluation(fbrs_jax.load_model(r34_checkpoint), r34_checkpoint,
                            EvalSettings(mode='direct', n_clicks=3, refinement=spec),
                            {'GrabCut': open_dataset('GrabCut', tmp_path / 'data')}, tmp_path / 'direct', quiet=True)
    strip = lambda path: [{k: r[k] for k in ('name', 'clicks', 'ious')}
                          for r in map(json.loads, path.read_text().splitlines())]
    cell = out / 'cells' / 'head_sep2_tanh_scale' / 'GrabCut.jsonl'
    assert strip(tmp_path / 'direct' / 'GrabCut.jsonl') == strip(cell)
    row = next(r for r in rows if r['cell'] == 'head_sep2/tanh scale')
    assert float(row['NoC@90']) == pytest.approx(direct['datasets']['GrabCut']['NoC@90'], abs=1e-4)

    # rerun: every cell is read back, nothing is evaluated (or compiled) again
    assert main(args) == 0
    assert capsys.readouterr().out.count('finished earlier, read back') == 4 and len(clears) == 3
    again = list(csv.DictReader(open(out / 'cells.csv')))
    assert again == rows
    assert np.isfinite([float(r['NoC@85']) for r in again]).all()
