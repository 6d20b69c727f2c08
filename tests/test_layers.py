"""The convolution forms used for speed equal the plain XLA convolutions (values and gradients)."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from fbrs_jax.models.layers import _conv, conv_stride1, depthwise3x3


@pytest.mark.parametrize('k,padding,dilation', [(3, 1, 1), (3, 2, 2), (3, 12, 12), (1, 0, 1), (5, 2, 1)])
def test_custom_vjp_conv_equals_autodiff(k, padding, dilation):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (2, 17, 13, 6))
    w = jax.random.normal(kw, (k, k, 6, 5))
    g = jax.random.normal(kg, (2, 17, 13, 5))
    ref_y, ref_vjp = jax.vjp(lambda x, w: _conv(x, w, 1, padding, dilation, 1, 'highest'), x, w)
    y, vjp = jax.vjp(lambda x, w: conv_stride1(x, w, padding, dilation, 'highest'), x, w)
    np.testing.assert_array_equal(y, ref_y)
    for a, b in zip(vjp(g), ref_vjp(g)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


def test_depthwise_as_shifted_adds():
    kx, kw = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(kx, (2, 11, 9, 7))
    w = jax.random.normal(kw, (3, 3, 1, 7))
    ref = _conv(x, w, 1, 1, 1, 7, 'highest')
    np.testing.assert_allclose(depthwise3x3(x, w), ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))
    gx = jax.grad(lambda x: jnp.sum(depthwise3x3(x, w) ** 2))(x)
    gref = jax.grad(lambda x: jnp.sum(_conv(x, w, 1, 1, 1, 7, 'highest') ** 2))(x)
    np.testing.assert_allclose(gx, gref, rtol=1e-5, atol=1e-5 * float(jnp.abs(gref).max()))


def test_custom_vjp_conv_input_gradient_alone():
    """Differentiating the input only (BRS) gives the same input gradient, with no kernel
    gradient formed."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 9, 11, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 4, 5)), jnp.float32)
    loss = lambda f: lambda x: jnp.sum(jnp.sin(f(x)))
    ours = jax.grad(loss(lambda x: conv_stride1(x, w, 2, 2, 'highest')))(x)
    ref = jax.grad(loss(lambda x: _conv(x, w, 1, 2, 2, 1, 'highest')))(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-5)
    jaxpr = str(jax.make_jaxpr(jax.vmap(jax.grad(loss(lambda x: conv_stride1(x, w, 2, 2, 'highest')))))(x[:, None]))
    assert jaxpr.count('conv_general_dilated') == 2 and 'feature_group_count=2' not in jaxpr
