"""A loaded model: Flax module + variables + where they came from, with a jitted ``logits``."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import jax
import jax.numpy as jnp

from .arch import Arch
from .deeplab import DeepLabModel
from .is_model import ISModel

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
TEMPLATE_HW = (64, 64)


def normalize(image_uint8_hwc) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 ``(x/255 - mean) / std`` with ImageNet statistics (SPEC §1.1)."""
    img = np.asarray(image_uint8_hwc)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f'expected an (H, W, 3) RGB image, got shape {img.shape}')
    if img.dtype != np.uint8:
        raise ValueError(f'expected a uint8 image, got dtype {img.dtype}')
    x = img.astype(np.float32) / np.float32(255.0)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


PRECISIONS = ('highest', 'high', 'default', 'bfloat16')   # jax.lax.Precision names, or bfloat16 operands


def build_module(arch: Arch, precision: Any = 'highest') -> ISModel:
    """The Flax module of an architecture, its convolutions at ``precision`` (``PRECISIONS``)."""
    if arch.family == 'deeplab':
        return DeepLabModel(arch, precision)
    from .hrnet import HRNetModel
    return HRNetModel(arch, precision)


def variables_template(module: ISModel):
    """Shapes and dtypes of a module's variables, without computing anything."""
    image = jax.ShapeDtypeStruct((1, *TEMPLATE_HW, 3), jnp.float32)
    points = jax.ShapeDtypeStruct((1, 2, 2), jnp.float32)
    return jax.eval_shape(lambda i, p: module.init(jax.random.PRNGKey(0), i, p), image, points)


@dataclasses.dataclass(eq=False)
class Model:
    """``module.apply(variables, ...)`` plus provenance; see ``ISModel.__call__`` for taps."""
    arch: Arch
    module: ISModel
    variables: dict
    source: dict = dataclasses.field(default_factory=dict)

    def logits(self, image, points) -> jnp.ndarray:
        """(B, H, W, 3) normalised image, (B, 2K, 2) (row, col) points -> (B, H, W, 1) float32 logits."""
        image = jnp.asarray(image, jnp.float32)
        points = jnp.asarray(points, jnp.float32)
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f'image must be (B, H, W, 3), got {image.shape}')
        if points.ndim != 3 or points.shape[-1] != 2 or points.shape[1] % 2 or points.shape[0] != image.shape[0]:
            raise ValueError(f'points must be (B, 2K, 2) with the image batch size, got {points.shape}')
        return self._logits(self.variables, image, points)

    @functools.cached_property
    def _logits(self):
        return jax.jit(lambda v, i, p: self.module.apply(v, i, p, stop='logits')['logits'])

    @functools.lru_cache(maxsize=None)
    def tap_shape(self, tap: str) -> tuple[int, ...]:
        """Shape of a tap for a (1, 64, 64, 3) input (traced, nothing computed)."""
        image = jax.ShapeDtypeStruct((1, *TEMPLATE_HW, 3), jnp.float32)
        points = jax.ShapeDtypeStruct((1, 2, 2), jnp.float32)
        out = jax.eval_shape(lambda v, i, p: self.module.apply(v, i, p, stop=tap), self.variables, image, points)
        return tuple(out[tap].shape)

    def apply(self, *args, **kwargs):
        return self.module.apply(self.variables, *args, **kwargs)

    @property
    def num_values(self) -> int:
        """Float values stored (parameters and BatchNorm statistics), as SPEC §9.1 counts them."""
        return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(self.variables)))

    @property
    def num_params(self) -> int:
        """Trainable parameters."""
        return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(self.variables['params'])))

