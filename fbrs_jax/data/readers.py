"""Readers for the evaluation sets in the reference folder layouts (SPEC §4.6), and the
instance sources of training (SPEC §5.2).

Every reader yields ``Sample(name, image, gt)``: ``image`` uint8 (H, W, 3) RGB with the EXIF
orientation applied (as ``cv2.imread`` does), ``gt`` int32 (H, W) with 1 = object, 0 =
background, -1 = ignore. Instance sources have ``__len__``, ``name(i)`` and
``scene(i) -> Scene(name, image, instances)`` with ``instances`` int32 (H, W), 0 = background.
Problems with the data raise ``DatasetError`` with a one-line message.
"""
from __future__ import annotations

import io
import pathlib
import pickle
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..unpickling import CallOnly

if TYPE_CHECKING:
    from .synthetic import SyntheticShapes

BUGGY_MASK_FILL = 0.08      # SBD training drops instances filling less of their bounding box
SAMPLE_WEIGHT_GAMMA = 1.25  # SBD image sampling probability ∝ (1 - score) ** gamma


class DatasetError(ValueError):
    """Missing folders, unreadable files, image/mask size mismatches."""


class Sample(NamedTuple):
    name: str
    image: np.ndarray
    gt: np.ndarray


class Scene(NamedTuple):
    name: str
    image: np.ndarray
    instances: np.ndarray


