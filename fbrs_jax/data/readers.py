"""Readers for the evaluation sets in the reference folder layouts (SPEC §4.6).

Every reader yields ``Sample(name, image, gt)``: ``image`` uint8 (H, W, 3) RGB with the EXIF
orientation applied (as ``cv2.imread`` does), ``gt`` int32 (H, W) with 1 = object, 0 =
background, -1 = ignore. Problems with the data raise ``DatasetError`` with a one-line message.
"""
from __future__ import annotations

import pathlib
from typing import Callable, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class DatasetError(ValueError):
    """Missing folders, unreadable files, image/mask size mismatches."""


class Sample(NamedTuple):
    name: str
    image: np.ndarray
    gt: np.ndarray


def read_rgb(path: pathlib.Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB, EXIF orientation applied."""
    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert('RGB'), np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise DatasetError(f'cannot read image {path}: {e}') from None


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


class PairedFolders:
    """Images ``images_dir/*.*`` sorted by path; the mask of ``a.b.jpg`` is the file in
    ``masks_dir`` whose stem is ``a`` (the reference's ``name.split('.')[0]`` lookup)."""

    def __init__(self, root, images_dir: str, masks_dir: str, read_mask: Callable):
        root = _require_dir(pathlib.Path(root))
        self.images = sorted(_require_dir(root / images_dir).glob('*.*'))
        self.masks = {p.stem: p for p in _require_dir(root / masks_dir).glob('*.*')}
        missing = [p.name for p in self.images if _key(p) not in self.masks]
        if missing:
            raise DatasetError(f'no mask in {root / masks_dir} for {missing[0]}'
                               + (f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''))
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


class SBDInstances:
    """SBD: one sample per (image, instance id) for every non-zero id in ascending order, image
    names from ``val.txt`` / ``train.txt``; masks from ``inst/<name>.mat`` (``GTinst``)."""

    def __init__(self, root, split: str = 'val'):
        from scipy.io import loadmat
        self._loadmat = loadmat
        self.root = _require_dir(pathlib.Path(root))
        for sub in ('img', 'inst'):
            _require_dir(self.root / sub)
        listing = self.root / f'{split}.txt'
        if not listing.is_file():
            raise DatasetError(f'SBD split list not found: {listing}')
        self.items = [(n, i) for n in listing.read_text().split() for i in self._instance_ids(n)]

    def _instances(self, name: str) -> np.ndarray:
        path = self.root / 'inst' / f'{name}.mat'
        try:
            return np.asarray(self._loadmat(str(path))['GTinst'][0][0][0])
        except (OSError, KeyError, IndexError, ValueError) as e:
            raise DatasetError(f'cannot read SBD instances {path}: {e}') from None

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


def _checked(sample: Sample, path: pathlib.Path) -> Sample:
    if sample.image.shape[:2] != sample.gt.shape:
        raise DatasetError(f'image and mask sizes differ for {path}: '
                           f'{sample.image.shape[0]}x{sample.image.shape[1]} vs {sample.gt.shape[0]}x{sample.gt.shape[1]}')
    return sample


READERS: dict[str, Callable] = {
    'GrabCut': lambda root: PairedFolders(root, 'data_GT', 'boundary_GT', grabcut_mask),
    'Berkeley': lambda root: PairedFolders(root, 'images', 'masks', grabcut_mask),
    'DAVIS': lambda root: PairedFolders(root, 'img', 'gt', union_mask),
    'COCO_MVal': lambda root: PairedFolders(root, 'img', 'gt', union_mask),
    'SBD': lambda root: SBDInstances(root, 'val'),
    'SBD_Train': lambda root: SBDInstances(root, 'train'),
}

# The folder under --data-root for each dataset (SBD_Train shares SBD's).
FOLDERS = {'SBD_Train': 'SBD'}


def open_dataset(name: str, data_root) -> PairedFolders | SBDInstances:
    """The reader of dataset ``name`` under ``data_root/<name>``."""
    if name not in READERS:
        raise DatasetError(f'unknown dataset {name!r}; choose from {", ".join(READERS)}')
    return READERS[name](pathlib.Path(data_root) / FOLDERS.get(name, name))

