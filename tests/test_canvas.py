"""Fixed canvases with the valid extent as data: the same numbers as the exact-shape forward.

A model traced on a larger canvas with ``extent`` must meet the reference parity tolerance of
``test_parity.py`` on the valid region, and (DeepLab) give the exact-shape forward there: only
summation order may differ, 1e-5 of the tensor's range.
"""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from conftest import REFERENCE, nhwc, requires_shared
import fbrs_jax
from fbrs_jax.models import canvas

CANVAS_TOL = 1e-5


def _pad(image, hw):
    out = np.zeros((*hw, image.shape[-1]), image.dtype)
    out[:image.shape[0], :image.shape[1]] = image
    return out


def _level_extent(full_hw, shape_hw, canvas_hw):
    for k in range(8):
        d = 2 ** k
        if (-(-canvas_hw[0] // d), -(-canvas_hw[1] // d)) == tuple(shape_hw):
            return -(-full_hw[0] // d), -(-full_hw[1] // d)
    raise AssertionError(shape_hw)


def _canvas_vs_exact(model, fixture, canvas_hw, taps, exact=True):
    d = np.load(fixture)
    image = fbrs_jax.normalize(d['image_uint8'])
    hw = image.shape[:2]
    run = jax.jit(lambda v, i, p, e: model.module.apply(v, i, p, extent=e))
    ours = run(model.variables, _pad(image, canvas_hw)[None], d['points'], jnp.asarray(hw, jnp.int32))
    if exact:
        exact = jax.jit(lambda v, i, p: model.module.apply(v, i, p))(model.variables, image[None], d['points'])
    for ref_name, name in taps.items():
        ref = nhwc(d[ref_name])
        h, w = _level_extent(hw, ours[name].shape[1:3], canvas_hw) if ref.shape[1] > 1 else (1, 1)
        c = np.asarray(ours[name])[:, :h, :w]
        assert c.shape == ref.shape, name
        assert np.abs(c - ref).max() <= 1e-4 * np.abs(ref).max(), name
        if exact:
            e = np.asarray(exact[name])
            scale = np.abs(e).max()
            assert np.abs(c - e).max() <= CANVAS_TOL * scale, (name, np.abs(c - e).max() / scale)


@requires_shared
def test_deeplab_on_a_canvas(r34_model):
    from test_parity import R34_TAPS
    _canvas_vs_exact(r34_model, REFERENCE / 'r34_trained' / 'forward_resnet34_dh128_fwd_a_320x480.npz',
                     (352, 520), R34_TAPS)


@requires_shared
def test_hrnet_on_a_canvas(hrnet_model):
    from test_parity import HRNET_TAPS
    # against the reference only (the exact-shape HRNet forward is test_parity's; compiling it
    # again here would double the cost)
    _canvas_vs_exact(hrnet_model, REFERENCE / 'hrnet18_random' / 'forward_hrnet18_ocr64_fwd_a_320x480.npz',
                     (384, 512), HRNET_TAPS, exact=False)


def _static_crop_resize(image, box, out_hw):
    rmin, rmax, cmin, cmax = box
    return canvas.resize_ac(image[None, rmin:rmax + 1, cmin:cmax + 1], out_hw)[0]


@pytest.mark.parametrize('box,out_hw', [((3, 40, 5, 60), (30, 41)), ((0, 49, 0, 69), (50, 70)),
                                        ((10, 12, 7, 30), (40, 70))])
def test_crop_resize_and_paste_with_traced_boxes(box, out_hw):
    rng = np.random.default_rng(0)
    image = rng.standard_normal((50, 70, 3)).astype(np.float32)
    canvas_hw = (72, 80)
    crop = jax.jit(canvas.crop_resize, static_argnums=2)(
        _pad(image, canvas_hw), jnp.asarray(box), canvas_hw, jnp.asarray(out_hw))
    # Same float32 weights; XLA may contract the lerp into an FMA in one program and not the
    # other, so the two agree to an ulp (test_ops allows 2e-6 against torch for the same reason).
    np.testing.assert_allclose(np.asarray(crop)[:out_hw[0], :out_hw[1]],
                               np.asarray(_static_crop_resize(image, box, out_hw)), rtol=0, atol=1e-6)
    probs = rng.random(out_hw).astype(np.float32)
    pasted = jax.jit(canvas.paste, static_argnums=3)(
        _pad(probs[..., None], canvas_hw)[..., 0], jnp.asarray(out_hw), jnp.asarray(box), (56, 72))
    rmin, rmax, cmin, cmax = box
    roi = canvas.resize_ac(probs[None, :, :, None], (rmax - rmin + 1, cmax - cmin + 1))[0, :, :, 0]
    expected = np.zeros((56, 72), np.float32)
    expected[rmin:rmax + 1, cmin:cmax + 1] = roi
    np.testing.assert_allclose(np.asarray(pasted), expected, rtol=0, atol=1e-6)
    assert np.all(np.asarray(pasted)[expected == 0] == 0)


def test_flip_within_the_extent():
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 6)
    flipped = np.asarray(canvas.flip_w(x, 4, axis=2))
    np.testing.assert_array_equal(flipped[..., :4], x[..., 3::-1])
    np.testing.assert_array_equal(np.asarray(canvas.flip_w(x, 6, axis=2)), x[..., ::-1])


def test_resize_ignores_values_outside_the_extent():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 9, 11, 2)).astype(np.float32)
    garbage = x.copy()
    garbage[:, 5:] = 1e30
    garbage[:, :, 7:] = -1e30
    with canvas.valid_extent((36, 44), jnp.asarray([18, 27])):   # level 2: 9x11, extent 5x7
        ours = canvas.resize_ac(garbage, (36, 44))
    np.testing.assert_allclose(np.asarray(ours)[:, :18, :27], np.asarray(canvas.resize_ac(x[:, :5, :7], (18, 27))),
                               rtol=0, atol=1e-5)