def read_rgb(path: pathlib.Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB as the reference's ``cv2.imread(path)`` + BGR->RGB sees the file:
    EXIF orientation applied, alpha dropped, gray replicated, 16 bits scaled by ``>> 8``, CMYK
    converted with OpenCV's formula."""
    try:
        with Image.open(path) as im:
            return _opencv_rgb(ImageOps.exif_transpose(im))
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DatasetError(f'cannot read image {path}: {e}') from None


def _opencv_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I'):          # 16-bit gray (PIL would clip)
        gray = (np.asarray(im).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode == 'CMYK':
        # PIL hands out inverted values (Adobe convention); OpenCV converts the stored ones:
        # channel = k - ((255 - c) * k >> 8)
        c, m, y, k = np.moveaxis(255 - np.asarray(im, np.int32), -1, 0)
        return np.stack([k - (((255 - v) * k) >> 8) for v in (c, m, y)], -1).astype(np.uint8)
    return np.asarray(im.convert('RGB'), np.uint8)


def image_hw(path: pathlib.Path) -> tuple[int, int]:
    """(H, W) of an image file as ``read_rgb`` returns it, from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            transposed = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)   # EXIF orientation swaps axes
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f'cannot read image {path}: {e}') from None
    return (w, h) if transposed else (h, w)


def grabcut_mask(path: pathlib.Path) -> np.ndarray:
    """GrabCut / Berkeley: OpenCV's channel 0 (blue), 128 -> -1 (ignore), >128 -> 1."""
    m = read_rgb(path)[..., 2].astype(np.int32)
    m[m == 128] = -1
    m[m > 128] = 1
    return m


def union_mask(path: pathlib.Path) -> np.ndarray:
    """DAVIS / COCO_MVal: maximum over the channels, > 0 -> 1 (all objects together)."""
    return (read_rgb(path).max(axis=2) > 0).astype(np.int32)


def _require_dir(path: pathlib.Path) -> pathlib.Path:
    if not path.is_dir():
        raise DatasetError(f'dataset folder not found: {path}')
    return path


def _key(image_path: pathlib.Path) -> str:
    return image_path.name.split('.')[0]


def _files(folder: pathlib.Path) -> list[pathlib.Path]:
    """``folder/*.*`` as the reference globs it, minus hidden files and ``Thumbs.db`` (which
    the reference would try to read as images and fail on)."""
    return sorted(p for p in folder.glob('*.*') if p.is_file() and not p.name.startswith('.')
                  and p.name != 'Thumbs.db')


def _listing(names: list[str], limit: int = 5) -> str:
    return ', '.join(names[:limit]) + (f' and {len(names) - limit} more' if len(names) > limit else '')


class PairedFolders:
    """Images ``images_dir/*.*`` sorted by path; the mask of ``a.b.jpg`` is the file in
    ``masks_dir`` whose stem is ``a`` (the reference's ``name.split('.')[0]`` lookup). An
    empty folder, an image without a mask or a mask without an image is a ``DatasetError``."""

    def __init__(self, root, images_dir: str, masks_dir: str, read_mask: Callable):
        root = _require_dir(pathlib.Path(root))
        self.images = _files(_require_dir(root / images_dir))
        self.masks = {p.stem: p for p in _files(_require_dir(root / masks_dir))}
        if not self.images:
            raise DatasetError(f'no images in {root / images_dir}')
        missing = [p.name for p in self.images if _key(p) not in self.masks]
        if missing:
            raise DatasetError(f'no mask in {root / masks_dir} for {_listing(missing)}')
        keys = {_key(p) for p in self.images}
        orphans = [p.name for stem, p in sorted(self.masks.items()) if stem not in keys]
        if orphans:
            raise DatasetError(f'no image in {root / images_dir} for the masks {_listing(orphans)}')
        self.read_mask = read_mask

    def __len__(self) -> int:
        return len(self.images)

    def name(self, i: int) -> str:
        return self.images[i].name

    def image_hw(self, i: int) -> tuple[int, int]:
        return image_hw(self.images[i])

    def __getitem__(self, i: int) -> Sample:
        path = self.images[i]
        image, gt = read_rgb(path), self.read_mask(self.masks[_key(path)])
        return _checked(Sample(path.name, image, gt), path)


def read_sbd_instances(path: pathlib.Path) -> np.ndarray:
    """int32 instance map of an SBD ``inst/<name>.mat`` (``GTinst`` -> ``Segmentation``)."""
    from scipy.io import loadmat
    try:
        return np.asarray(loadmat(str(path))['GTinst'][0][0][0], np.int32)
    except (OSError, KeyError, IndexError, ValueError, TypeError) as e:
        raise DatasetError(f'cannot read SBD instances {path}: {e}') from None


def remove_buggy_masks(instances: np.ndarray, min_fill: float = BUGGY_MASK_FILL) -> np.ndarray:
    """A copy with every instance whose area / bounding-box area < ``min_fill`` set to 0."""
    instances = instances.copy()
    for inst in np.unique(instances[instances != 0]):
        ys, xs = np.nonzero(instances == inst)
        bbox_area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        if len(ys) / bbox_area < min_fill:
            instances[ys, xs] = 0
    return instances


def _sbd_names(root: pathlib.Path, split: str) -> list[str]:
    for sub in ('img', 'inst'):
        _require_dir(root / sub)
    listing = root / f'{split}.txt'
    if not listing.is_file():
        raise DatasetError(f'SBD split list not found: {listing}')
    names = listing.read_text().split()
    if not names:
        raise DatasetError(f'SBD split list {listing} is empty')
    return names


class SBDInstances:
    """SBD: one sample per (image, instance id) for every non-zero id in ascending order, image
    names from ``val.txt`` / ``train.txt``; masks from ``inst/<name>.mat`` (``GTinst``)."""

    def __init__(self, root, split: str = 'val'):
        self.root = _require_dir(pathlib.Path(root))
        self.items = [(n, i) for n in _sbd_names(self.root, split) for i in self._instance_ids(n)]

    def _instances(self, name: str) -> np.ndarray:
        return read_sbd_instances(self.root / 'inst' / f'{name}.mat')

    def _instance_ids(self, name: str) -> list[int]:
        return [int(v) for v in np.unique(self._instances(name)) if v != 0]

    def __len__(self) -> int:
        return len(self.items)

    def name(self, i: int) -> str:
        n, inst = self.items[i]
        return f'{n}_{inst}'

    def image_hw(self, i: int) -> tuple[int, int]:
        return image_hw(self.root / 'img' / f'{self.items[i][0]}.jpg')

    def __getitem__(self, i: int) -> Sample:
        n, inst = self.items[i]
        path = self.root / 'img' / f'{n}.jpg'
        gt = (self._instances(n) == inst).astype(np.int32)
        return _checked(Sample(self.name(i), read_rgb(path), gt), path)


class SBDScenes:
    """SBD training scenes: one per image of ``train.txt`` / ``val.txt``, instance ids as in
    ``inst/<name>.mat`` with the "buggy" masks removed (SPEC §5.2)."""

    def __init__(self, root, split: str = 'train'):
        self.root = _require_dir(pathlib.Path(root))
        self.names = _sbd_names(self.root, split)

    def __len__(self) -> int:
        return len(self.names)

    def name(self, i: int) -> str:
        return self.names[i]

    def scene(self, i: int) -> Scene:
        """Image ``i`` with its instance map."""
        n = self.names[i]
        path = self.root / 'img' / f'{n}.jpg'
        instances = remove_buggy_masks(read_sbd_instances(self.root / 'inst' / f'{n}.mat'))
        return _checked(Scene(n, read_rgb(path), instances), path)


def _numeric_dtype(name, align=False, copy=False) -> np.dtype:
    dtype = np.dtype(name, align, copy) if isinstance(name, str) else None
    if dtype is None or dtype.kind not in 'biuf':
        raise DatasetError(f'refused: the pickle asks for the dtype {str(name)[:40]}')
    return dtype


def _numeric_scalar(dtype, data):
    if not (isinstance(dtype, np.dtype) and dtype.kind in 'biuf' and isinstance(data, bytes)
            and len(data) == dtype.itemsize):
        raise DatasetError('refused: malformed numpy scalar in the pickle')
    return np.frombuffer(data, dtype)[0]


def _latin1_bytes(text, encoding):
    if not (isinstance(text, str) and encoding == 'latin1'):
        raise DatasetError('refused: malformed bytes in the pickle')
    return text.encode('latin1')


class _CallOnly(CallOnly):
    __slots__ = ()
    error = DatasetError


_WEIGHTS_GLOBALS: dict[tuple[str, str], Callable] = {      # call-only: BUILD cannot modify them
    ('numpy', 'dtype'): _CallOnly(_numeric_dtype),
    ('numpy.core.multiarray', 'scalar'): _CallOnly(_numeric_scalar),
    ('numpy._core.multiarray', 'scalar'): _CallOnly(_numeric_scalar),
    ('_codecs', 'encode'): _CallOnly(_latin1_bytes),          # bytes in protocol-2 pickles
}


class _WeightsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _WEIGHTS_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise DatasetError(f'refused: the pickle names the global {module}.{name}, '
                               'which a sample weights file never needs') from None

    def persistent_load(self, pid):
        raise DatasetError('refused: persistent reference in a sample weights pickle')


def sbd_sample_weights(path) -> np.ndarray:
    """Sampling probabilities of the SBD training images, ordered by image index, from the
    reference ``sbd_samples_weights.pkl`` (tuples (index, name, score)): ∝ (1 - score) ** 1.25."""
    try:
        entries = _WeightsUnpickler(io.BytesIO(pathlib.Path(path).read_bytes())).load()
    except DatasetError:
        raise
    except Exception as e:     # any malformed pickle, whatever the opcode that broke
        raise DatasetError(f'cannot read sample weights {path}: {type(e).__name__}: {e}') from None
    if not (isinstance(entries, list) and entries and all(
            isinstance(e, tuple) and len(e) == 3 and isinstance(e[0], (int, np.integer))
            and isinstance(e[1], str) and isinstance(e[2], (float, np.floating)) for e in entries)):
        raise DatasetError(f'sample weights {path} are not a list of (index, image name, score) tuples')
    indices = np.array([e[0] for e in entries])
    scores = np.array([e[2] for e in entries], np.float64)
    if sorted(indices.tolist()) != list(range(len(entries))):
        raise DatasetError(f'sample weights {path}: indices are not 0..{len(entries) - 1}')
    if not ((scores >= 0) & (scores <= 1)).all() or (scores == 1).all():
        raise DatasetError(f'sample weights {path}: scores outside [0, 1] or all equal to 1')
    probs = np.empty(len(entries))
    probs[indices] = (1 - scores) ** SAMPLE_WEIGHT_GAMMA
    return probs / probs.sum()


def _checked(item: Sample | Scene, path: pathlib.Path) -> Sample | Scene:
    _, image, mask = item
    if image.shape[:2] != mask.shape:
        raise DatasetError(f'image and mask sizes differ for {path}: '
                           f'{image.shape[0]}x{image.shape[1]} vs {mask.shape[0]}x{mask.shape[1]}')
    return item


def _synthetic_shapes(root) -> SyntheticShapes:
    from .synthetic import SyntheticShapes
    return SyntheticShapes('eval')


READERS: dict[str, Callable] = {
    'GrabCut': lambda root: PairedFolders(root, 'data_GT', 'boundary_GT', grabcut_mask),
    'Berkeley': lambda root: PairedFolders(root, 'images', 'masks', grabcut_mask),
    'DAVIS': lambda root: PairedFolders(root, 'img', 'gt', union_mask),
    'COCO_MVal': lambda root: PairedFolders(root, 'img', 'gt', union_mask),
    'SBD': lambda root: SBDInstances(root, 'val'),
    'SBD_Train': lambda root: SBDInstances(root, 'train'),
    'synthetic_shapes': _synthetic_shapes,
}

# The folder under --data-root for each dataset (SBD_Train shares SBD's).
FOLDERS = {'SBD_Train': 'SBD'}
# Datasets generated on the fly: no folder, their reader gets ``None``.
FOLDERLESS = frozenset({'synthetic_shapes'})


def open_dataset(name: str, data_root=None) -> PairedFolders | SBDInstances | SyntheticShapes:
    """The reader of dataset ``name`` under ``data_root/<name>`` (no folder for FOLDERLESS ones)."""
    if name not in READERS:
        raise DatasetError(f'unknown dataset {name!r}; choose from {", ".join(READERS)}')
    if name in FOLDERLESS:
        return READERS[name](None)
    if data_root is None:
        raise DatasetError(f'dataset {name} needs a data root folder (--data-root)')
    return READERS[name](pathlib.Path(data_root) / FOLDERS.get(name, name))
