"""Procedural scenes "synthetic_shapes": a textured background with 3-7 textured objects.

``scene(seed, hw)`` draws everything from ``np.random.default_rng(seed)``, so a seed gives the
same arrays in every call and process. Objects (ellipses, rotated rectangles, polygons, stars,
rings, blobs of discs) are placed in painter's order and may touch and occlude each other; a
placement that would leave any object with too small a visible part is redrawn. The instance
map is final before any object is painted, and each object is painted exactly on its pixels of
the map, so image and instances always agree. Some objects take the colour of the background
around them, and the background carries distractor shapes and stripes that are not objects.

``SyntheticShapes`` serves the scenes as an evaluation reader (``Sample`` with the largest
visible object as ground truth) and as a training instance source (``Scene`` with all objects).
"""
from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from .readers import DatasetError, Sample, Scene

DEFAULT_HW = (120, 160)
SPLIT_SIZES = {'train': 10000, 'eval': 30}
SPLIT_SEED_OFFSETS = {'train': 0, 'eval': 10**6}   # scene i of a split uses seed offset + i
NUM_OBJECTS = (3, 7)
AREA_FRACTION = (0.03, 0.35)       # nominal object area / image area, drawn log-uniformly
MIN_VISIBLE_FRACTION = 0.25        # every object keeps this share of its in-image area visible
MIN_VISIBLE_PIXELS = 20            # ... and at least this many pixels; else the placement is redrawn
PLACEMENT_TRIES = 4
CAMOUFLAGE_PROB = 0.3              # objects coloured like the background they cover
SHAPES = ('ellipse', 'rectangle', 'polygon', 'star', 'ring', 'blob')
TEXTURES = ('flat', 'gradient', 'stripes', 'checker', 'noise')
MAX_EXTENT = 1.45                  # every shape lies within this many semi-major axes of its centre


class _Texture(NamedTuple):
    kind: str
    base: np.ndarray      # (3,) float colour
    second: np.ndarray    # (3,) float colour mixed in by gradient / stripes / checker
    centre: tuple[float, float]
    radius: float
    angle: float
    period: float
    phase: float
    noise: float


def scene(seed: int, hw: tuple[int, int] = DEFAULT_HW) -> tuple[np.ndarray, np.ndarray]:
    """The scene of ``seed``: uint8 (H, W, 3) RGB image, int32 (H, W) instances (0 = background,
    objects 1..K in painter's order, each with visible pixels)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    image = _background(rng, hw)
    instances = np.zeros(hw, np.int32)
    in_image_areas = np.zeros(0, np.int64)
    visible = np.zeros(0, np.int64)
    textures: list[_Texture] = []
    windows: list[tuple[slice, slice]] = []
    lo, hi = np.log(AREA_FRACTION)
    for _ in range(rng.integers(NUM_OBJECTS[0], NUM_OBJECTS[1] + 1)):
        radius = np.sqrt(np.exp(rng.uniform(lo, hi)) * h * w / np.pi)
        for _ in range(PLACEMENT_TRIES):
            centre = (rng.uniform(0, h), rng.uniform(0, w))
            window, inside = _shape(rng, SHAPES[rng.integers(len(SHAPES))], centre, radius, hw)
            area = np.count_nonzero(inside)
            covered = np.bincount(instances[window][inside], minlength=len(textures) + 1)[1:]
            areas, left = np.append(in_image_areas, area), np.append(visible - covered, area)
            if (left >= np.maximum(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * areas)).all():
                camouflage = rng.uniform() < CAMOUFLAGE_PROB
                base = image[window][inside].mean(0) + rng.normal(0, 12, 3) if camouflage else rng.uniform(0, 255, 3)
                textures.append(_draw_texture(rng, base, centre, radius))
                windows.append(window)
                instances[window][inside] = len(textures)
                in_image_areas, visible = areas, left
                break
    for k, (texture, window) in enumerate(zip(textures, windows), 1):
        ys, xs = _pixels(window, instances[window] == k)
        image[ys, xs] = _colours(rng, texture, ys, xs)
    image = _soften(image)
    noise = np.float32(rng.uniform(1.5, 5) * np.sqrt(12))            # sensor noise: uniform, std 1.5-5
    image += (rng.random(image.shape, np.float32) - np.float32(0.5)) * noise
    return np.clip(np.rint(image, out=image), 0, 255).astype(np.uint8), instances


def _background(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """float32 (H, W, 3): smooth colour field + sinusoidal texture + distractor shapes and stripes."""
    h, w = hw
    # Every term is separable, (H, r) rows times (r, W) columns per channel: the coarse colour
    # grid resized bilinearly, and waves sin(fy y + fx x + p) = sin(fy y + p) cos(fx x) + cos(fy y + p) sin(fx x).
    grid = np.clip(rng.uniform(30, 225, 3) + rng.normal(0, 45, (rng.integers(2, 6), rng.integers(2, 7), 3)), 0, 255)
    rows = [np.einsum('hi,ijc->chj', _bilinear_weights(h, grid.shape[0]), grid)]
    cols = [_bilinear_weights(w, grid.shape[1]).T]
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    for _ in range(rng.integers(1, 3)):
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(8, 0.5 * max(h, w)), rng.uniform(0, 2 * np.pi)
        fy, fx = 2 * np.pi * np.sin(angle) / period, 2 * np.pi * np.cos(angle) / period
        amplitude = rng.uniform(-20, 20, 3)[:, None, None]
        rows.append(amplitude * np.concatenate([np.sin(fy * ys + phase), np.cos(fy * ys + phase)], 1))
        cols.append(np.concatenate([np.cos(fx * xs), np.sin(fx * xs)], 0))
    # einsum, not matmul: a multithreaded BLAS call this small costs more than it computes.
    field = np.einsum('chr,rw->chw', np.concatenate(rows, 2).astype(np.float32),
                      np.concatenate(cols, 0).astype(np.float32))
    image = np.ascontiguousarray(field.transpose(1, 2, 0))
    for _ in range(rng.integers(1, 4)):
        centre = (rng.uniform(0, h), rng.uniform(0, w))
        if rng.uniform() < 0.4:       # a stripe across the image
            window, inside = _shape(rng, 'rectangle', centre, 0.0, hw, axes=(h + w, rng.uniform(2, 8)))
        else:
            radius = np.sqrt(rng.uniform(0.005, 0.05) * h * w / np.pi)
            window, inside = _shape(rng, SHAPES[rng.integers(len(SHAPES))], centre, radius, hw)
        ys_d, xs_d = _pixels(window, inside)
        texture = _draw_texture(rng, rng.uniform(0, 255, 3), centre, max(h, w) / 4)
        alpha = rng.uniform(0.3, 1.0)
        image[ys_d, xs_d] += alpha * (_colours(rng, texture, ys_d, xs_d) - image[ys_d, xs_d])
    return image


def _bilinear_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix of a corner-aligned linear resize from n_in to n_out samples."""
    pos = np.linspace(0, n_in - 1, n_out)
    i0 = np.minimum(pos.astype(int), n_in - 2)
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] = 1 - (pos - i0)
    m[np.arange(n_out), i0 + 1] = pos - i0
    return m


