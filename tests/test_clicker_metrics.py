"""Clicker rules (ties, borders, ignore band, degenerate case) and NoC / NoF / SPC arithmetic."""
import pathlib

import numpy as np

from fbrs_jax.clicks import Click
from fbrs_jax.eval.clicker import Clicker
from fbrs_jax.eval.metrics import iou, mean_iou_curve, noc, summarize


def test_first_click_is_the_object_centre_with_border_as_background():
    gt = np.zeros((7, 9), np.int64)
    gt[:, 2:7] = 1  # touches the top and bottom border: the border counts as background
    c = Clicker(gt).make_next_click(np.zeros_like(gt, bool))
    assert c == Click(2, 4, True)  # distance 3 at rows 2-4 of column 4; the first one wins


def test_ties_are_negative_and_first_in_row_major_order():
    gt = np.zeros((5, 10), np.int64)
    gt[1:4, 1:4] = 1                       # FN square, max distance 2 at (2, 2)
    pred = np.zeros((5, 10), bool)
    pred[1:4, 6:9] = True                  # FP square of the same size
    c = Clicker(gt).make_next_click(pred)
    assert c == Click(2, 7, False)         # equal maxima -> negative click (strict >)
    gt2 = np.zeros((3, 8), np.int64)
    gt2[1, 1:7] = 1                        # a 1-pixel line: every pixel has distance 1
    assert Clicker(gt2).make_next_click(np.zeros((3, 8), bool)) == Click(1, 1, True)


def test_ignore_band_and_clicked_pixels():
    gt = np.zeros((9, 9), np.int64)
    gt[2:7, 2:7] = 1
    gt[2:7, 2] = -1                        # ignore column: neither error nor border of one
    clicker = Clicker(gt)
    first = clicker.make_next_click(np.zeros((9, 9), bool))
    assert first == Click(3, 4, True)      # the ignore column bounds the error region like background
    # predicting only the clicked pixel wrong again: it cannot be clicked twice
    pred = np.zeros((9, 9), bool)
    pred[2:7, 3:7] = True
    pred[first.row, first.col] = False
    second = clicker.make_next_click(pred)
    assert (second.row, second.col) != (first.row, first.col)


def test_degenerate_case_clicks_negative_at_origin():
    gt = np.zeros((4, 4), np.int64)
    c = Clicker(gt).make_next_click(np.zeros((4, 4), bool))  # nothing wrong at all (T25)
    assert c == Click(0, 0, False)


def test_iou_with_ignore():
    gt = np.array([[1, 1, -1, 0]])
    assert iou(gt, np.array([[1, 0, 1, 1]], bool)) == 1 / 3


def test_noc_thresholds_act_in_float32():
    assert noc([0.5, 0.85, 0.9], 0.8500000000000001) == 2     # exact 0.85 counts (T14)
    assert noc([0.5, np.float32(0.9)], 0.9000000000000001) == 2
    assert noc([0.1] * 5, 0.9) == 20
    s = summarize([[0.5, 0.9], [0.1] * 20], elapsed_s=4.4)
    assert s['NoC@90'] == 11 and s['NoF@90'] == 1 and s['clicks'] == 22 and s['SPC'] == 0.2
    np.testing.assert_allclose(mean_iou_curve([[0.5, 0.9]], 3), [0.5, 0.9, 0.9])


def test_warm_latency_leaves_out_clicks_that_compiled():
    from fbrs_jax.eval.evaluate import dataset_summary
    records = [{'ious': [0.5, 0.95], 'evals': [0, 3], 'seconds': [30.0, 0.2], 'cold': [1, 0], 'wall_s': 30.3},
               {'ious': [0.4, 0.6, 0.92], 'evals': [0, 2, 4], 'seconds': [0.1, 9.0, 0.3], 'cold': [0, 1, 0],
                'wall_s': 9.5}]
    s = dataset_summary(records, max_clicks=20)
    assert np.isclose(s['warm_s_per_click'], 0.2)
    assert np.isclose(s['predictor_s_per_click'], 39.6 / 5)
    assert s['cpu_steal'] is None     # records written before steal was measured
    assert 'lanes_per_program' not in s and 'host_s_per_lane_click' not in s   # sequential host-solver records


