"""Batched, sharded evaluation equals sequential evaluation, sample for sample; a dataset runs on a
handful of compiled programs whatever its image and crop shapes.

The batched check runs in a subprocess with four host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``, which must be set before JAX starts):
five samples of five sizes on one canvas, ZoomIn crops of varying shape, batch 4 (one lane
per device), f-BRS-B - clicks, IoUs and objective evaluations must be identical to one predictor
evaluating the samples one after another. With the ``lbfgsb`` back end the four lanes also run
vmapped on one device: each lane pays one evaluation per loop step, so every lane's evaluation
counts equal its sequential ones. A sample evaluated alone on one device runs one-lane programs
(no idle lane: its executed FLOPs equal the sequential ones); on four devices, one lane each.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import jax

from conftest import R34_PTH, REPO, SHARED, requires_shared

CASES = (('f-BRS-B', 'jaxopt'), ('f-BRS-B', 'lbfgsb'))   # every mode shares the lane logic


def samples():
    from fbrs_jax.data.readers import Sample
    rng = np.random.default_rng(0)
    out = []
    for k, (h, w) in enumerate([(48, 64), (64, 40), (56, 56), (40, 44), (60, 50)]):
        image = rng.integers(0, 255, (h, w, 3), np.uint8)
        gt = np.zeros((h, w), np.int32)
        gt[h // 4:3 * h // 4, w // 5:w // 2 + k] = 1
        image[gt == 1] //= 3
        out.append(Sample(str(k), image, gt))
    return out


def _compare(checkpoint: str, mode: str, solver: str) -> dict:
    """Sequential vs batched records of one mode and back end (run inside the 4-device
    subprocess); for ``lbfgsb`` also four lanes on one device."""
    import jax
    import fbrs_jax
    from fbrs_jax.eval.batched import BatchedEvaluator
    from fbrs_jax.eval.evaluate import evaluate_sample
    from fbrs_jax.eval.flops import flop_fields
    assert jax.local_device_count() == 4
    model = fbrs_jax.load_model(checkpoint)
    new = lambda: fbrs_jax.make_predictor(model, mode, zoom_in={'target_size': 64, 'min_crop_size': 16},
                                          canvas=(64, 64), solver=solver)
    data = samples()
    keys = ('clicks', 'ious', 'evals')
    records = lambda rs: [{k: r[k] for k in keys} for r in rs]
    sequential = [evaluate_sample(new(), s.image, s.gt, 4, 0.99, 0.49, per_click=flop_fields) for s in data]
    out = {'sequential': records(sequential), 'alone_flops': {'sequential': sequential[4]['flops']}}
    runs = {'batched': None, 'lanes': jax.local_devices()[:1]} if solver == 'lbfgsb' else {'batched': None}
    for name, devices in runs.items():
        evaluator = BatchedEvaluator(new(), 4, devices)
        alone = evaluator.evaluate(data[4:], 4, 0.99, 0.49)
        together = evaluator.evaluate(data[:4], 4, 0.99, 0.49)
        out[name] = records(together + alone)
        out['alone_flops'][name] = alone[0]['flops']
        out.setdefault('programs', {})[name] = {
            'lanes': [r['lanes'] for r in together + alone],
            'measured': [len(r['host_s']) == len(r['wait_s']) == len(r['ious']) for r in together + alone]}
    return out


def test_batched_sharded_evaluation_equals_sequential(r34_checkpoint):
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4', FBRS_SHARED=str(SHARED))
    code = (f'import sys, json; sys.path.insert(0, {str(REPO / "tests")!r}); import conftest, test_batched; '
            f'print(json.dumps({{" ".join(c): test_batched._compare({r34_checkpoint!r}, *c) for c in {CASES!r}}}))')
    proc = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for case, r in result.items():
        assert r['batched'] == r['sequential'], case
        assert any(len(s['clicks']) > 1 for s in r['sequential'])
        assert any(e > 1 for s in r['sequential'] for e in s['evals']), case
        if 'lanes' in r:    # several lanes on one device: the same evaluation counts per lane
            assert [s['evals'] for s in r['lanes']] == [s['evals'] for s in r['sequential']], case
        # alone: one lane on one device; on the 4-device mesh one lane each, three of them idle
        flops = r['alone_flops']
        assert flops['batched'] == [[4 * e, x] for e, x in flops['sequential']], (case, flops)
        # per click: the samples its program ran (the four together share programs, alone one)
        for name, programs in r['programs'].items():
            assert all(programs['measured']), (case, name)
            lanes = programs['lanes']
            assert [len(x) for x in lanes] == [len(s['ious']) for s in r['sequential']], (case, name)
            assert all(1 <= n <= 4 for x in lanes for n in x) and set(lanes[4]) == {1}, (case, name, lanes)
            assert any(n > 1 for x in lanes[:4] for n in x), (case, name, lanes)
        if 'lanes' in flops:
            assert flops['lanes'] == flops['sequential'], (case, flops)


@requires_shared
@pytest.mark.parametrize('mode', ['f-BRS-B'])
def test_dataset_evaluation_compiles_a_handful_of_programs(tmp_path, mode):
    """Three real GrabCut images of three sizes (linked into a GrabCut-layout folder), three
    clicks each (ZoomIn crops of other shapes every click), the network on each input's size
    rounded up to 32: at most one program per image bucket and per crop bucket (compiled, or
    loaded from the persistent cache), and the dense FLOPs executed within 1.2 of those of
    every click at its exact size (on the 600x488 dataset canvas and the 400x400 ZoomIn canvas
    they would be about 2x)."""
    from fbrs_jax.cli import main
    from fbrs_jax.data.readers import open_dataset
    src = SHARED / 'data' / 'GrabCut'
    root = tmp_path / 'data' / 'GrabCut'
    for sub in ('data_GT', 'boundary_GT'):
        (root / sub).mkdir(parents=True)
    for image in ('106024.jpg', '181079.jpg', 'bush.jpg'):
        (root / 'data_GT' / image).symlink_to(src / 'data_GT' / image)
        mask = image.split('.')[0] + '.bmp'
        (root / 'boundary_GT' / mask).symlink_to(src / 'boundary_GT' / mask)
    reader = open_dataset('GrabCut', tmp_path / 'data')
    assert len({reader.image_hw(i) for i in range(3)}) == 3
    out = tmp_path / 'run'
    jax.clear_caches()          # every program is compiled or loaded from the persistent cache, and counted
    assert main(['evaluate', '--checkpoint', str(R34_PTH), '--mode', mode, '--datasets', 'GrabCut',
                 '--data-root', str(tmp_path / 'data'), '--n-clicks', '3', '--out', str(out), '--quiet']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    c = summary['compilation']
    assert 3 <= c['compilations'] + c['cache_hits'] <= 3 + 6, c      # at least one per image bucket
    assert summary['canvases']['GrabCut'] == [600, 488]
    d = summary['datasets']['GrabCut']
    assert d['clicks'] >= 6
    assert 1.0 < d['flops_ratio'] <= 1.2, d['flops_ratio']
    records = [json.loads(line) for line in (out / 'GrabCut.jsonl').read_text().splitlines()]
    assert sum(f[0] for r in records for f in r['flops']) == d['flops_executed']


def test_dense_flops_of_a_click(api_model):
    """The counted convolutions of an r34 flip-pair forward at 400x400 are the reference's
    242.6 GFLOP; a canvas costs what its own size costs, and an f-BRS-B click splits into the
    network before the tap (once) and two passes of the part after it per evaluation."""
    from fbrs_jax.eval.flops import ClickCost
    nobrs = ClickCost(api_model, 'NoBRS', None, 2)
    assert round(nobrs.flops((400, 400)) / 1e8) == 2426
    assert nobrs.flops((401, 400)) > nobrs.flops((400, 400)) and nobrs.flops((400, 267)) < nobrs.flops((400, 288))
    fbrs = ClickCost(api_model, 'feature', 'after_aspp', 2)
    pre, post = 2 * fbrs.pre.flops((400, 400)), 2 * fbrs.post.flops((400, 400))
    assert pre + post == nobrs.flops((400, 400)) and 0 < post < pre / 50
    assert fbrs.flops((400, 400), evals=5) == pre + 10 * post
    assert fbrs.flops((400, 400), evals=0, recompute=False) == 2 * post


def test_widened_programs_take_clicks_of_smaller_canvases(api_model):
    """``widen``: four lanes on one device, NoBRS, eight images of eight sizes on 16-pixel
    buckets. Programs that their own clicks do not fill take clicks of smaller canvases (up to
    2x their pixels), so fewer, fuller programs run; the clicks' numbers stay the same up to
    rounding, and every click's executed FLOPs are those of the program it ran in."""
    import fbrs_jax
    from fbrs_jax.data.readers import Sample
    from fbrs_jax.eval.batched import BatchedEvaluator
    data = samples()
    for k, (h, w) in enumerate([(33, 47), (50, 30), (62, 62)]):
        rng = np.random.default_rng(k)
        gt = np.zeros((h, w), np.int32)
        gt[h // 5:4 * h // 5, w // 4:3 * w // 4] = 1
        data.append(Sample(f'x{k}', rng.integers(0, 255, (h, w, 3), np.uint8), gt))
    new = lambda: fbrs_jax.make_predictor(api_model, 'NoBRS', zoom_in={'target_size': 64, 'min_crop_size': 16},
                                          canvas=(64, 64), canvas_step=16)
    runs = {w: BatchedEvaluator(new(), 4, jax.local_devices()[:1], widen=w).evaluate(data, 3, 0.99, 0.49)
            for w in (None, 2.0)}
    programs = {w: sum(1 / n for r in rs for n in r['lanes']) for w, rs in runs.items()}
    assert programs[2.0] < programs[None], programs
    for own, wide in zip(runs[None], runs[2.0]):
        assert len(own['ious']) == len(wide['ious'])
        np.testing.assert_allclose(own['ious'], wide['ious'], atol=2e-3)
        # executed: the program's lanes x its canvas, shared out; exact: the click's own size
        assert [f[1] for f in own['flops']] == [f[1] for f in wide['flops']]
    executed = {w: sum(f[0] for r in rs for f in r['flops']) for w, rs in runs.items()}
    assert executed[2.0] != executed[None]
