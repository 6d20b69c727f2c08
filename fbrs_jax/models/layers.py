"""Building blocks whose parameter names mirror the reference state-dict layout.

Every module is named after its PyTorch counterpart (``"0"``, ``"conv1"``, ``"bn1"`` ...), so a
state-dict key ``a.b.0.weight`` lands at Flax path ``('a', 'b', '0', 'kernel'|'scale')``.
Convolutions use explicit symmetric padding (SPEC §1.9), zero their input outside the valid
extent when traced on a canvas (``canvas.py``), and use the ``precision`` given by the
model (``'highest'`` by default: on GPUs the default would be TF32; ``'bfloat16'`` rounds the
operands of every dense convolution to bfloat16 and accumulates in float32).
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import flax.linen as nn
from jax import lax

from .canvas import zero_invalid


def xavier_gauss_magnitude2(key, shape, dtype=jnp.float32):
    """N(0, 2 / ((fan_in + fan_out) / 2)) with PyTorch fans for an HWIO kernel (SPEC §5.1)."""
    kh, kw, in_per_group, out = shape
    receptive = kh * kw
    fan_in, fan_out = in_per_group * receptive, out * receptive
    std = (2.0 / ((fan_in + fan_out) / 2.0)) ** 0.5
    return std * jax.random.normal(key, shape, dtype)


def _conv(x, kernel, stride, padding, dilation, groups, precision):
    out_dtype = None
    if precision == 'bfloat16':    # mixed precision: bfloat16 operands, float32 accumulation and result
        x, kernel, precision, out_dtype = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), None, x.dtype
    return lax.conv_general_dilated(
        x, kernel, window_strides=(stride, stride), padding=((padding, padding), (padding, padding)),
        rhs_dilation=(dilation, dilation), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
        feature_group_count=groups, precision=precision, preferred_element_type=out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_stride1(x, kernel, padding, dilation, precision):
    """Stride-1 dense convolution whose input gradient is written as a forward convolution with
    the pre-flipped, in/out-swapped kernel. Same numbers as autodiff; XLA:CPU otherwise takes
    a slow path (3.6-3.8x) for the transposed convolution inside ``lax.while_loop``. The kernel
    gradient is formed only when the kernel is differentiated (training, not BRS): under
    ``vmap`` it would be a grouped convolution that the SPMD partitioner rejects."""
    return _conv(x, kernel, 1, padding, dilation, 1, precision)


def _conv_stride1_fwd(x, kernel, padding, dilation, precision):
    y = _conv(x.value, kernel.value, 1, padding, dilation, 1, precision)
    return y, (x.value if kernel.perturbed else None, kernel.value)


def _conv_stride1_bwd(padding, dilation, precision, residuals, g):
    x, kernel = residuals
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        return None, None
    k = kernel.shape[0]
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _conv(g, flipped, 1, dilation * (k - 1) - padding, dilation, 1, precision)
    if x is None:
        return dx, None
    _, kernel_vjp = jax.vjp(lambda w: _conv(x, w, 1, padding, dilation, 1, precision), kernel)
    return dx, kernel_vjp(g)[0]


conv_stride1.defvjp(_conv_stride1_fwd, _conv_stride1_bwd, symbolic_zeros=True)


def depthwise3x3(x, kernel):
    """Depthwise 3x3 convolution (stride 1, padding 1) as nine shifted multiply-adds: XLA:CPU's
    grouped convolution is ~46x slower than this on the reference's separable heads."""
    h, w = x.shape[1:3]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = None
    for i in range(3):
        for j in range(3):
            term = xp[:, i:i + h, j:j + w, :] * kernel[i, j, 0]
            out = term if out is None else out + term
    return out


class Conv2d(nn.Module):
    """PyTorch-style Conv2d on NHWC input: kernel ``(kh, kw, in/groups, out)``, symmetric padding."""
    features: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    use_bias: bool = False
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x):
        in_ch = x.shape[-1]
        k, p = self.kernel_size, self.padding
        kernel = self.param('kernel', xavier_gauss_magnitude2, (k, k, in_ch // self.groups, self.features))
        kernel = kernel.astype(x.dtype)
        if k > 1:
            x = zero_invalid(x)   # on a canvas, the neighbours outside the image are the zero padding
        if self.groups == in_ch == self.features and (k, self.stride, p, self.dilation) == (3, 1, 1, 1):
            y = depthwise3x3(x, kernel)
        elif self.groups == 1 and self.stride == 1 and k > 1:
            y = conv_stride1(x, kernel, p, self.dilation, self.precision)
        else:
            y = _conv(x, kernel, self.stride, p, self.dilation, self.groups, self.precision)
        if self.use_bias:
            bias = self.param('bias', nn.initializers.zeros, (self.features,))
            y = y + bias.astype(y.dtype)
        return y


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
    """BatchNorm2d(eps=1e-5, momentum=0.1): running statistics at test time, batch statistics in training."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


class ConvBNReLU(nn.Module):
    """``[0] conv (no bias), [1] BN, [2] ReLU`` - the reference's most common Sequential."""
    features: int
    kernel_size: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    relu: bool = True
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv2d(self.features, self.kernel_size, self.stride, self.padding, self.dilation,
                   precision=self.precision, name='0')(x)
        x = batch_norm(train, '1')(x)
        return nn.relu(x) if self.relu else x


class SeparableConv(nn.Module):
    """``body``: [0] depthwise 3x3 (no bias), [1] pointwise 1x1 (no bias), [2] BN, [3] ReLU."""
    features: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool = False):
        in_ch = x.shape[-1]
        body = _Body(self.features, in_ch, self.precision, name='body')
        return body(x, train)


class _Body(nn.Module):
    features: int
    in_ch: int
    precision: Any

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv2d(self.in_ch, 3, padding=1, groups=self.in_ch, precision=self.precision, name='0')(x)
        x = Conv2d(self.features, 1, precision=self.precision, name='1')(x)
        x = batch_norm(train, '2')(x)
        return nn.relu(x)


class RGBConv(nn.Module):
    """Fusion block ``rgb_conv`` (SPEC §1.3): 1x1 5->8 (bias), LeakyReLU(0.2), BN, 1x1 8->3 (bias)."""
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = Conv2d(8, 1, use_bias=True, precision=self.precision, name='0')(x)
        x = nn.leaky_relu(x, 0.2)
        x = batch_norm(train, '2')(x)
        return Conv2d(3, 1, use_bias=True, precision=self.precision, name='3')(x)


def maybe_dropout(x, rate: Optional[float], train: bool, name: str, broadcast_dims=()):
    """Dropout that is the identity at test time (and when rate is 0/None)."""
    if not train or not rate:
        return x
    return nn.Dropout(rate, broadcast_dims=broadcast_dims, deterministic=False, name=name)(x)