def _shape(rng: np.random.Generator, kind: str, centre: tuple[float, float], radius: float,
           hw: tuple[int, int], axes: tuple[float, float] | None = None) -> tuple[tuple[slice, slice], np.ndarray]:
    """A randomly rotated shape of area about pi * radius**2 (``axes`` overrides the semi-axes
    (a, b), a >= b, drawn otherwise with a * b = radius**2): the window of the image around it
    and its bool mask inside the window."""
    angle = rng.uniform(0, np.pi)
    if axes is None:
        ratio = rng.uniform(0.35, 1.0)
        axes = (radius / np.sqrt(ratio), radius * np.sqrt(ratio))
    a, b = axes
    (cy, cx), extent = centre, MAX_EXTENT * a + 1
    y0, y1 = int(np.clip(cy - extent, 0, hw[0])), int(np.clip(cy + extent + 1, 0, hw[0]))
    x0, x1 = int(np.clip(cx - extent, 0, hw[1])), int(np.clip(cx + extent + 1, 0, hw[1]))
    window = (slice(y0, y1), slice(x0, x1))
    cos, sin = np.cos(angle), np.sin(angle)
    if kind in ('rectangle', 'polygon', 'star'):
        u, v = _outline(rng, kind).T
        xs, ys = cx - x0 + a * u * cos - b * v * sin, cy - y0 + a * u * sin + b * v * cos
        canvas = Image.new('1', (x1 - x0, y1 - y0))
        ImageDraw.Draw(canvas).polygon(list(zip(xs.tolist(), ys.tolist())), fill=1)
        return window, np.asarray(canvas)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    cos, sin = np.float32(cos), np.float32(sin)
    u = (xs * cos + ys * sin) / np.float32(a)      # the unit disc is the ellipse of axes a, b
    v = (ys * cos - xs * sin) / np.float32(b)
    if kind == 'ellipse':
        inside = u * u + v * v <= 1
    elif kind == 'ring':
        hole = rng.uniform(0.45, 0.7)
        outer2 = 1 / (1 - hole * hole)
        r2 = u * u + v * v
        inside = (r2 <= outer2) & (r2 >= hole * hole * outer2)
    elif kind == 'blob':
        n = rng.integers(3, 6)
        directions, distances = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 0.6, n)
        radii = rng.uniform(0.45, 0.75, n)
        inside = np.zeros(u.shape, bool)
        for d, r, rr in zip(directions, distances, radii):
            inside |= (u - r * np.cos(d)) ** 2 + (v - r * np.sin(d)) ** 2 <= rr * rr
    else:
        raise ValueError(f'unknown shape {kind!r}')
    return window, inside


