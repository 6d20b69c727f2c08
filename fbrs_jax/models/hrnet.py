"""HRNetV2 + OCR (SPEC §1.7), W18/W32/W48 and the ``small`` variant.

Module names mirror the reference state dict (``stage2.0.branches.0.0.conv1``,
``stage3.0.fuse_layers.2.0.1.0``, ``ocr_distri_head.object_context_block.f_pixel.1.0`` ...).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from .is_model import INPUT_STAGES, ISModel
from .layers import Conv2d, ConvBNReLU, batch_norm, maybe_dropout
from .canvas import masked_logits, resize_ac, zero_invalid
from .resnet import BasicBlock, Bottleneck, ResLayer
from .taps import Stage

OCR_DROPOUT = 0.05


class DownChain(nn.Module):
    """``[k] = conv3x3/2 + BN (+ReLU)``, k = 0..n-1: all but the last keep the input channels."""
    features: int
    num_convs: int
    last_relu: bool
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool):
        in_ch = x.shape[-1]
        for k in range(self.num_convs):
            last = k == self.num_convs - 1
            x = ConvBNReLU(self.features if last else in_ch, 3, 2, 1, relu=self.last_relu or not last,
                           precision=self.precision, name=str(k))(x, train)
        return x


class Transition(nn.Module):
    """``transition{k}``: 3x3 conv+BN+ReLU where a branch's width changes; a new branch is a
    stride-2 conv+BN+ReLU of the last existing one."""
    channels: Sequence[int]
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, xs, train: bool):
        out = []
        for i, c in enumerate(self.channels):
            if i >= len(xs):
                out.append(DownChain(c, 1, True, self.precision, name=str(i))(xs[-1], train))
            elif xs[i].shape[-1] != c:
                out.append(ConvBNReLU(c, 3, 1, 1, precision=self.precision, name=str(i))(xs[i], train))
            else:
                out.append(xs[i])
        return out


class Branches(nn.Module):
    """``branches``: a stack of ``num_blocks`` BasicBlocks per branch."""
    num_blocks: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, xs, train: bool):
        return [ResLayer(BasicBlock, x.shape[-1], self.num_blocks, 1, 1, self.precision, name=str(i))(x, train)
                for i, x in enumerate(xs)]


class FuseRow(nn.Module):
    """``fuse_layers.{i}``: output i = ReLU(sum_j T_ij(x_j)), T_ii = identity; j > i: conv1x1+BN then
    align-corners resize to x_i; j < i: (i - j) stride-2 3x3 convs."""
    i: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, xs, train: bool):
        i, xi = self.i, xs[self.i]
        y = None
        for j, xj in enumerate(xs):
            if j > i:
                t = ConvBNReLU(xi.shape[-1], 1, relu=False, precision=self.precision, name=str(j))(xj, train)
                t = resize_ac(t, xi.shape[1:3])
            elif j < i:
                t = DownChain(xi.shape[-1], i - j, False, self.precision, name=str(j))(xj, train)
            else:
                t = xj
            y = t if y is None else y + t
        return nn.relu(y)


class Fuse(nn.Module):
    """``fuse_layers``: every branch receives all the others."""
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, xs, train: bool):
        return [FuseRow(i, self.precision, name=str(i))(xs, train) for i in range(len(xs))]


class HRModule(nn.Module):
    """One high-resolution module: per-branch BasicBlocks, then multi-scale fusion."""
    num_blocks: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, xs, train: bool):
        xs = Branches(self.num_blocks, self.precision, name='branches')(xs, train)
        return Fuse(self.precision, name='fuse_layers')(xs, train)


class HRStage(nn.Module):
    """``stage{k}``: ``num_modules`` HRModules, all branches kept."""
    num_modules: int
    num_blocks: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, xs, train: bool):
        for m in range(self.num_modules):
            xs = HRModule(self.num_blocks, self.precision, name=str(m))(xs, train)
        return xs


class ConvBiasBNReLU(nn.Module):
    """``[0] conv (bias), [1] BN, [2] ReLU`` and, when ``out`` is set, ``[3] conv1x1 -> out (bias)``."""
    features: int
    kernel_size: int = 1
    padding: int = 0
    out: int = 0
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv2d(self.features, self.kernel_size, padding=self.padding, use_bias=True,
                   precision=self.precision, name='0')(x)
        x = nn.relu(batch_norm(train, '1')(x))
        if self.out:
            x = Conv2d(self.out, 1, use_bias=True, precision=self.precision, name='3')(x)
        return x


class BNReLU(nn.Module):
    """The OCR modules' nested ``Sequential(BN, ReLU)``: the BN is child ``'0'``."""

    @nn.compact
    def __call__(self, x, train: bool):
        return nn.relu(batch_norm(train, '0')(x))


class OCRProj(nn.Module):
    """``[2i] conv1x1 (no bias), [2i+1] BNReLU`` for i < ``num_layers``."""
    features: int
    num_layers: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool):
        for i in range(self.num_layers):
            x = Conv2d(self.features, 1, precision=self.precision, name=str(2 * i))(x)
            x = BNReLU(name=str(2 * i + 1))(x, train)
        return x


