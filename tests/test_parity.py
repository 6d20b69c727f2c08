"""Forward parity with the reference PyTorch model: every tap of both reference models.

Tolerance: max |ours - ref| <= 1e-4 * max |ref| per tensor (float32; torch folds BatchNorm
and sums convolutions in another order, so bit-exactness is not reachable, SPEC appendix).
"""
import numpy as np
import jax

from conftest import REFERENCE, nhwc, requires_shared
import fbrs_jax

pytestmark = requires_shared
REL_TOL = 1e-4
R34_TAPS = {'dist_maps': 'dist_maps', 'rgb_conv': 'rgb_conv', 'backbone_c1': 'c1', 'backbone_c4': 'c4',
            'skip_c1': 'skip_c1', 'aspp': 'aspp', 'after_aspp': 'after_aspp', 'after_deeplab': 'after_deeplab',
            'logits_lowres': 'logits_lowres', 'logits': 'logits'}
HRNET_TAPS = {'dist_maps': 'dist_maps', 'rgb_conv': 'rgb_conv', 'hrnet_feats': 'hrnet_feats',
              'aux_logits': 'aux_logits', 'ocr_context': 'ocr_context', 'ocr_out': 'ocr_out',
              'logits_lowres': 'logits_lowres', 'logits': 'logits'}


def _forward(model, fixture):
    d = np.load(fixture)
    image = fbrs_jax.normalize(d['image_uint8'])
    np.testing.assert_array_equal(image, nhwc(d['input'])[0])  # normalisation is exact
    out = jax.jit(lambda v, i, p: model.module.apply(v, i, p))(model.variables, image[None], d['points'])
    return d, out


def _check_taps(d, out, taps):
    errors = {}
    for ref_name, ours_name in taps.items():
        ref = nhwc(d[ref_name])
        ours = np.asarray(out[ours_name])
        assert ours.shape == ref.shape, ref_name
        errors[ref_name] = float(np.abs(ours - ref).max() / np.abs(ref).max())
    print({k: f'{v:.1e}' for k, v in errors.items()})
    assert max(errors.values()) <= REL_TOL, errors


def test_r34_every_tap(r34_model):
    d, out = _forward(r34_model, REFERENCE / 'r34_trained' / 'forward_resnet34_dh128_fwd_a_320x480.npz')
    _check_taps(d, out, R34_TAPS)
    np.testing.assert_array_equal(np.asarray(r34_model.logits(fbrs_jax.normalize(d['image_uint8'])[None], d['points'])),
                                  np.asarray(out['logits']))


def test_hrnet_every_tap(hrnet_model):
    d, out = _forward(hrnet_model, REFERENCE / 'hrnet18_random' / 'forward_hrnet18_ocr64_fwd_a_320x480.npz')
    _check_taps(d, out, HRNET_TAPS)


def test_parameter_totals(r34_model, hrnet_model):
    # SPEC §9.1
    assert (r34_model.num_values, r34_model.num_params) == (23_361_100, 23_341_692)
    assert (hrnet_model.num_values, hrnet_model.num_params) == (10_058_665, 10_022_765)
    assert hrnet_model.arch.name == 'hrnet18_ocr64' and r34_model.arch.name == 'resnet34_dh128'
