"""The command line: conversion, and one-line errors with exit codes."""
import numpy as np
import pytest
import jax

from conftest import R34_PTH, requires_shared
from fbrs_jax.cli import main


@requires_shared
def test_convert_command(tmp_path, capsys):
    assert main(['convert', str(R34_PTH), str(tmp_path / 'r34')]) == 0
    assert 'resnet34_dh128, 23,361,100 values' in capsys.readouterr().out
    assert (tmp_path / 'r34' / 'model.json').exists()


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'\x00' * 10)
    assert main(['convert', str(bad), str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('fbrs-jax: error: ') and err.count('\n') == 1 and 'bad.pth' in err
    with pytest.raises(SystemExit) as e:
        main(['convert'])
    assert e.value.code == 2


def test_evaluate_flags_override_the_settings_defaults():
    """EvalSettings holds evaluate's defaults; a flag given overrides its field, one not given leaves it."""
    from fbrs_jax.cli import EVAL_FLAGS, _eval_overrides, build_parser
    from fbrs_jax.eval.evaluate import EvalSettings
    parse = build_parser().parse_args
    assert _eval_overrides(parse(['evaluate'])) == {}
    args = parse(['evaluate', '--n-clicks', '5', '--thresh', '0.3', '--canvas', 'dataset', '--no-flip',
                  '--max-samples', '2', '--backend', 'scipy', '--widen', '1.25'])
    assert EvalSettings(mode='NoBRS', **_eval_overrides(args)) == EvalSettings(
        mode='NoBRS', n_clicks=5, pred_thr=0.3, canvas_step=None, with_flip=False, max_samples=2, backend='scipy',
        widen=1.25)
    for bad in ('0.9', 'nan', 'inf', 'wide'):
        with pytest.raises(SystemExit) as e:
            parse(['evaluate', '--widen', bad])
        assert e.value.code == 2
    assert set(EVAL_FLAGS.values()) | {'mode', 'with_flip', 'zoom_in', 'refinement'} == set(
        EvalSettings.__dataclass_fields__)


def test_main_job_evaluates_the_shipped_model_on_synthetic_shapes(tmp_path, capsys):
    """`fbrs-jax evaluate` with defaults (here cut to one sample, two clicks): shipped checkpoint,
    synthetic_shapes, NoBRS and f-BRS-B, a comparison table, JSON and plot."""
    import json
    assert main(['evaluate', '--max-samples', '1', '--n-clicks', '2', '--out', str(tmp_path), '--quiet']) == 0
    table = capsys.readouterr().out
    assert '| NoBRS       | synthetic_shapes |' in table and '| f-BRS-B     | synthetic_shapes |' in table
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert set(summary) == {'NoBRS', 'f-BRS-B'} and summary['NoBRS']['arch'] == 'hrnet18s_ocr64'
    assert (tmp_path / 'iou_vs_clicks.png').stat().st_size > 0
    assert (tmp_path / 'f-BRS-B' / 'synthetic_shapes.jsonl').exists()


def _evaluate(checkpoint, data_root, out, *extra):
    return main(['evaluate', '--checkpoint', checkpoint, '--mode', 'NoBRS', '--datasets', 'GrabCut',
                 '--data-root', str(data_root), '--n-clicks', '3', '--out', str(out), '--quiet', *extra])


def test_evaluate_writes_table_json_plot_and_resumes(r34_checkpoint, tmp_path, capsys, monkeypatch):
    import json
    import fbrs_jax.eval.runner
    from conftest import make_grabcut
    make_grabcut(tmp_path / 'data' / 'GrabCut')
    out = tmp_path / 'run'
    monkeypatch.setattr(fbrs_jax.eval.runner, 'steal_fraction', lambda start, end: 0.25)   # a busy host
    jax.clear_caches()          # its programs are compiled or loaded from the persistent cache, and counted
    assert _evaluate(r34_checkpoint, tmp_path / 'data', out) == 0
    monkeypatch.undo()
    table, warning = capsys.readouterr()
    assert '| NoBRS       | GrabCut    |' in table and 'NoC@90' in table
    assert warning == 'warning: the hypervisor took 25% of the CPU time while samples ran; ' \
                      'timings may read up to 1.3x too long\n'
    summary = json.loads((out / 'summary.json').read_text())
    s = summary['datasets']['GrabCut']
    assert s['cpu_steal'] == 0.25
    assert s['samples'] == 2 and 1 <= s['clicks'] <= 6
    records = [json.loads(x) for x in (out / 'GrabCut.jsonl').read_text().splitlines()]
    noc = [next((k + 1 for k, v in enumerate(r['ious']) if v >= 0.9), 3) for r in records]
    assert s['NoC@90'] == pytest.approx(np.mean(noc))       # NoC from the per-click IoUs (3 when never reached)
    c = summary['compilation']
    assert summary['settings']['mode'] == 'NoBRS' and 1 <= c['compilations'] + c['cache_hits'] <= 4, c
    assert summary['refinement']['tap'] is None and summary['refinement']['clicks_limit'] is None
    assert summary['zoom_in']['GrabCut'] == dict(target_size=400, skip_clicks=1, expansion_ratio=1.4,
                                                 min_crop_size=200, recompute_thresh_iou=0.5, prob_thresh=0.5)
    assert summary['environment']['packages']['jax'] and (out / 'iou_vs_clicks.png').stat().st_size > 1000
    lines = (out / 'GrabCut.jsonl').read_text().splitlines()
    assert [json.loads(x)['name'] for x in lines] == ['a.png', 'b.bmp']

    # interrupted while writing the second sample: only that one is redone
    (out / 'GrabCut.jsonl').write_text(lines[0] + '\n' + lines[1][:20])
    assert _evaluate(r34_checkpoint, tmp_path / 'data', out) == 0
    assert (out / 'GrabCut.jsonl').read_text().splitlines()[0] == lines[0]
    again = [json.loads(x) for x in (out / 'GrabCut.jsonl').read_text().splitlines()]
    assert [r['ious'] for r in again] == [json.loads(x)['ious'] for x in lines]
    noc_columns = lambda text: [line.rsplit('|', 3)[0] for line in text.splitlines()[:3]]
    assert noc_columns(capsys.readouterr().out) == noc_columns(table)

    # other settings into the same folder, a missing dataset folder: one-line errors
    assert _evaluate(r34_checkpoint, tmp_path / 'data', out, '--target-iou', '0.8') == 1
    assert _evaluate(r34_checkpoint, tmp_path / 'nowhere', tmp_path / 'run2') == 1
    assert _evaluate(r34_checkpoint, tmp_path / 'data', tmp_path / 'run3', '--mode', 'f-BRS-B', '--backend', 'scipy',
                     '--batch', '2') == 2
    err = capsys.readouterr().err.splitlines()
    assert 'different run' in err[0] and 'dataset folder not found' in err[1] and len(err) == 3
    assert 'scipy runs on the host' in err[2]


def test_benchmark_writes_json_and_table(r34_checkpoint, tmp_path, capsys):
    import json
    out = tmp_path / 'bench'
    jax.clear_caches()          # the first pass compiles or loads each program, and counts it
    assert main(['benchmark', '--checkpoint', r34_checkpoint, '--modes', 'NoBRS,f-BRS-B', '--size', '48x64',
                 '--clicks', '3', '--repeats', '1', '--zoom-target', '64', '--out', str(out)]) == 0
    result = json.loads(out.with_suffix('.json').read_text())
    assert result['settings']['size_hw'] == [48, 64] and result['environment']['packages']['jaxopt']
    for mode, r in result['modes'].items():
        assert r['mode'] == mode and (r['clicks'], r['repeats'], r['batch']) == (3, 1, 1)
        for field in ('wall_s', 'device_s'):
            assert r[field]['n'] == 3 and 0 < r[field]['median'] <= r[field]['p90']
        assert r['wall_s_after_first_click']['n'] == 2 and 0 < r['device_s']['median'] <= r['wall_s']['median']
        assert r['compilations'] + r['compile_cache_hits'] >= 1 and r['compilations_while_timed'] == 0
        assert r['compile_s'] + r['cache_load_s'] > 0 and r['first_pass_s'] > r['wall_s']['median']
        assert len(r['evals']) == len(r['ious']) == len(r['net_hw']) == len(r['wall_s_per_click']) == 3
        assert 0 < r['canvas_fill'] <= 1 and r['program_bytes'] > 0 and r['peak_host_rss_mb'] > 0
        assert ('peak_device_bytes' in r) and 0 <= r['cpu_steal_while_timed'] <= 1
    assert result['modes']['NoBRS']['evals_per_optimised_click'] == 0
    assert result['modes']['f-BRS-B']['evals_per_optimised_click'] >= 1
    table = out.with_suffix('.md').read_text()
    assert '| NoBRS |' in table and '| f-BRS-B |' in table and '| f-BRS-B |' in capsys.readouterr().out
    assert main(['benchmark', '--checkpoint', r34_checkpoint, '--modes', 'f-BRS-Z']) == 2


def test_distributed_evaluation_splits_samples_over_processes(api_model, tmp_path):
    """Two processes joined by jax.distributed on this machine: each evaluates its share, both
    shard files together equal a single-process run, and process 0 writes the summary. The model
    is a converted directory, written by one process and read by each (onto its own device)."""
    import json
    import os
    import socket
    import subprocess
    import sys
    from conftest import REPO, make_grabcut
    from fbrs_jax.convert.loading import save_converted
    make_grabcut(tmp_path / 'data' / 'GrabCut')
    checkpoint = str(tmp_path / 'converted')
    save_converted(api_model, checkpoint)
    with socket.socket() as s:
        s.bind(('localhost', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, FBRS_JAX_CACHE=str(REPO / '.jax_cache'))
    args = lambda out: [sys.executable, '-m', 'fbrs_jax.cli', 'evaluate', '--checkpoint', checkpoint, '--mode',
                        'NoBRS', '--datasets', 'GrabCut', '--data-root', str(tmp_path / 'data'), '--n-clicks', '2',
                        '--out', str(out), '--quiet']
    dist = lambda k: args(tmp_path / 'dist') + ['--distributed', '--coordinator', f'localhost:{port}',
                                                '--num-processes', '2', '--process-id', str(k)]
    procs = [subprocess.Popen(dist(k), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in (0, 1)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    assert subprocess.run(args(tmp_path / 'single'), env=env, capture_output=True).returncode == 0
    read = lambda f: [json.loads(x) for x in f.read_text().splitlines()]
    shards = [read(tmp_path / 'dist' / f'GrabCut.p{k}.jsonl') for k in (0, 1)]
    assert [[r['index'] for r in s] for s in shards] == [[0], [1]]
    single = read(tmp_path / 'single' / 'GrabCut.jsonl')
    assert [(r['clicks'], r['ious']) for r in shards[0] + shards[1]] == [(r['clicks'], r['ious']) for r in single]
    summary = json.loads((tmp_path / 'dist' / 'summary.json').read_text())
    assert summary['processes'] == 2 and summary['datasets']['GrabCut']['samples'] == 2
    assert '| NoBRS' in outputs[0][0] and '| NoBRS' not in outputs[1][0]


def test_train_command_resumes_and_exports(tmp_path, capsys):
    """`fbrs-jax train` on synthetic scenes: stop after 2 steps, rerun to resume and finish; the
    exported model loads. (The config matches tests/test_train.py's, so the step is compiled once.)"""
    import json
    import fbrs_jax
    config = tmp_path / 'tiny.py'
    config.write_text(
        'from fbrs_jax.train.config import TrainConfig\n\n\n'
        'def get_config():\n'
        "    return TrainConfig(arch='resnet34_dh128', dataset='synthetic_shapes', crop_hw=(64, 96), batch_size=2,\n"
        '                       epochs=1, epoch_len=8, backbone_lr_mult=1.0, log_every=1, checkpoint_every=2)\n')
    work = tmp_path / 'work'
    assert main(['train', '--config', str(config), '--workdir', str(work), '--stop-step', '2']) == 0
    assert not (work / 'model').exists()
    assert main(['train', '--config', str(config), '--workdir', str(work)]) == 0
    out = capsys.readouterr().out
    assert 'resumed from step 2' in out and 'exported the trained model' in out
    assert [json.loads(s)['step'] for s in open(work / 'metrics.jsonl')] == [1, 2, 3, 4]
    model = fbrs_jax.load_model(work / 'model')
    assert model.arch.name == 'resnet34_dh128' and model.source['steps'] == 4
    assert main(['train', '--config', str(tmp_path / 'missing.py'), '--workdir', str(work)]) == 1
    assert 'config file not found' in capsys.readouterr().err