class ObjectAttention(nn.Module):
    """``object_context_block`` (scale 1): pixels attend to the object-region contexts."""
    key_channels: int
    out_channels: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, proxy, train: bool):
        b, h, w, _ = x.shape
        kc, p = self.key_channels, self.precision
        query = OCRProj(kc, 2, p, name='f_pixel')(x, train).reshape(b, h * w, kc)
        key = OCRProj(kc, 2, p, name='f_object')(proxy, train).reshape(b, -1, kc)
        value = OCRProj(kc, 1, p, name='f_down')(proxy, train).reshape(b, -1, kc)
        sim = jnp.einsum('bpc,bkc->bpk', query, key, precision=p) * kc ** -0.5
        sim = jax.nn.softmax(sim, axis=-1)
        context = jnp.einsum('bpk,bkc->bpc', sim, value, precision=p).reshape(b, h, w, kc)
        return OCRProj(self.out_channels, 1, p, name='f_up')(context, train)


class SpatialOCR(nn.Module):
    """``ocr_distri_head``: attention context, concat [context, feats], conv1x1+BN+ReLU, Dropout2d."""
    key_channels: int
    out_channels: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, feats, proxy, train: bool):
        p = self.precision
        context = ObjectAttention(self.key_channels, feats.shape[-1], p, name='object_context_block')(
            feats, proxy, train)
        y = OCRProj(self.out_channels, 1, p, name='conv_bn_dropout')(
            jnp.concatenate([context, feats], axis=-1), train)
        return maybe_dropout(y, OCR_DROPOUT, train, 'dropout', broadcast_dims=(1, 2))


def spatial_gather(feats, aux_logits, precision='highest'):
    """``ocr_gather_head``: softmax of the aux logits over all positions, weighted sum of ``feats``.

    (B, H, W, C), (B, H, W, K) -> (B, K, 1, C), the NHWC form of torch's (B, C, K, 1).
    """
    b, h, w, c = feats.shape
    probs = jax.nn.softmax(masked_logits(aux_logits).reshape(b, h * w, -1), axis=1)
    feats = zero_invalid(feats)
    context = jnp.einsum('bpk,bpc->bkc', probs, feats.reshape(b, h * w, c), precision=precision)
    return context[:, :, None, :]


class HRNetOCR(nn.Module):
    """``feature_extractor``: HRNetV2 features and the OCR head, one ``part`` per call."""
    width: int
    ocr_width: int
    small: bool = False
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, part: str, *xs, train: bool = False):
        p, o = self.precision, self.ocr_width
        if part == 'feats':
            return self._feats(xs[0], train)
        if part == 'aux':
            return ConvBiasBNReLU(xs[0].shape[-1], out=1, precision=p, name='aux_head')(xs[0], train)
        if part == 'ocr_feats':
            return ConvBiasBNReLU(2 * o, 3, 1, precision=p, name='conv3x3_ocr')(xs[0], train)
        if part == 'ocr_context':
            return spatial_gather(*xs, precision=p)
        if part == 'ocr_out':
            return SpatialOCR(o, 2 * o, p, name='ocr_distri_head')(*xs, train)
        if part == 'cls':
            return Conv2d(1, 1, use_bias=True, precision=p, name='cls_head')(xs[0])
        raise ValueError(part)

    def _feats(self, x, train):
        """Stem, layer1, stages 2-4; branches resized to branch 0 and concatenated (15w channels)."""
        p, w = self.precision, self.width
        nb = 2 if self.small else 4
        for i in (1, 2):
            x = Conv2d(64, 3, 2, 1, precision=p, name=f'conv{i}')(x)
            x = nn.relu(batch_norm(train, f'bn{i}')(x))
        xs = [ResLayer(Bottleneck, 64, nb, 1, 1, p, name='layer1')(x, train)]
        modules = (1, 3, 2) if self.small else (1, 4, 3)
        for s, num_modules in enumerate(modules, start=2):
            xs = Transition([w * 2 ** i for i in range(s)], p, name=f'transition{s - 1}')(xs, train)
            xs = HRStage(num_modules, nb, p, name=f'stage{s}')(xs, train)
        size = xs[0].shape[1:3]
        return jnp.concatenate([xs[0]] + [resize_ac(y, size) for y in xs[1:]], axis=-1)


class HRNetModel(ISModel):
    """rgb_conv -> HRNetV2 -> OCR -> cls_head -> upsample."""
    STAGES = INPUT_STAGES + (
        Stage('hrnet_feats', ('rgb_conv',)),
        Stage('aux_logits', ('hrnet_feats',)),
        Stage('ocr_feats', ('hrnet_feats',)),
        Stage('ocr_context', ('ocr_feats', 'aux_logits')),
        Stage('ocr_out', ('ocr_feats', 'ocr_context')),
        Stage('logits_lowres', ('ocr_out',)),
        Stage('logits', ('logits_lowres', 'image')),
    )

    def network_fns(self, train: bool) -> dict[str, Callable]:
        a = self.arch
        fe = HRNetOCR(a.width, a.ocr_width, a.small, self.precision, name='feature_extractor')
        return {
            'hrnet_feats': lambda x: fe('feats', x, train=train),
            'aux_logits': lambda x: fe('aux', x, train=train),
            'ocr_feats': lambda x: fe('ocr_feats', x, train=train),
            'ocr_context': lambda f, aux: fe('ocr_context', f, aux),
            'ocr_out': lambda f, ctx: fe('ocr_out', f, ctx, train=train),
            'logits_lowres': lambda x: fe('cls', x),
        }
