"""The reference training augmentation (SPEC §5.2, T27) in numpy: random rescale with
``cv2.resize`` semantics, then the albumentations pipeline Flip, RandomRotate90, ShiftScaleRotate,
PadIfNeeded, RandomCrop, RandomBrightnessContrast, RGBShift with OpenCV interpolation rules.
"""
from __future__ import annotations

import numpy as np

SHIFT_LIMIT = 0.03
ROTATE_LIMIT_DEG = 3.0
CONTRAST_RANGE = (-0.15, 0.4)
BRIGHTNESS_RANGE = (-0.25, 0.25)
RGB_SHIFT_LIMIT = 10.0
WARP_SUBPIXELS = 32  # cv2.warpAffine quantises source coordinates to 1/32 pixel (INTER_BITS = 5)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Interpolated values in [0, 255] rounded half up, as OpenCV's fixed-point uint8 paths do."""
    return (values + 0.5).astype(np.uint8)


def linear_taps(coords: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the two neighbours and the weight of the second, coordinates clamped to the
    image (cv2.resize INTER_LINEAR)."""
    coords = np.clip(coords, 0, size - 1)
    lo = np.floor(coords).astype(np.int64)
    return lo, np.minimum(lo + 1, size - 1), (coords - lo).astype(np.float32)


def resize_linear(image: np.ndarray, scale: float) -> np.ndarray:
    """``cv2.resize(image, (0, 0), fx=scale, fy=scale)``: size (round(h·s), round(w·s)), source
    coordinate (d + 0.5)/s − 0.5 clamped to the image, an unchanged size copies."""
    h, w, channels = image.shape
    out_h, out_w = round(h * scale), round(w * scale)
    if (out_h, out_w) == (h, w):
        return image.copy()
    r0, r1, fr = linear_taps((np.arange(out_h) + 0.5) / scale - 0.5, h)
    c0, c1, fc = linear_taps((np.arange(out_w) + 0.5) / scale - 0.5, w)
    # Work on (rows, cols·channels) so that every weight broadcasts along a contiguous axis.
    per_channel = np.arange(channels)
    c0, c1 = [(c[:, None] * channels + per_channel).ravel() for c in (c0, c1)]
    fc = np.repeat(fc, channels)
    flat = image.reshape(h, w * channels)
    horizontal = np.take(flat, c0, axis=1) * (1 - fc) + np.take(flat, c1, axis=1) * fc
    fr = fr[:, None]
    out = horizontal[r0] * (1 - fr) + horizontal[r1] * fr
    return to_uint8(out).reshape(out_h, out_w, channels)


def warp_linear(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """uint8 (H, W, C) sampled bilinearly at (h', w') source coordinates, pixels outside the
    image 0 (cv2.remap INTER_LINEAR, BORDER_CONSTANT 0)."""
    h, w, channels = image.shape
    r0, c0 = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    fr, fc = (rows - r0).astype(np.float32), (cols - c0).astype(np.float32)
    touches_image = (r0 >= -1) & (r0 < h) & (c0 >= -1) & (c0 < w)
    planes = np.pad(image, ((1, 1), (1, 1), (0, 0))).transpose(2, 0, 1).reshape(channels, -1)
    stride = w + 2
    top_left = np.clip(r0 + 1, 0, h) * stride + np.clip(c0 + 1, 0, w)
    tap = lambda offset: np.take(planes, top_left + offset, axis=1)  # noqa: E731
    top = tap(0) * (1 - fc) + tap(1) * fc
    bottom = tap(stride) * (1 - fc) + tap(stride + 1) * fc
    out = (top * (1 - fr) + bottom * fr) * touches_image
    return to_uint8(out).transpose(1, 2, 0)


def resize_nearest(mask: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(mask, (out_w, out_h), interpolation=cv2.INTER_NEAREST)``: src = floor(d·src/dst)."""
    (h, w), (out_h, out_w) = mask.shape[:2], out_hw
    rows = np.minimum(np.floor(np.arange(out_h) * (h / out_h)).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(np.arange(out_w) * (w / out_w)).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]]


def rotation_matrix(center_xy: tuple[float, float], angle_deg: float) -> np.ndarray:
    """``cv2.getRotationMatrix2D(center, angle, 1)``: 2×3, counter-clockwise for positive angles."""
    a, b = np.cos(np.deg2rad(angle_deg)), np.sin(np.deg2rad(angle_deg))
    cx, cy = center_xy
    return np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy]])


