"""BRS objective against the reference functor fixtures (objective, gradient, early-exit inputs).

Gradient tolerance 1e-3 of max |g|: our float32 gradient equals a float64 evaluation of the
same objective to 2.5e-7, while the reference's float32 gradient differs from that float64
value by 3.4e-4 (RGB-BRS at x0) - the tolerance covers the reference's own rounding.
"""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from conftest import REFERENCE, requires_shared
from fbrs_jax.brs.objective import TapVariables, click_masks, clicks_satisfied, make_objective
from fbrs_jax.eval.clicker import Click
from fbrs_jax.inference.predictor import flip_clicks, points_nd


@requires_shared
@pytest.mark.parametrize('mode,tap,channels', [('RGB-BRS', 'image', 3), ('DistMap-BRS', 'dist_maps', 2)])
def test_input_brs_objective_and_gradient(r34_model, mode, tap, channels):
    f = np.load(REFERENCE / 'r34_trained' / f'functor_resnet34_dh128_{mode}_fwd_a.npz')
    clicks = [Click(float(r), float(c), bool(p)) for r, c, p in f['clicks']]
    image = jnp.asarray(np.transpose(f['input'][0], (1, 2, 0)))
    hw = image.shape[:2]
    lists = [clicks, flip_clicks(clicks, hw[1])]
    pts = points_nd(lists, 5)
    np.testing.assert_array_equal(pts, f['points_nd'])
    pos, neg = click_masks(lists, hw)
    values = {'image': jnp.stack([image, image[:, ::-1]]), 'points': jnp.asarray(pts, jnp.float32)}
    refine = TapVariables(tap, channels, 'pixel', 'none', hw, reg_bias_weight=1.0)
    objective = make_objective(r34_model.module, r34_model.variables, refine, values, None, pos, neg)
    value_and_grad = jax.jit(jax.value_and_grad(objective, has_aux=True))
    for i, x in enumerate([np.zeros(refine.size, np.float32), f['x1']]):
        (value, aux), grad = value_and_grad(jnp.asarray(x))
        assert abs(float(value) - f['raw_f'][i]) <= 1e-5 * abs(f['raw_f'][i])
        rel = np.abs(np.asarray(grad) - f['raw_g'][i]).max() / np.abs(f['raw_g'][i]).max()
        assert rel <= 1e-3, rel
        np.testing.assert_allclose([aux['f_max_pos'], aux['f_max_neg']], [f['f_max_pos'][i], f['f_max_neg'][i]], rtol=1e-5)
        assert bool(clicks_satisfied(aux)) == bool(f['functor_zero_grad'][i])


def test_click_masks_follow_numpy_slicing():
    h, w = 6, 8
    rows = {}
    for y in (0, -1, -2, -5, -6, -7, -8, 6, 7, 5.5, 4.5):
        pos, _ = click_masks([[Click(y, 3, True)]], (h, w))
        rows[y] = sorted(set(np.nonzero(pos[0, :, :, 0])[0].tolist()))
    assert rows[0] == rows[-1] == rows[-2] == []      # negative start, stop <= 0
    assert rows[-5] == [0, 1, 2]                       # [-6:-3] on 6 rows: a full band (y + H)
    assert rows[-6] == [0, 1] and rows[-7] == [0]      # partial top rows
    assert rows[-8] == []
    assert rows[6] == [5] and rows[7] == []            # y = H marks the last row only
    assert rows[5.5] == [5] and rows[4.5] == [3, 4, 5]  # half-to-even rounding: 6 and 4


@requires_shared
@pytest.mark.parametrize('mode', ['f-BRS-A', 'f-BRS-B', 'f-BRS-C'])
def test_fbrs_objective_matches_the_trace_evaluations(r34_model, mode):
    """First objective evaluation of click 3 of the reference trace (zoomed crop, flip, warm
    start from the click-2 variables): same points and the same value to 1e-5."""
    from fbrs_jax.models.canvas import resize_ac
    from fbrs_jax.inference.zoom_in import transform_clicks
    from fbrs_jax.models.model import normalize
    from fbrs_jax.models.taps import carry_names
    folder = REFERENCE / 'r34_trained'
    trace = np.load(folder / f'trace_resnet34_dh128_{mode}_pub_ring.npz')
    image = jnp.asarray(normalize(np.load(folder / 'trace_images.npz')['pub_ring__image']))
    k = 2
    clicks = [Click(int(r), int(c), bool(p)) for r, c, p in trace['clicks'][:k + 1]]
    roi = tuple(int(v) for v in trace['roi'][k])
    hw = tuple(int(v) for v in trace['net_input_hw'][k])
    crop = resize_ac(image[None, roi[0]:roi[1] + 1, roi[2]:roi[3] + 1], hw)[0]
    zoomed = transform_clicks(roi, hw, clicks)
    lists = [zoomed, flip_clicks(zoomed, hw[1])]
    pts = points_nd(lists, 8)
    np.testing.assert_allclose(pts, trace['net_points'][k][:, :pts.shape[1]], atol=2e-5)
    pos, neg = click_masks(lists, hw)
    tap = r34_model.arch.fbrs_taps[mode]
    out = r34_model.apply(jnp.stack([crop, crop[:, ::-1]]), jnp.asarray(pts, jnp.float32), stop=tap)
    values = {n: out[n] for n in carry_names(r34_model.module.STAGES, tap)}
    objective = make_objective(r34_model.module, r34_model.variables, TapVariables(tap, out[tap].shape[-1]),
                               values, tap, pos, neg)
    value, _ = jax.jit(objective)(jnp.asarray(trace['opt_data'][k - 1], jnp.float32))
    ref = trace['fun_values'][trace['fun_offsets'][k]]
    assert abs(float(value) - ref) <= 1e-5 * abs(ref), (float(value), ref)
