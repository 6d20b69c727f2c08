"""Backbone initialisation from an ImageNet classification checkpoint (SPEC §5.1): the gluon
ResNet-V1b/V1s ``.pth`` for DeepLab, the official HRNet classification ``.pth`` for HRNet.
Read with the safe state-dict reader; only tensors whose name and shape match are loaded."""
from __future__ import annotations

import numpy as np
from flax import traverse_util

from ..models.arch import Arch
from .pth import CheckpointError, read_state_dict
from .state_dict import to_flax_layout, torch_key


def _imagenet_key(arch: Arch, key: str) -> str | None:
    """Classification-checkpoint key of an interactive-model state-dict key (None: not backbone)."""
    if arch.family == 'deeplab':
        prefix = 'feature_extractor.backbone.'
        return key[len(prefix):] if key.startswith(prefix) else None
    prefix = 'feature_extractor.'
    if not key.startswith(prefix):
        return None
    key = key[len(prefix):]
    return 'last_layer' + key[len('aux_head'):] if key.startswith('aux_head') else key


def load_imagenet_backbone(variables: dict, arch: Arch, path: str) -> tuple[dict, int]:
    """Overwrite the backbone variables present in ``path``; returns (variables, tensors loaded)."""
    sd = {k[len('model.'):] if k.startswith('model.') else k: v for k, v in read_state_dict(path).items()}
    out, loaded = {}, 0
    for collection, tree in variables.items():
        flat = dict(traverse_util.flatten_dict(tree))
        for path_, leaf in flat.items():
            src = _imagenet_key(arch, torch_key(collection, path_))
            if src is None or src not in sd:
                continue
            value = to_flax_layout(collection, path_[-1], np.asarray(sd[src], np.float32))
            if value.shape != tuple(leaf.shape):
                continue
            if not np.all(np.isfinite(value)):
                raise CheckpointError(f'{path}: tensor {src} contains NaN or Inf')
            flat[path_] = value
            loaded += 1
        out[collection] = traverse_util.unflatten_dict(flat)
    if loaded == 0:
        raise CheckpointError(f'{path}: no tensor matches the {arch.name} backbone')
    return out, loaded
