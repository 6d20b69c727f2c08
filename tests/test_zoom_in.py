"""ZoomIn arithmetic (SPEC §2.5): rounding, ROI update rules, click mapping, paste-back."""
import numpy as np

from fbrs_jax.clicks import Click
from fbrs_jax.inference.predictor import points_nd
from fbrs_jax.models.canvas import paste
from fbrs_jax.inference.zoom_in import (ZoomIn, ZoomInParams, ZoomState, bbox_iou, clicks_inside, expand_bbox,
                                        mask_box, object_roi, roi_size, transform_clicks)


def test_expand_bbox_rounds_half_to_even():
    # centre 10.5, height 1.4 * 6 = 8.4 -> 6.3 / 14.7 ; min size wins when larger
    assert expand_bbox((8, 13, 0, 1), 1.4) == (6, 15, -1, 2)
    assert expand_bbox((0, 0, 0, 0), 1.0, 3) == (-2, 2, -2, 2)       # round(-1.5) = -2, round(1.5) = 2
    assert expand_bbox((1, 2, 1, 2), 1.0, 3) == (0, 3, 0, 3)         # round(0.0), round(3.0)
    assert roi_size((0, 99, 0, 49), 400) == (400, 200)
    assert roi_size((0, 2, 0, 4), 4) == (2, 4)                       # 2.4 -> 2 ; 4


def test_object_roi_and_update_rules():
    mask = np.zeros((300, 300), bool)
    mask[100:120, 100:130] = True
    roi = object_roi(mask_box(mask), mask.shape, [Click(150, 150, True)], 1.4, 200)
    assert roi == (25, 225, 25, 225)
    # click exactly on rmax counts as outside (>=)
    assert clicks_inside(roi, [Click(224, 30, True)])
    assert not clicks_inside(roi, [Click(225, 30, True)])
    assert clicks_inside(roi, [Click(299, 299, False)])               # negatives never force an update
    assert bbox_iou((0, 9, 0, 9), (5, 14, 0, 9)) == 5 / 15


def test_zoom_state_machine():
    z = ZoomIn(ZoomInParams(target_size=100, min_crop_size=20))
    s = ZoomState()
    assert z.decide(s, [Click(5, 5, True)], (60, 80)) == (s, False, False)          # skip_clicks = 1
    probs = np.zeros((60, 80), np.float32)
    probs[10:20, 10:30] = 0.9
    s = s._replace(prev_box=mask_box(probs > z.params.prob_thresh))
    assert s.prev_box == (10, 19, 10, 29)
    clicks = [Click(15, 15, True), Click(40, 70, False)]
    s, zoomed, changed = z.decide(s, clicks, (60, 80))
    assert (zoomed, changed, s.roi, s.roi_hw) == (True, True, (4, 24, 6, 34), (72, 100))
    assert z.decide(s, clicks, (60, 80)) == (s, True, False)                         # same ROI kept
    s = s._replace(prev_box=mask_box(np.zeros((60, 80), bool)))
    assert s.prev_box is None
    assert z.decide(s, clicks, (60, 80)) == (s, False, False) and s.roi == (4, 24, 6, 34)   # stale ROI kept (T13)


def test_click_mapping_and_paste_back():
    t = transform_clicks((10, 19, 20, 39), (50, 100), [Click(20, 20, True), Click(5, 45, False)])
    assert t == [Click(50.0, 0.0, True), Click(-25.0, 125.0, False)]
    probs = np.ones((4, 6), np.float32)
    full = np.asarray(paste(probs[..., None], (4, 6), (1, 2, 2, 4), (5, 7))[..., 0])
    assert full.sum() == 6 and full[1:3, 2:5].min() == 1


def test_points_nd_layout():
    clicks = [Click(1, 2, True), Click(3, 4, False), Click(5, 6, True), Click(7, 8, True)]
    pts = points_nd([clicks], net_clicks_limit=None)
    np.testing.assert_array_equal(pts[0], [[1, 2], [5, 6], [7, 8], [3, 4], [-1, -1], [-1, -1]])
    limited = points_nd([clicks], net_clicks_limit=2)                  # first two clicks only, K = 2
    np.testing.assert_array_equal(limited[0], [[1, 2], [-1, -1], [3, 4], [-1, -1]])
