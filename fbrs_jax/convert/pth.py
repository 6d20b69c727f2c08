"""Read PyTorch ``.pth`` state dicts without torch, and without executing foreign code.

Both serialisation formats are supported: the zip archive of ``torch.save`` since PyTorch 1.6
(``<name>/data.pkl`` + ``<name>/data/<key>`` storages) and the legacy stream format of
earlier versions (magic number, protocol, system info, pickle, storage keys, raw storages).
The pickle is read by an unpickler that resolves only the handful of globals a state dict
needs; anything else (``os.system``, ``builtins.eval`` ...) is refused before it can run.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Callable

import numpy as np

from ..unpickling import CallOnly, Frozen

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class CheckpointError(ValueError):
    """A checkpoint could not be read or does not fit the architecture (one-line message)."""


def _bfloat16():
    import ml_dtypes  # shipped with jax
    return np.dtype(ml_dtypes.bfloat16)


STORAGE_DTYPES: dict[str, Callable[[], np.dtype]] = {
    'FloatStorage': lambda: np.dtype('<f4'),
    'DoubleStorage': lambda: np.dtype('<f8'),
    'HalfStorage': lambda: np.dtype('<f2'),
    'BFloat16Storage': _bfloat16,
    'LongStorage': lambda: np.dtype('<i8'),
    'IntStorage': lambda: np.dtype('<i4'),
    'ShortStorage': lambda: np.dtype('<i2'),
    'CharStorage': lambda: np.dtype('i1'),
    'ByteStorage': lambda: np.dtype('u1'),
    'BoolStorage': lambda: np.dtype('?'),
}


class _StorageType(Frozen):
    """Stand-in for ``torch.<X>Storage`` classes: only carries the element dtype."""
    __slots__ = ('name', 'dtype')
    error = CheckpointError

    def __init__(self, name: str):
        object.__setattr__(self, 'name', name)
        object.__setattr__(self, 'dtype', STORAGE_DTYPES[name]())


class _CallOnly(CallOnly):
    __slots__ = ()
    error = CheckpointError


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """Tensor = strided view of a storage; bounds are checked before any view is taken."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise CheckpointError('tensor refers to something that is not a storage')
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(type(v) is int for v in size + stride) and type(storage_offset) is int):
        raise CheckpointError('malformed tensor metadata')
    if storage_offset < 0 or any(v < 0 for v in size) or any(v < 0 for v in stride):
        raise CheckpointError('negative tensor offset, size or stride')
    if any(v == 0 for v in size):
        return np.zeros(size, storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise CheckpointError(f'tensor of size {list(size)} reaches past its storage of {storage.size} elements')
    item = storage.dtype.itemsize
    # A view, copied once the whole file is read (legacy files store the data after the pickle).
    return np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                           strides=tuple(s * item for s in stride), writeable=False)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *args):
    if not isinstance(data, np.ndarray):
        raise CheckpointError('parameter wraps something that is not a tensor')
    return data


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ('collections', 'OrderedDict'): _CallOnly(collections.OrderedDict),
    ('torch._utils', '_rebuild_tensor_v2'): _CallOnly(_rebuild_tensor_v2),
    ('torch._utils', '_rebuild_parameter'): _CallOnly(_rebuild_parameter),
    **{('torch', name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage: Callable[[_StorageType, str, int], np.ndarray]):
        super().__init__(file)
        self._load_storage = load_storage
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise CheckpointError(f'refused: the pickle names the global {f"{module}.{name}"!r}, '
                                  'which a state dict never needs') from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0 and (len(pid) == 5 or pid[5] is None)):
            raise CheckpointError(f'malformed storage reference {str(pid)[:80]}')
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if key not in self._storages:
            self._storages[key] = self._load_storage(storage_type, key, numel)
        arr = self._storages[key]
        if arr.dtype != storage_type.dtype:
            raise CheckpointError(f'storage {key} is used with two dtypes')
        return arr


