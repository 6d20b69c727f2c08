"""DeepLabV3+ on a dilated ResNet with the SepConvHead (SPEC §1.5, §1.6)."""
from __future__ import annotations

from typing import Any, Callable

import jax.numpy as jnp
import flax.linen as nn

from .is_model import INPUT_STAGES, ISModel
from .layers import Conv2d, ConvBNReLU, SeparableConv, batch_norm, maybe_dropout
from .canvas import resize_ac, spatial_mean
from .resnet import BACKBONES
from .taps import Stage

ASPP_RATES = (12, 24, 36)
SKIP_CH = 32


class SepConvStack(nn.Module):
    """``[0] SeparableConv(mid), [1] SeparableConv(mid), [2] conv1x1(out, bias)``; ``lo:hi`` runs a slice."""
    mid: int
    out: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, lo: int = 0, hi: int = 3, train: bool = False):
        for i in range(lo, hi):
            if i < 2:
                x = SeparableConv(self.mid, self.precision, name=str(i))(x, train)
            else:
                x = Conv2d(self.out, 1, use_bias=True, precision=self.precision, name='2')(x)
        return x


class SepConvHead(nn.Module):
    """A named wrapper (``block`` / ``layers``) around a ``SepConvStack``, as in the reference."""
    mid: int
    out: int
    seq_name: str
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, lo: int = 0, hi: int = 3, train: bool = False):
        return SepConvStack(self.mid, self.out, self.precision, name=self.seq_name)(x, lo, hi, train)


class _GapBranch(nn.Module):
    ch: int
    precision: Any

    @nn.compact
    def __call__(self, x, train):
        y = spatial_mean(x)
        y = Conv2d(self.ch, 1, precision=self.precision, name='1')(y)
        return nn.relu(batch_norm(train, '2')(y))


class _AsppPooling(nn.Module):
    ch: int
    precision: Any

    @nn.compact
    def __call__(self, x, train):
        y = _GapBranch(self.ch, self.precision, name='gap')(x, train)
        return resize_ac(y, x.shape[1:3])


class _Concurent(nn.Module):
    ch: int
    precision: Any

    @nn.compact
    def __call__(self, x, train):
        outs = [ConvBNReLU(self.ch, 1, precision=self.precision, name='0')(x, train)]
        for i, r in enumerate(ASPP_RATES, start=1):
            outs.append(ConvBNReLU(self.ch, 3, 1, r, r, precision=self.precision, name=str(i))(x, train))
        outs.append(_AsppPooling(self.ch, self.precision, name='4')(x, train))
        return jnp.concatenate(outs, axis=-1)


class ASPP(nn.Module):
    """Five branches (1x1, 3x3 rates 12/24/36, image pooling) -> 1x1 projection -> dropout."""
    ch: int
    dropout: float
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = _Concurent(self.ch, self.precision, name='concurent')(x, train)
        y = ConvBNReLU(self.ch, 1, precision=self.precision, name='project')(y, train)
        return maybe_dropout(y, self.dropout, train, 'project_dropout')


class _SkipProject(nn.Module):
    precision: Any

    @nn.compact
    def __call__(self, x, train):
        return ConvBNReLU(SKIP_CH, 1, precision=self.precision, name='skip_project')(x, train)


class DeepLabFeatures(nn.Module):
    """``feature_extractor``: backbone, skip projection, ASPP and the DeepLab head, by part."""
    backbone: str
    ch: int
    dropout: float
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, part: str, *xs, train: bool = False):
        if part in ('c1', 'c2', 'c3', 'c4'):
            net = BACKBONES[self.backbone](precision=self.precision, name='backbone')
            return net(xs[0], int(part[1]), train)
        if part == 'skip':
            return _SkipProject(self.precision, name='skip_project')(xs[0], train)
        if part == 'aspp':
            return ASPP(self.ch, self.dropout, self.precision, name='aspp')(xs[0], train)
        if part == 'concat':
            aspp, skip = xs
            return jnp.concatenate([resize_ac(aspp, skip.shape[1:3]), skip], axis=-1)
        if part.startswith('head'):
            i = int(part[4:])
            return SepConvHead(self.ch, self.ch, 'block', self.precision, name='head')(xs[0], i, i + 1, train)
        raise ValueError(part)


class DeepLabModel(ISModel):
    """rgb_conv -> dilated ResNet -> DeepLabV3+ -> SepConvHead -> upsample."""
    STAGES = INPUT_STAGES + (
        Stage('c1', ('rgb_conv',)),
        Stage('skip_c1', ('c1',)),
        Stage('c2', ('c1',)),
        Stage('c3', ('c2',)),
        Stage('c4', ('c3',)),
        Stage('aspp', ('c4',)),
        Stage('after_aspp', ('aspp', 'skip_c1')),
        Stage('deeplab_sep1', ('after_aspp',)),
        Stage('deeplab_sep2', ('deeplab_sep1',)),
        Stage('after_deeplab', ('deeplab_sep2',)),
        Stage('head_sep1', ('after_deeplab',)),
        Stage('head_sep2', ('head_sep1',)),
        Stage('logits_lowres', ('head_sep2',)),
        Stage('logits', ('logits_lowres', 'image')),
    )

    def network_fns(self, train: bool) -> dict[str, Callable]:
        a = self.arch
        fe = DeepLabFeatures(a.backbone, a.deeplab_ch, a.aspp_dropout, self.precision, name='feature_extractor')
        head = SepConvHead(a.deeplab_ch // 2, 1, 'layers', self.precision, name='head')
        fns = {f'c{i}': (lambda x, i=i: fe(f'c{i}', x, train=train)) for i in range(1, 5)}
        fns.update({
            'skip_c1': lambda x: fe('skip', x, train=train),
            'aspp': lambda x: fe('aspp', x, train=train),
            'after_aspp': lambda aspp, skip: fe('concat', aspp, skip),
            'deeplab_sep1': lambda x: fe('head0', x, train=train),
            'deeplab_sep2': lambda x: fe('head1', x, train=train),
            'after_deeplab': lambda x: fe('head2', x, train=train),
            'head_sep1': lambda x: head(x, 0, 1, train),
            'head_sep2': lambda x: head(x, 1, 2, train),
            'logits_lowres': lambda x: head(x, 2, 3, train),
        })
        return fns
