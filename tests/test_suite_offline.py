"""The accelerator suite runs end to end (dry run: tiny sizes, every item) from an offline bundle,
in a Python environment holding only jax, flax, optax, orbax-checkpoint, numpy, scipy (and what
they need) plus the bundle: no install, no tensorflow-datasets, no matplotlib; the CLI's
evaluate and benchmark run there too. And the TFDS builders, used without their extra, fail
with one line naming it."""
import importlib
import json
import os
import pathlib
import subprocess
import sys
from importlib import metadata

import pytest

from conftest import REPO, SHARED, requires_shared

BARE = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'scipy')


def _closure(names) -> set:
    """The installed distributions ``names`` need, transitively (with the extras they ask of each other)."""
    from packaging.requirements import Requirement
    seen, todo = set(), [(n, '') for n in names]
    while todo:
        name, extra = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = (dist.metadata['Name'].lower().replace('_', '-'), extra)
        if key in seen:
            continue
        seen.add(key)
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({'extra': extra}):
                todo += [(req.name, e) for e in ('', *req.extras)]
    return {name for name, _ in seen}


def bare_python(root: pathlib.Path) -> pathlib.Path:
    """A venv whose only packages are ``BARE`` and their needs, linked from this environment."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(root / 'venv')], check=True)
    site = root / 'site'
    site.mkdir()
    for name in _closure(BARE):
        dist = metadata.distribution(name)
        for top in {pathlib.Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith('..')}:
            target = site / top
            if not target.exists():
                target.symlink_to(dist.locate_file(top))
    venv_site = next((root / 'venv' / 'lib').glob('python*/site-packages'))
    (venv_site / 'bare.pth').write_text(str(site) + '\n')
    return root / 'venv' / 'bin' / 'python'


@requires_shared
def test_dry_run_from_an_offline_bundle_in_a_bare_environment(tmp_path):
    bundle = tmp_path / 'bundle'
    r34 = SHARED / 'reference' / 'weights' / 'resnet34_dh128_synth.pth'
    subprocess.run([sys.executable, str(REPO / 'experiments' / 'offline_bundle.py'), '--out', str(bundle),
                    '--checkpoint', str(r34), '--samples', '2', '--wheels', 'jaxopt,tqdm,pillow',
                    '--data-root', str(SHARED / 'data')], check=True, capture_output=True, text=True)
    manifest = json.loads((bundle / 'manifest.json').read_text())
    assert manifest['data'] == {'GrabCut': 2, 'Berkeley': 2} and set(manifest['wheels']) == {'jaxopt', 'tqdm', 'pillow'}
    python = bare_python(tmp_path / 'bare')
    env = {'PATH': os.environ['PATH'], 'HOME': str(tmp_path), 'PYTHONPATH': str(bundle / 'site'),
           'FBRS_JAX_CACHE': str(REPO / '.jax_cache'), 'JAX_PLATFORMS': 'cpu'}
    probe = subprocess.run([str(python), '-c', 'import importlib.util as u; print([m for m in ("tensorflow_datasets", '
                            '"matplotlib", "PIL", "jaxopt", "fbrs_jax") if u.find_spec(m)])'],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
    assert probe.stdout.strip() == "['PIL', 'jaxopt', 'fbrs_jax']", probe.stderr
    out = tmp_path / 'suite'
    proc = subprocess.run([str(python), str(bundle / 'accelerator_suite.py'), '--bundle', str(bundle), '--dry-run',
                           '--out', str(out), '--deadline', '900'], env=env, capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    suite = json.loads(out.with_suffix('.json').read_text())
    items = suite['items']
    assert {k: v['status'] for k, v in items.items()} == {
        'benchmark': 'done', 'throughput': 'done', 'reference': 'skipped', 'main_job': 'done', 'training': 'done',
        'rgb_brs': 'done', 'paper_table': 'skipped'}, {k: v.get('reason') for k, v in items.items()}
    bench = items['benchmark']['result']
    assert set(bench) == {'highest', 'default', 'bfloat16'} and set(bench['highest']['modes']) == {'NoBRS', 'f-BRS-B'}
    for mode in bench['highest']['modes'].values():
        assert mode['wall_s']['median'] > 0 and mode['wall_s']['p90'] >= mode['wall_s']['median']
        assert mode['compilations'] + mode['compile_cache_hits'] >= 1
    assert bench['highest']['modes']['f-BRS-B']['evals_per_optimised_click'] >= 1
    assert set(bench['default']['modes']) == set(bench['bfloat16']['modes']) == {'NoBRS'}
    assert set(items['throughput']['result']) == {'GrabCut'}          # a dry run's throughput: GrabCut alone
    for t in items['throughput']['result'].values():
        assert t['samples'] == 1 and t['lane_clicks'] >= 1 and t['lane_clicks_per_s'] > 0
        assert t['flops_ratio'] >= 1.0 and (t['host_s_per_lane_click'] is None or t['host_s_per_lane_click'] > 0)
    main = items['main_job']['result']
    assert set(main) == {'NoBRS', 'f-BRS-B'} and all(m['samples'] == 1 for m in main.values())
    training = items['training']['result']
    assert training['steps'] == 2 and training['steps_per_s'] > 0 and training['arch'] == 'resnet34_dh128'
    assert set(items['rgb_brs']['result']['highest']['modes']) == {'RGB-BRS'}
    assert 'torch' in items['reference']['reason'] or 'reference source' in items['reference']['reason']
    md = out.with_suffix('.md').read_text()
    assert '## throughput — done' in md and '## paper_table — skipped' in md
    # the CLI's evaluate (main job) and benchmark without tensorflow-datasets and matplotlib (the
    # suite's settings: its programs come from the persistent cache)
    cli = [str(python), '-m', 'fbrs_jax.cli']
    run = lambda args: subprocess.run(cli + args, env=env, capture_output=True, text=True, cwd=tmp_path)
    e = run(['evaluate', '--max-samples', '1', '--n-clicks', '2', '--mode', 'NoBRS', '--out', str(tmp_path / 'e'),
             '--quiet'])
    assert e.returncode == 0 and 'matplotlib is not installed' in e.stderr, e.stderr[-2000:]
    assert json.loads((tmp_path / 'e' / 'summary.json').read_text())['precision'] == 'highest'
    b = run(['benchmark', '--checkpoint', str(r34), '--modes', 'NoBRS', '--size', '64x96', '--clicks', '2',
             '--repeats', '1', '--zoom-target', '64', '--precision', 'default'])
    assert b.returncode == 0 and 'precision default' in b.stdout, b.stderr[-2000:]


def test_tfds_builders_without_their_extra_name_it(monkeypatch):
    monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)       # as if not installed
    monkeypatch.delitem(sys.modules, 'fbrs_jax.data.tfds_builders', raising=False)
    with pytest.raises(ImportError, match=r"pip install 'fbrs-jax\[tfds\]'"):
        importlib.import_module("fbrs_jax.data.tfds_builders")