def _buffer_to_array(buf: bytes, dtype: np.dtype, numel: int, what: str) -> np.ndarray:
    need = numel * dtype.itemsize
    if len(buf) < need:
        raise CheckpointError(f'{what} holds {len(buf)} bytes, {need} expected (truncated file?)')
    return np.frombuffer(buf, dtype=dtype, count=numel)


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith('data.pkl') and n.count('/') == 1]
        if len(pkl) != 1:
            raise CheckpointError('zip archive is not a torch checkpoint (no single <name>/data.pkl)')
        prefix = pkl[0][:-len('data.pkl')]
        byteorder = prefix + 'byteorder'
        if byteorder in names and zf.read(byteorder).strip() not in (b'little', b''):
            raise CheckpointError('big-endian checkpoints are not supported')

        def load_storage(stype: _StorageType, key: str, numel: int) -> np.ndarray:
            member = f'{prefix}data/{key}'
            if member not in names:
                raise CheckpointError(f'storage {key!r} is missing from the archive')
            need = numel * stype.dtype.itemsize
            if zf.getinfo(member).file_size != need:     # checked before anything is decompressed
                raise CheckpointError(f'storage {key!r} holds {zf.getinfo(member).file_size} bytes, '
                                      f'{need} expected')
            return _buffer_to_array(zf.read(member), stype.dtype, numel, f'storage {key!r}')

        return _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), load_storage).load()


def _read_legacy(f, file_size: int) -> Any:
    def load_plain():
        return _RestrictedUnpickler(f, _no_storage).load()

    if load_plain() != LEGACY_MAGIC:
        raise CheckpointError('not a torch checkpoint (bad magic number)')
    if load_plain() != LEGACY_PROTOCOL:
        raise CheckpointError('unsupported legacy torch protocol version')
    sys_info = load_plain()
    if isinstance(sys_info, dict) and not sys_info.get('little_endian', True):
        raise CheckpointError('big-endian checkpoints are not supported')
    wanted: dict[str, tuple[_StorageType, int]] = {}

    def defer(stype: _StorageType, key: str, numel: int) -> np.ndarray:
        # Storages follow the pickle; hand out a placeholder filled in below.
        if numel * stype.dtype.itemsize > file_size:
            raise CheckpointError(f'storage {key!r} claims {numel} elements, more than the file holds')
        wanted[key] = (stype, numel)
        return np.empty(numel, stype.dtype)

    unpickler = _RestrictedUnpickler(f, defer)
    result = unpickler.load()
    keys = load_plain()
    if not isinstance(keys, list) or set(keys) != set(wanted):
        raise CheckpointError('legacy checkpoint storage list does not match its pickle')
    for key in keys:
        stype, numel = wanted[key]
        header = f.read(8)
        if len(header) != 8:
            raise CheckpointError(f'storage {key!r} is missing (truncated file?)')
        (n,) = struct.unpack('<q', header)
        if n != numel:
            raise CheckpointError(f'storage {key!r} has {n} elements, {numel} expected')
        data = _buffer_to_array(f.read(numel * stype.dtype.itemsize), stype.dtype, numel, f'storage {key!r}')
        unpickler._storages[key][:] = data
    return result


def _no_storage(stype, key, numel):
    raise CheckpointError('unexpected storage reference in a checkpoint header')


def read_state_dict(path: str | os.PathLike) -> 'collections.OrderedDict[str, np.ndarray]':
    """Read a ``.pth`` file into an ordered ``{key: numpy array}``; raises ``CheckpointError``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f'{path} is a directory, not a .pth file')
    if not os.path.exists(path):
        raise CheckpointError(f'{path} does not exist')
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f'{path} is empty')
    try:
        if zipfile.is_zipfile(path):
            obj = _read_zip(path)
        else:
            with open(path, 'rb') as f:
                if f.read(4) == b'PK\x03\x04':
                    raise CheckpointError('truncated or corrupt zip archive (no central directory)')
                f.seek(0)
                obj = _read_legacy(f, size)
    except CheckpointError as e:
        raise CheckpointError(f'{path}: {e}') from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as e:   # NotImplemented: a version
        raise CheckpointError(f'{path}: corrupt zip archive ({e})') from None          # or method zipfile lacks
    except (pickle.UnpicklingError, EOFError) as e:
        raise CheckpointError(f'{path}: not a readable torch checkpoint ({type(e).__name__}: {e})') from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, struct.error,
            OverflowError, MemoryError, RecursionError, UnicodeDecodeError, OSError) as e:
        detail = ' '.join(str(e).split())[:120]          # one line, whatever the pickle put in the message
        raise CheckpointError(f'{path}: corrupt checkpoint ({type(e).__name__}: {detail})') from None
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: holds a {type(obj).__name__}, not a state dict')
    out = collections.OrderedDict()
    for k, v in obj.items():
        if not isinstance(k, str):
            raise CheckpointError(f'{path}: state-dict key {k!r} is not a string')
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = np.asarray(v)  # e.g. the `aspp_dropout` entry
        if not isinstance(v, np.ndarray):
            raise CheckpointError(f'{path}: entry {k!r} is a {type(v).__name__}, not a tensor')
        out[k] = np.array(v)
    return out