def shift_rotate(image: np.ndarray, instances: np.ndarray, angle_deg: float, dx: float, dy: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """albumentations ``shift_scale_rotate`` with scale 1 and a constant-0 border: rotation about
    (w/2, h/2), shift (dx·w, dy·h); image bilinear on a 1/32-pixel grid, instances nearest."""
    h, w = instances.shape
    forward = rotation_matrix((w / 2, h / 2), angle_deg)
    forward[:, 2] += (dx * w, dy * h)
    inverse = np.linalg.inv(np.vstack([forward, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    quantise = lambda v: np.floor(v * WARP_SUBPIXELS + 0.5) / WARP_SUBPIXELS  # noqa: E731
    warped_image = warp_linear(image, quantise(src_y), quantise(src_x))
    r, c = np.floor(src_y + 0.5).astype(np.int64), np.floor(src_x + 0.5).astype(np.int64)
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    warped_instances = np.where(inside, instances[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)], 0)
    return warped_image, warped_instances.astype(instances.dtype)


def pad_and_crop(rng: np.random.Generator, image: np.ndarray, instances: np.ndarray,
                 crop_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """PadIfNeeded (zeros, top = floor((ch − h)/2), left likewise) then RandomCrop with offset
    int((H − ch)·u), u ~ U[0, 1)."""
    (ch, cw), (h, w) = crop_hw, instances.shape
    top, left = max(ch - h, 0) // 2, max(cw - w, 0) // 2
    pad = ((top, max(ch - h, 0) - top), (left, max(cw - w, 0) - left))
    image = np.pad(image, pad + ((0, 0),))
    instances = np.pad(instances, pad)
    (h, w), (u, v) = instances.shape, rng.random(2)
    y0, x0 = int((h - ch) * u), int((w - cw) * v)
    return image[y0:y0 + ch, x0:x0 + cw], instances[y0:y0 + ch, x0:x0 + cw]


def geometric_augment(rng: np.random.Generator, image: np.ndarray, instances: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Flip (p 0.5, h/v/both), RandomRotate90 (p 0.5, k in 0..3), ShiftScaleRotate (p 0.75)."""
    if rng.random() < 0.5:
        axes = ((1,), (0,), (0, 1))[rng.integers(3)]
        image, instances = np.flip(image, axes), np.flip(instances, axes)
    if rng.random() < 0.5:
        k = int(rng.integers(4))
        image, instances = np.rot90(image, k), np.rot90(instances, k)
    if rng.random() < 0.75:
        angle = rng.uniform(-ROTATE_LIMIT_DEG, ROTATE_LIMIT_DEG)
        dx, dy = rng.uniform(-SHIFT_LIMIT, SHIFT_LIMIT, size=2)
        image, instances = shift_rotate(image, instances, angle, dx, dy)
    return image, instances


def photometric_augment(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """RandomBrightnessContrast (p 0.75) then RGBShift (p 0.75), both as uint8 lookup tables."""
    values = np.arange(256, dtype=np.float32)
    if rng.random() < 0.75:
        alpha = np.float32(1 + rng.uniform(*CONTRAST_RANGE))
        beta = rng.uniform(*BRIGHTNESS_RANGE)
        image = np.clip(values * alpha + beta * 255, 0, 255).astype(np.uint8)[image]
    if rng.random() < 0.75:
        shifts = rng.uniform(-RGB_SHIFT_LIMIT, RGB_SHIFT_LIMIT, size=3).astype(np.float32)
        luts = np.clip(values[:, None] + shifts, 0, 255).astype(np.uint8)
        image = luts[image, np.arange(3)]
    return image


def augment(rng: np.random.Generator, image: np.ndarray, instances: np.ndarray,
            crop_hw: tuple[int, int] = (320, 480), *, scale_range: tuple[float, float] = (0.75, 1.25),
            min_object_area: int = 80, train: bool = True, max_redraws: int = 50
            ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One training (``train``) or validation sample: image uint8 (ch, cw, 3), instances int32
    (ch, cw) and the ids of objects with at least ``min_object_area`` pixels.

    As the reference: the rescale is drawn once, the augmentation after it is re-drawn until some
    object is present in the crop (at most ``max_redraws`` times, then the last draw is kept; once
    when the rescaled scene has no object); objects below the minimum area stay in ``instances`` but are not valid."""
    scale = rng.uniform(*scale_range)
    image = resize_linear(image, scale)
    instances = resize_nearest(instances.astype(np.int32), image.shape[:2])
    for _ in range(max(max_redraws, 1) if instances.any() else 1):
        out_image, out_instances = image, instances
        if train:
            out_image, out_instances = geometric_augment(rng, out_image, out_instances)
        out_image, out_instances = pad_and_crop(rng, out_image, out_instances, crop_hw)
        if out_instances.any():
            break
    if train:
        out_image = photometric_augment(rng, out_image)
    areas = np.bincount(out_instances.ravel(), minlength=1)
    valid_ids = [int(i) for i in np.flatnonzero(areas[1:] >= min_object_area) + 1]
    return np.ascontiguousarray(out_image), np.ascontiguousarray(out_instances, np.int32), valid_ids
