"""Align-corners resize against torch outputs, distance maps against a NumPy transcription of SPEC §1.2."""
import numpy as np
import pytest

from conftest import FIXTURES
from fbrs_jax.models.canvas import resize_ac
from fbrs_jax.models.ops import dist_maps


def test_resize_matches_torch_align_corners():
    d = np.load(FIXTURES / 'resize_torch.npz')
    n = len([k for k in d.files if k.endswith('_in')])
    assert n == 8
    for i in range(n):
        x, ref = d[f'resize{i}_in'], d[f'resize{i}_out']
        ours = np.asarray(resize_ac(np.transpose(x, (0, 2, 3, 1)), ref.shape[2:]))
        # torch's own float32 arithmetic is followed exactly; only the lerp's fused rounding may differ.
        np.testing.assert_allclose(ours, np.transpose(ref, (0, 2, 3, 1)), rtol=0, atol=2e-6, err_msg=f'case {i}')


def test_resize_identity_and_broadcast():
    x = np.random.RandomState(1).randn(2, 5, 7, 3).astype(np.float32)
    assert np.array_equal(np.asarray(resize_ac(x, (5, 7))), x)
    one = x[:, :1, :1]
    np.testing.assert_array_equal(np.asarray(resize_ac(one, (4, 6))), np.broadcast_to(one, (2, 4, 6, 3)))


def _dist_maps_numpy(points, h, w, radius=260.0):
    b, n2, _ = points.shape
    k = n2 // 2
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing='ij')
    out = np.empty((b, h, w, 2))
    for bi in range(b):
        for g in range(2):
            best = np.full((h, w), 1e6)
            for p in points[bi, g * k:(g + 1) * k]:
                if max(p[0], p[1]) < 0:
                    continue
                best = np.minimum(best, ((rows - p[0]) / radius) ** 2 + ((cols - p[1]) / radius) ** 2)
            out[bi, :, :, g] = np.tanh(2 * np.sqrt(best))
    return out


def test_dist_maps_rules():
    # padding (-1,-1), a point with one negative coordinate (still a real point), off-image points
    pts = np.array([[[3, 4], [-1, -1], [-1, -1], [0, 9]],
                    [[-5, 2], [12, 30], [-1, -1], [-1, -1]]], np.float32)
    ours = np.asarray(dist_maps(pts, (10, 12)))
    ref = _dist_maps_numpy(pts.astype(np.float64), 10, 12)
    np.testing.assert_allclose(ours, ref, atol=2e-6)
    assert ours[0, 3, 4, 0] == 0.0
    # a group with only padding is exactly 1 everywhere
    assert np.all(ours[1, :, :, 1] == 1.0)
    assert ours[1, 0, 2, 0] < 1.0  # (-5, 2) counts although its row is negative


@pytest.mark.parametrize('hw', [(1, 1), (7, 3)])
def test_dist_maps_shapes(hw):
    pts = np.array([[[0, 0], [-1, -1]]], np.float32)
    assert dist_maps(pts, hw).shape == (1, *hw, 2)