def _outline(rng: np.random.Generator, kind: str) -> np.ndarray:
    """(n, 2) vertices (u, v) of a polygon of area about pi in unit-disc coordinates: a square,
    a random star-shaped polygon of 3-9 vertices, or a star of 5-8 points."""
    if kind == 'rectangle':
        return np.sqrt(np.pi) / 2 * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    if kind == 'star':
        n = 2 * rng.integers(5, 9)
        angles = np.arange(n) * 2 * np.pi / n
        radii = np.where(np.arange(n) % 2 == 0, 1.35, rng.uniform(0.45, 0.65))
    else:
        n = rng.integers(3, 10)
        angles = (np.arange(n) + rng.uniform(-0.2, 0.2, n)) * 2 * np.pi / n
        radii = rng.uniform(0.7, 1.3, n)
    return radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)


def _pixels(window: tuple[slice, slice], inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image coordinates (ys, xs) of the pixels of a window mask."""
    ys, xs = np.nonzero(inside)
    return ys + window[0].start, xs + window[1].start


def _draw_texture(rng: np.random.Generator, base: np.ndarray, centre: tuple[float, float],
                  radius: float) -> _Texture:
    """Random texture parameters around colour ``base`` for an object at ``centre``."""
    second = np.clip(base + rng.choice([-1, 1], 3) * rng.uniform(25, 110, 3), 0, 255)
    return _Texture(kind=TEXTURES[rng.integers(len(TEXTURES))], base=base, second=second,
                    centre=centre, radius=radius, angle=rng.uniform(0, np.pi),
                    period=rng.uniform(4, 24), phase=rng.uniform(0, 2 * np.pi), noise=rng.uniform(6, 25))


def _colours(rng: np.random.Generator, texture: _Texture, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """float (N, 3) colours of ``texture`` at the pixels (ys, xs)."""
    dy, dx = ys - texture.centre[0], xs - texture.centre[1]
    along = dx * np.cos(texture.angle) + dy * np.sin(texture.angle)
    if texture.kind == 'gradient':
        mix = np.clip(along / (2 * texture.radius) + 0.5, 0, 1)
    elif texture.kind == 'stripes':
        mix = np.clip(0.5 + 1.5 * np.sin(2 * np.pi * along / texture.period + texture.phase), 0, 1)
    elif texture.kind == 'checker':
        across = dy * np.cos(texture.angle) - dx * np.sin(texture.angle)
        mix = (np.floor(along / texture.period) + np.floor(across / texture.period)) % 2
    else:
        mix = np.zeros(len(ys))
    colours = texture.base + mix[:, None] * (texture.second - texture.base)
    if texture.kind == 'noise':
        colours = colours + rng.normal(0, texture.noise, colours.shape)
    return colours


def _soften(image: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge replication: edges one pixel wide, as in photos."""
    for axis in (0, 1):
        x = np.moveaxis(image, axis, 0)
        out = 2 * x
        out[1:] += x[:-1]
        out[:-1] += x[1:]
        out[0] += x[0]
        out[-1] += x[-1]
        image = np.moveaxis(out, 0, axis) * np.float32(0.25)
    return image


class SyntheticShapes:
    """Scenes of a split ('train': seeds i, 'eval': seeds 10**6 + i): an evaluation reader
    (``Sample`` with the largest visible object as ground truth) and an instance source."""

    def __init__(self, split: str = 'eval', num: int | None = None, hw: tuple[int, int] = DEFAULT_HW):
        if split not in SPLIT_SIZES:
            raise DatasetError(f'unknown synthetic_shapes split {split!r}; choose from {", ".join(SPLIT_SIZES)}')
        self.split, self.hw = split, tuple(hw)
        self.num = SPLIT_SIZES[split] if num is None else num
        if not 0 <= self.num <= SPLIT_SEED_OFFSETS['eval']:
            raise DatasetError(f'synthetic_shapes splits hold 0 to {SPLIT_SEED_OFFSETS["eval"]} scenes, got {self.num}')

    def __len__(self) -> int:
        return self.num

    def _index(self, i: int) -> int:
        i = operator.index(i)
        if not 0 <= i < self.num:
            raise IndexError(f'scene {i} out of range for {self.num} scenes')
        return i

    def seed(self, i: int) -> int:
        """The generator seed of scene ``i``."""
        return SPLIT_SEED_OFFSETS[self.split] + self._index(i)

    def name(self, i: int) -> str:
        return f'{self.split}_{self._index(i):05d}'

    def image_hw(self, i: int) -> tuple[int, int]:
        self._index(i)
        return self.hw

    def scene(self, i: int) -> Scene:
        """Scene ``i`` with all its objects."""
        return Scene(self.name(i), *scene(self.seed(i), self.hw))

    def __getitem__(self, i: int) -> Sample:
        name, image, instances = self.scene(i)
        largest = np.argmax(np.bincount(instances.ravel())[1:]) + 1
        return Sample(name, image, (instances == largest).astype(np.int32))