def test_batched_summary_counts_programs_and_host_work():
    from fbrs_jax.eval.evaluate import dataset_summary
    # three programs: one of 4 lanes (the first clicks), one of 2, one of 1 (warm; None: compiled)
    records = [{'ious': [0.5, 0.6], 'evals': [0, 2], 'seconds': [1.0, 1.0], 'wall_s': 1.0, 'lanes': [4, 2],
                'host_s': [None, 0.002], 'wait_s': [None, 0.001]},
               {'ious': [0.5, 0.7, 0.8], 'evals': [0, 2, 2], 'seconds': [1.0, 1.0, 1.0], 'wall_s': 1.0,
                'lanes': [4, 2, 1], 'host_s': [None, 0.002, 0.004], 'wait_s': [None, 0.001, 0.003]}]
    records += [{'ious': [0.5], 'evals': [0], 'seconds': [1.0], 'wall_s': 1.0, 'lanes': [4], 'host_s': [None],
                 'wait_s': [None]}] * 2
    s = dataset_summary(records, max_clicks=20)
    assert np.isclose(s['lanes_per_program'], 7 / 3)      # 7 lane-clicks in 3 programs
    assert np.isclose(s['host_s_per_lane_click'], 0.008 / 3)
    assert np.isclose(s['host_wait_s_per_lane_click'], 0.005 / 3)


def test_cpu_steal_is_the_hypervisors_share_weighted_by_wall_time():
    from fbrs_jax.eval.evaluate import dataset_summary
    from fbrs_jax.eval.runinfo import cpu_ticks, steal_fraction
    assert steal_fraction((10, 1000), (70, 1200)) == 0.3
    assert steal_fraction(None, (70, 1200)) is None and steal_fraction((10, 1000), (10, 1000)) is None
    if pathlib.Path('/proc/stat').exists():
        stolen, total = cpu_ticks()
        assert 0 <= stolen <= total and total > 0
    records = [{'ious': [0.95], 'evals': [0], 'seconds': [1.0], 'wall_s': 3.0, 'cpu_steal': 0.5},
               {'ious': [0.95], 'evals': [0], 'seconds': [1.0], 'wall_s': 1.0, 'cpu_steal': 0.1},
               {'ious': [0.95], 'evals': [0], 'seconds': [1.0], 'wall_s': 5.0}]
    assert np.isclose(dataset_summary(records, max_clicks=20)['cpu_steal'], (1.5 + 0.1) / 4)


def test_device_clicker_places_the_host_clickers_clicks():
    """``next_click`` (exact squared distances on the device, on a canvas bigger than the image)
    against ``Clicker`` over random masks with an ignore band, clicked pixels and ties."""
    import jax
    from fbrs_jax.eval.clicker import next_click
    step = jax.jit(next_click)
    rng = np.random.default_rng(0)
    for k in range(12):
        h, w = rng.integers(5, 40, 2)
        gt = np.zeros((h, w), np.int64)
        r0, c0 = rng.integers(0, h), rng.integers(0, w)
        gt[r0:r0 + rng.integers(1, h), c0:c0 + rng.integers(1, w)] = 1
        if k % 3 == 0:
            gt[:, rng.integers(0, w)] = -1
        clicker = Clicker(gt)
        canvas = (48, 48)
        pad = lambda a, v: np.pad(a, ((0, canvas[0] - h), (0, canvas[1] - w)), constant_values=v)
        not_clicked = np.ones(canvas, bool)
        for _ in range(4):
            pred = rng.random((h, w)) < rng.random() if k % 2 else np.zeros((h, w), bool)
            expected = clicker.make_next_click(pred)
            click, not_clicked = step(pad(gt == 1, False), pad(gt != -1, False), pad(pred, False), not_clicked)
            assert Click(int(click[0]), int(click[1]), bool(click[2])) == expected
