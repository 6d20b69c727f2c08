"""One forward, resumable from any tap and editable at any tap (what BRS builds on)."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from fbrs_jax.models.arch import RELEASED
from fbrs_jax.models.model import build_module
from fbrs_jax.models.taps import carry_names, tap_names


@pytest.fixture(scope='module')
def small_r34():
    module = build_module(RELEASED['resnet34_dh128'])
    img = jnp.asarray(np.random.RandomState(0).randn(1, 40, 56, 3), jnp.float32)
    pts = jnp.asarray([[[20, 20], [5, 40], [-1, -1], [-1, -1]]], jnp.float32)
    variables = module.init(jax.random.PRNGKey(0), img, pts)
    full = module.apply(variables, img, pts)  # op by op, like the resumed passes below
    return module, variables, img, pts, full


def test_carry_names_follow_the_reference_caches():
    stages = build_module(RELEASED['resnet34_dh128']).STAGES
    assert carry_names(stages, 'c4') == ('c4', 'skip_c1', 'image')        # f-BRS-A caches projected c1
    assert carry_names(stages, 'after_aspp') == ('after_aspp', 'image')   # f-BRS-B
    assert carry_names(stages, 'after_deeplab') == ('after_deeplab', 'image')
    with pytest.raises(ValueError, match='unknown tap'):
        carry_names(stages, 'nope')


@pytest.mark.parametrize('tap', ['rgb_conv', 'c3', 'c4', 'after_aspp', 'deeplab_sep2', 'after_deeplab', 'head_sep1'])
def test_resume_from_tap_equals_full_forward(small_r34, tap):
    module, variables, img, pts, full = small_r34
    carry = {k: full[k] for k in carry_names(module.STAGES, tap)}
    resumed = module.apply(variables, carry=carry, start=tap)
    np.testing.assert_array_equal(np.asarray(resumed['logits']), np.asarray(full['logits']))
    names = tap_names(module.STAGES)
    recomputed = [n for n in names[:names.index(tap)] if n in resumed and n not in carry]
    assert recomputed == []  # nothing before the tap runs again


def test_edits_apply_scale_and_bias(small_r34):
    module, variables, img, pts, full = small_r34
    carry = {k: full[k] for k in carry_names(module.STAGES, 'after_aspp')}
    identity = module.apply(variables, carry=carry, start='after_aspp', edits={'after_aspp': lambda f: f * 1.0 + 0.0})
    np.testing.assert_array_equal(np.asarray(identity['logits']), np.asarray(full['logits']))
    shifted = module.apply(variables, carry=carry, start='after_aspp', edits={'after_aspp': lambda f: f + 1.0})
    assert not np.allclose(np.asarray(shifted['logits']), np.asarray(full['logits']))
    # an input edit (RGB-BRS style) goes through the same path
    edited = module.apply(variables, img, pts, edits={'image': lambda x: x + 0.0})
    np.testing.assert_array_equal(np.asarray(edited['logits']), np.asarray(full['logits']))
    with pytest.raises(ValueError, match='unknown taps'):
        module.apply(variables, img, pts, edits={'bogus': lambda x: x})


def test_tap_names_cover_the_insertion_points():
    for arch in RELEASED.values():
        names = tap_names(build_module(arch).STAGES)
        for tap in arch.fbrs_taps.values():
            assert tap in names
        assert names[-1] == 'logits'


def test_bfloat16_precision_rounds_the_convolution_operands(small_r34):
    """'bfloat16': every dense convolution takes bfloat16 operands and accumulates in float32, so
    the logits move by about bfloat16's relative precision (2^-8) and stay float32."""
    module, variables, img, pts, full = small_r34
    half = build_module(RELEASED['resnet34_dh128'], 'bfloat16').apply(variables, img, pts)['logits']
    assert half.dtype == jnp.float32
    err = float(jnp.abs(half - full['logits']).max()) / float(jnp.abs(full['logits']).max())
    assert 1e-4 < err < 5e-2, err
