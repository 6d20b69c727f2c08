"""State dict <-> Flax variables: architecture detection and the strict key mapping.

Flax modules are named after the reference's modules (see ``models/layers.py``), so the
mapping is mechanical: the Flax path joined with dots plus a leaf rename gives the torch key.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from flax import traverse_util

from ..models.arch import Arch
from .pth import CheckpointError

# Flax leaf name -> torch leaf name, per collection.
LEAF_TO_TORCH = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}
IGNORED_KEY_SUFFIXES = ('num_batches_tracked',)
IGNORED_KEYS = ('aspp_dropout',)


def detect_arch(sd: Mapping[str, np.ndarray], norm_radius: float = 260.0) -> Arch:
    """Architecture of a state dict, as the reference's ``load_is_model`` decides it (SPEC §1.11).

    HRNet's ``small`` flag is read from the structure (a 3rd layer1 block exists only in the
    full model) instead of the reference's key count, which misfires without
    ``num_batches_tracked`` entries.
    """
    keys = list(sd)
    if any('feature_extractor.stage2.0.branches' in k for k in keys):
        try:
            width = int(sd['feature_extractor.stage2.0.branches.0.0.conv1.weight'].shape[0])
            ocr_key = next(k for k in keys if k.endswith('object_context_block.f_down.1.0.bias'))
            ocr_width = int(sd[ocr_key].shape[0])
        except (KeyError, StopIteration, IndexError):
            raise CheckpointError('HRNet state dict lacks the keys that give its width / OCR width') from None
        small = not any(k.startswith('feature_extractor.layer1.2.') for k in keys)
        return Arch('hrnet', width=width, ocr_width=ocr_width, small=small, norm_radius=norm_radius)

    n = sum(1 for k in keys if 'feature_extractor.backbone' in k and 'num_batches_tracked' not in k)
    if n == 0:
        raise CheckpointError('unknown architecture: neither HRNet stage keys nor a DeepLab backbone')
    if n <= 181:
        backbone = 'resnet34'
    elif n <= 276:
        backbone = 'resnet50'
    elif n <= 531:
        backbone = 'resnet101'
    else:
        raise CheckpointError(f'unknown DeepLab backbone with {n} parameter tensors')
    if 'aspp_dropout' in sd:
        # Reference quirk: with an explicit aspp_dropout entry the channel count stays at 128.
        rate = np.asarray(sd['aspp_dropout'], np.float64).reshape(-1)
        if rate.size != 1 or not 0.0 <= rate[0] < 1.0:
            raise CheckpointError(f'entry aspp_dropout must be one rate in [0, 1), got {rate[:4].tolist()}')
        return Arch('deeplab', backbone, 128, float(rate[0]), norm_radius=norm_radius)
    key = 'feature_extractor.aspp.project.0.weight'
    if key not in sd:
        raise CheckpointError(f'DeepLab state dict lacks {key}')
    if np.ndim(sd[key]) != 4:
        raise CheckpointError(f'tensor {key} has shape {tuple(np.shape(sd[key]))}, a 4-d convolution kernel is needed')
    ch = int(sd[key].shape[0])
    return Arch('deeplab', backbone, ch, 0.5 if ch == 256 else 0.2, norm_radius=norm_radius)


def torch_key(collection: str, path: tuple[str, ...]) -> str:
    """Torch state-dict key of the Flax variable ``variables[collection][path]``."""
    return '.'.join(path[:-1] + (LEAF_TO_TORCH[(collection, path[-1])],))


def to_flax_layout(collection: str, leaf: str, value: np.ndarray) -> np.ndarray:
    if collection == 'params' and leaf == 'kernel':
        return np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO
    return value


def variables_from_state_dict(template, sd: Mapping[str, np.ndarray]) -> dict:
    """Fill a variables template (arrays or ShapeDtypeStructs) from a state dict, strictly.

    Every template variable must be present with the right shape and finite values; every
    state-dict entry must be consumed (``num_batches_tracked`` and ``aspp_dropout`` excepted).
    """
    used = set()
    out = {}
    for collection, tree in template.items():
        flat = {}
        for path, leaf in traverse_util.flatten_dict(tree).items():
            key = torch_key(collection, path)
            if key not in sd:
                raise CheckpointError(f'missing tensor {key} (expected shape {tuple(leaf.shape)})')
            value = to_flax_layout(collection, path[-1], np.asarray(sd[key]))
            if tuple(value.shape) != tuple(leaf.shape):
                raise CheckpointError(f'tensor {key} has shape {tuple(sd[key].shape)}, '
                                      f'the architecture needs {_torch_shape(collection, path[-1], leaf.shape)}')
            if not np.issubdtype(value.dtype, np.floating):
                raise CheckpointError(f'tensor {key} has dtype {value.dtype}, a float type is needed')
            value = value.astype(np.float32)
            if not np.all(np.isfinite(value)):
                raise CheckpointError(f'tensor {key} contains NaN or Inf (in float32)')
            flat[path] = value
            used.add(key)
        out[collection] = traverse_util.unflatten_dict(flat)
    for key in sd:
        if key in used or key in IGNORED_KEYS or key.endswith(IGNORED_KEY_SUFFIXES):
            continue
        raise CheckpointError(f'unexpected tensor {key} (shape {tuple(np.shape(sd[key]))}) '
                              'that the architecture does not have')
    return out


def _torch_shape(collection, leaf, shape):
    if collection == 'params' and leaf == 'kernel':
        kh, kw, i, o = shape
        return (o, i, kh, kw)
    return tuple(shape)

