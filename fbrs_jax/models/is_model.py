"""Interactive-segmentation model base: click encoding + fusion + a network, run as taps.

``ISModel.__call__`` runs the stage chain declared by the subclass (see ``taps.py``): the
plain forward, a forward resumed from any tap, and forwards with edits at any tap all go
through this one method.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence

import jax.numpy as jnp
import flax.linen as nn

from .arch import Arch
from .layers import RGBConv
from .canvas import resize_ac, valid_extent
from .ops import dist_maps
from .taps import Stage, run_stages

INPUT_STAGES = (
    Stage('dist_maps', ('image', 'points')),
    Stage('rgb_conv', ('image', 'dist_maps')),
)


class ISModel(nn.Module):
    """Base class; subclasses define ``STAGES`` and ``network_fns``."""
    arch: Arch
    precision: Any = 'highest'
    STAGES: ClassVar[Sequence[Stage]] = ()

    def network_fns(self, train: bool) -> dict[str, Callable]:
        raise NotImplementedError

    @nn.compact
    def __call__(self, image=None, points=None, *, carry: Optional[Mapping[str, Any]] = None,
                 start: Optional[str] = None, edits: Optional[Mapping[str, Callable]] = None,
                 stop: Optional[str] = None, train: bool = False, extent=None) -> dict:
        """Return every computed tap by name; ``logits`` is (B, H, W, 1) at input resolution.

        Either ``image`` (B, H, W, 3) normalised and ``points`` (B, 2K, 2) (row, col), or
        ``carry`` (see ``taps.carry_names``, always with ``image``) with ``start``. With
        ``extent`` = (h, w) (may be traced) the image is an (H, W) canvas holding an h x w
        image at its top-left; the taps are then valid on the matching extents only (``canvas``).
        """
        rgb_conv = RGBConv(self.precision, name='rgb_conv')
        fns = {
            'dist_maps': lambda img, pts: dist_maps(pts, img.shape[1:3], self.arch.norm_radius),
            'rgb_conv': lambda img, dm: rgb_conv(jnp.concatenate([img, dm], axis=-1), train),
            'logits': lambda low, img: resize_ac(low, img.shape[1:3]),
        }
        fns.update(self.network_fns(train))
        values = dict(carry) if carry is not None else {'image': image, 'points': points}
        if extent is None:
            return run_stages(self.STAGES, fns, values, start=start, edits=edits, stop=stop)
        with valid_extent(values['image'].shape[1:3], extent):
            return run_stages(self.STAGES, fns, values, start=start, edits=edits, stop=stop)
