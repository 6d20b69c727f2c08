"""``load_model`` for official ``.pth`` files and converted directories; ``convert`` between them.

A converted directory holds ``model.json`` (architecture, source file and its sha256, format
version) and ``variables/`` (an orbax checkpoint of the Flax variables), or, written with
``half=True`` for small transfers, ``variables.npz``: the parameters rounded to float16 and
stored byte-shuffled (all high bytes, then all low bytes) and zlib-compressed, about 14 %
smaller than float16 as orbax stores it; the batch-norm statistics stay float32. Both read
back as float32.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from typing import Any

import jax
import numpy as np

from ..models.arch import Arch
from ..models.model import Model, build_module, variables_template
from .pth import CheckpointError, read_state_dict
from .state_dict import detect_arch, variables_from_state_dict

FORMAT = 'fbrs_jax.converted/1'
# The model trained by experiments/train_hrnet18s_synthetic.py, committed with the repository.
SHIPPED_CHECKPOINT = os.path.join(os.path.dirname(__file__), '..', '..', 'checkpoints', 'hrnet18s_ocr64_synthetic')
META_FILE = 'model.json'
VARIABLES_DIR = 'variables'
HALF_FILE = 'variables.npz'
HALF = 'float16-shuffled-zlib'


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def load_pth(path: str, precision: Any = 'highest') -> Model:
    """Official checkpoint -> model (architecture auto-detected, strict mapping)."""
    path = os.fspath(path)
    sd = read_state_dict(path)
    try:
        arch = detect_arch(sd)
    except CheckpointError as e:
        raise CheckpointError(f'{path}: {e}') from None
    module = build_module(arch, precision)
    try:
        variables = variables_from_state_dict(variables_template(module), sd)
    except CheckpointError as e:
        raise CheckpointError(f'{path} ({arch.name}): {e}') from None
    variables = jax.tree_util.tree_map(jax.numpy.asarray, variables)
    source = {'file': os.path.basename(path), 'sha256': sha256_file(path), 'format': 'pth'}
    return Model(arch, module, variables, source)


def save_converted(model: Model, dst: str, half: bool = False) -> None:
    """Write ``model`` as a converted directory (created; must not hold a previous conversion);
    ``half``: its parameters rounded to float16 (see the module docstring)."""
    import orbax.checkpoint as ocp
    dst = os.path.abspath(os.fspath(dst))
    os.makedirs(dst, exist_ok=True)
    if os.path.exists(os.path.join(dst, VARIABLES_DIR)) or os.path.exists(os.path.join(dst, HALF_FILE)):
        raise CheckpointError(f'{dst} already holds converted weights; choose an empty directory')
    source = dict(model.source, rounded='float16') if half else model.source
    if half:
        arrays = {}
        for k, (key, v) in enumerate(_flat(model.variables)):
            v = np.asarray(v)
            if key.startswith("['params']") and v.dtype == np.float32:
                v = np.ascontiguousarray(v.astype(np.float16)).view(np.uint8).reshape(-1, 2).T   # byte-shuffled
                arrays[f'{k}'] = np.frombuffer(zlib.compress(v.tobytes(), 9), np.uint8)
            else:
                arrays[f'{k}'] = v
        np.savez(os.path.join(dst, HALF_FILE), **arrays)
    else:
        _quiet_orbax()
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(os.path.join(dst, VARIABLES_DIR), model.variables)
    meta = {'format': FORMAT, 'arch': model.arch.to_dict(), 'source': source,
            **({'variables': HALF} if half else {})}
    with open(os.path.join(dst, META_FILE), 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)


def load_converted(src: str, precision: Any = 'highest') -> Model:
    """Read a directory written by ``save_converted``."""
    import orbax.checkpoint as ocp
    src = os.path.abspath(os.fspath(src))
    meta_path = os.path.join(src, META_FILE)
    if not os.path.isfile(meta_path):
        raise CheckpointError(f'{src} is not a converted model directory (no {META_FILE})')
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get('format') != FORMAT:
            raise CheckpointError(f'{meta_path}: unknown format {meta.get("format")!r}')
        arch = Arch.from_dict(meta['arch'])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f'{meta_path}: unreadable ({e})') from None
    module = build_module(arch, precision)
    template = variables_template(module)
    _quiet_orbax()
    try:
        if meta.get('variables') == HALF:
            variables = _read_half(os.path.join(src, HALF_FILE), template)
        else:
            # onto this process's first device: the saved sharding names the saving process's
            # devices, which a multi-process (jax.distributed) run does not have
            local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            target = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=local), template)
            with ocp.StandardCheckpointer() as ckptr:
                variables = ckptr.restore(os.path.join(src, VARIABLES_DIR), target)
    except Exception as e:  # orbax raises many types for a damaged directory
        raise CheckpointError(f'{src}: cannot restore variables ({type(e).__name__}: {str(e)[:160]})') from None
    bad = [k for k, v in _flat(variables) if not np.all(np.isfinite(np.asarray(v)))]
    if bad:
        raise CheckpointError(f'{src}: variable {bad[0]} contains NaN or Inf')
    return Model(arch, module, variables, dict(meta.get('source', {}), format='converted'))


def load_model(path, precision: Any = 'highest') -> Model:
    """Load an official ``.pth`` checkpoint or a converted directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return load_converted(path, precision)
    return load_pth(path, precision)


def convert(src: str, dst: str) -> Model:
    """``.pth`` -> converted directory; returns the model."""
    model = load_pth(src)
    save_converted(model, dst)
    return model


def _read_half(path: str, template):
    """The variables of a ``HALF_FILE`` in ``template``'s structure and shapes, as float32."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    with np.load(path, allow_pickle=False) as data:
        out = []
        for k, leaf in enumerate(leaves):
            a = data[f'{k}']
            if a.dtype == np.uint8 and leaf.dtype == np.float32:     # shuffled float16
                raw = np.frombuffer(zlib.decompress(a.tobytes()), np.uint8)
                a = np.ascontiguousarray(raw.reshape(2, -1).T).view(np.float16).astype(np.float32)
            if a.size != int(np.prod(leaf.shape)) or a.dtype != leaf.dtype:
                raise CheckpointError(f'{path}: variable {k} does not match the architecture')
            out.append(jax.numpy.asarray(a.reshape(leaf.shape)))
    return jax.tree_util.tree_unflatten(treedef, out)


def _flat(tree):
    return [(jax.tree_util.keystr(p), v) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _quiet_orbax():
    logging.getLogger('absl').setLevel(logging.WARNING)
