"""Dilated ResNet-V1b backbones (output stride 8), SPEC §1.4.

Variants are ``functools.partial`` of one ``ResNet`` class, as in the Flax ImageNet example.
``ResNet.__call__(x, stage)`` runs one stage (1 = stem + layer1, 2..4 = layer2..4), so each
stage output is a tap.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import flax.linen as nn

from .canvas import zero_invalid
from .layers import Conv2d, batch_norm


class Downsample(nn.Module):
    """``[0] conv1x1/stride (no bias), [1] BN`` shortcut."""
    features: int
    stride: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv2d(self.features, 1, self.stride, precision=self.precision, name='0')(x)
        return batch_norm(train, '1')(x)


class BasicBlock(nn.Module):
    """3x3 (stride, ``dilation``) + 3x3 (``previous_dilation``); expansion 1."""
    planes: int
    stride: int = 1
    dilation: int = 1
    previous_dilation: int = 1
    precision: Any = 'highest'
    expansion = 1

    @nn.compact
    def __call__(self, x, train: bool):
        conv = partial(Conv2d, precision=self.precision)
        d, pd = self.dilation, self.previous_dilation
        y = conv(self.planes, 3, self.stride, d, d, name='conv1')(x)
        y = nn.relu(batch_norm(train, 'bn1')(y))
        y = conv(self.planes, 3, 1, pd, pd, name='conv2')(y)
        y = batch_norm(train, 'bn2')(y)
        if self.stride != 1 or x.shape[-1] != self.planes:
            x = Downsample(self.planes, self.stride, self.precision, name='downsample')(x, train)
        return nn.relu(y + x)


class Bottleneck(nn.Module):
    """1x1, 3x3 (stride, dilation), 1x1 x4; only the 3x3 is dilated."""
    planes: int
    stride: int = 1
    dilation: int = 1
    previous_dilation: int = 1
    precision: Any = 'highest'
    expansion = 4

    @nn.compact
    def __call__(self, x, train: bool):
        conv = partial(Conv2d, precision=self.precision)
        d = self.dilation
        out_ch = self.planes * self.expansion
        y = nn.relu(batch_norm(train, 'bn1')(conv(self.planes, 1, name='conv1')(x)))
        y = nn.relu(batch_norm(train, 'bn2')(conv(self.planes, 3, self.stride, d, d, name='conv2')(y)))
        y = batch_norm(train, 'bn3')(conv(out_ch, 1, name='conv3')(y))
        if self.stride != 1 or x.shape[-1] != out_ch:
            x = Downsample(out_ch, self.stride, self.precision, name='downsample')(x, train)
        return nn.relu(y + x)


class ResLayer(nn.Module):
    """One stage: the first block gets the stride and the reduced dilation (SPEC §1.4, T17)."""
    block_cls: Any
    planes: int
    num_blocks: int
    stride: int
    dilation: int
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool):
        first_dilation = {1: 1, 2: 1, 4: 2}[self.dilation]
        for i in range(self.num_blocks):
            x = self.block_cls(self.planes, self.stride if i == 0 else 1,
                               first_dilation if i == 0 else self.dilation, self.dilation,
                               self.precision, name=str(i))(x, train)
        return x


class DeepStem(nn.Module):
    """``conv1`` of the v1s variants: 3x3/2 -> BN ReLU -> 3x3 -> BN ReLU -> 3x3 (2*width)."""
    width: int = 64
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, train: bool):
        conv = partial(Conv2d, precision=self.precision)
        x = nn.relu(batch_norm(train, '1')(conv(self.width, 3, 2, 1, name='0')(x)))
        x = nn.relu(batch_norm(train, '4')(conv(self.width, 3, 1, 1, name='3')(x)))
        return conv(2 * self.width, 3, 1, 1, name='6')(x)


class ResNet(nn.Module):
    """ResNet-V1b, dilated (strides 1,2,1,1; dilations 1,1,2,4). ``stage`` picks what to run."""
    block_cls: Any
    stage_sizes: Sequence[int]
    deep_stem: bool = False
    stem_width: int = 64
    precision: Any = 'highest'

    @nn.compact
    def __call__(self, x, stage: int, train: bool = False):
        if stage == 1:
            if self.deep_stem:
                x = DeepStem(self.stem_width, self.precision, name='conv1')(x, train)
            else:
                x = Conv2d(64, 7, 2, 3, precision=self.precision, name='conv1')(x)
            x = nn.relu(batch_norm(train, 'bn1')(x))
            x = nn.max_pool(zero_invalid(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        planes, stride, dilation = [(64, 1, 1), (128, 2, 1), (256, 1, 2), (512, 1, 4)][stage - 1]
        return ResLayer(self.block_cls, planes, self.stage_sizes[stage - 1], stride, dilation,
                        self.precision, name=f'layer{stage}')(x, train)


ResNet34 = partial(ResNet, block_cls=BasicBlock, stage_sizes=(3, 4, 6, 3))
ResNet50 = partial(ResNet, block_cls=Bottleneck, stage_sizes=(3, 4, 6, 3), deep_stem=True)
ResNet101 = partial(ResNet, block_cls=Bottleneck, stage_sizes=(3, 4, 23, 3), deep_stem=True)
BACKBONES = {'resnet34': ResNet34, 'resnet50': ResNet50, 'resnet101': ResNet101}
