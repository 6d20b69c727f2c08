"""Training augmentation against SPEC §5.2 / T27: cv2.resize semantics, warp conventions, centred
padding, validation mode, minimum-area validity, re-draws, determinism."""
from __future__ import annotations

import numpy as np
import pytest

from fbrs_jax.train.augment import (augment, pad_and_crop, photometric_augment, resize_linear,
                                    resize_nearest, shift_rotate)


def random_scene(seed=0, hw=(240, 320)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, hw + (3,), np.uint8)
    inst = np.zeros(hw, np.int32)
    inst[40:140, 50:200] = 1
    inst[150:230, 200:300] = 2
    inst[5:10, 5:10] = 3
    return image, inst


@pytest.mark.parametrize('train', [True, False])
def test_shapes_dtypes_and_determinism(train):
    image, inst = random_scene()
    outs = [augment(np.random.default_rng(seed), image, inst, (192, 256), train=train) for seed in (7, 7, 8)]
    out_image, out_inst, valid = outs[0]
    assert out_image.shape == (192, 256, 3) and out_image.dtype == np.uint8
    assert out_inst.shape == (192, 256) and out_inst.dtype == np.int32
    assert isinstance(valid, list) and all(type(i) is int for i in valid) and 3 not in valid
    assert set(valid) <= set(np.unique(out_inst).tolist()) - {0}
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(outs[0][0], outs[2][0])


def test_resize_linear_half_pixel_centres():
    # 2 -> 4: source coordinates −0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    a = np.array([[0, 80], [160, 240]], np.uint8)
    image = np.stack([a, 255 - a, np.array([[0, 2], [0, 2]], np.uint8)], axis=-1)
    out = resize_linear(image, 2.0)
    expected = np.array([[0, 20, 60, 80], [40, 60, 100, 120], [120, 140, 180, 200], [160, 180, 220, 240]])
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 1], 255 - expected)
    np.testing.assert_array_equal(out[..., 2], np.tile([0, 1, 2, 2], (4, 1)))  # 0.5 and 1.5 round up


def test_resize_linear_uses_the_scale_not_the_size_ratio():
    """fx = 0.74 on 10 columns gives 7 columns sampled at (d + 0.5)/0.74 − 0.5 (cv2 keeps fx),
    not at (d + 0.5)·10/7 − 0.5."""
    row = np.arange(0, 200, 20, dtype=np.uint8)  # value = 20 · column: interpolation is exact
    image = np.repeat(row[None, :, None], 3, axis=2)
    out = resize_linear(image, 0.74)
    assert out.shape == (1, 7, 3)
    ramp = lambda src: np.floor(np.clip(src, 0, 9) * 20 + 0.5).astype(np.uint8)  # noqa: E731
    np.testing.assert_array_equal(out[0, :, 0], ramp((np.arange(7) + 0.5) / 0.74 - 0.5))
    assert not np.array_equal(out[0, :, 0], ramp((np.arange(7) + 0.5) * 10 / 7 - 0.5))


@pytest.mark.parametrize('hw, scale, out_hw', [((10, 6), 0.25, (2, 2)), ((5, 7), 1.1, (6, 8)),
                                               ((3, 10), 1.04, (3, 10)), ((240, 320), 0.75, (180, 240))])
def test_resize_size_rounding(hw, scale, out_hw):
    """round(h·s), round(w·s) with ties to even (cv2 saturate_cast); an unchanged size copies."""
    image = np.random.default_rng(0).integers(0, 256, hw + (3,), np.uint8)
    out = resize_linear(image, scale)
    assert out.shape[:2] == out_hw
    if out_hw == hw:
        np.testing.assert_array_equal(out, image)


def test_resize_nearest_floor_rule():
    mask = np.arange(12, dtype=np.int32).reshape(3, 4)
    out = resize_nearest(mask, (5, 3))
    rows, cols = [0, 0, 1, 1, 2], [0, 1, 2]  # floor(d·3/5), floor(d·4/3)
    np.testing.assert_array_equal(out, mask[np.ix_(rows, cols)])
    assert out.dtype == np.int32


def test_shift_rotate_identity_shift_and_direction():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (4, 4, 3), np.uint8)
    mask = np.arange(1, 17, dtype=np.int32).reshape(4, 4)
    same_image, same_mask = shift_rotate(image, mask, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(same_image, image)
    np.testing.assert_array_equal(same_mask, mask)
    shifted_image, shifted_mask = shift_rotate(image, mask, 0.0, 0.25, 0.0)  # one column right
    np.testing.assert_array_equal(shifted_mask[:, 1:], mask[:, :-1])
    np.testing.assert_array_equal(shifted_image[:, 1:], image[:, :-1])
    assert (shifted_mask[:, 0] == 0).all() and (shifted_image[:, 0] == 0).all()
    # +90° about (w/2, h/2) = (2, 2), counter-clockwise: dst(y, x) = src(x, 4 − y), row 0 outside.
    rot_image, rot_mask = shift_rotate(image, mask, 90.0, 0.0, 0.0)
    ys, xs = np.mgrid[1:4, 0:4]
    np.testing.assert_array_equal(rot_mask[1:], mask[xs, 4 - ys])
    np.testing.assert_array_equal(rot_image[1:], image[xs, 4 - ys])
    assert (rot_mask[0] == 0).all() and (rot_image[0] == 0).all()


def test_shift_rotate_blends_with_the_zero_border():
    image = np.full((4, 4, 3), 200, np.uint8)
    mask = np.ones((4, 4), np.int32)
    out_image, out_mask = shift_rotate(image, mask, 0.0, 0.125, 0.0)  # half a column right
    np.testing.assert_array_equal(out_image[:, 0], 100)  # half image, half constant 0
    np.testing.assert_array_equal(out_image[:, 1:], 200)
    np.testing.assert_array_equal(out_mask, 1)  # nearest: source −0.5 rounds to 0


def test_centred_padding():
    image = np.random.default_rng(0).integers(1, 256, (3, 4, 3), np.uint8)
    mask = np.full((3, 4), 5, np.int32)
    out_image, out_mask = pad_and_crop(np.random.default_rng(0), image, mask, (6, 7))
    expected = np.zeros((6, 7), np.int32)
    expected[1:4, 1:5] = 5  # top = floor(3/2), left = floor(3/2)
    np.testing.assert_array_equal(out_mask, expected)
    np.testing.assert_array_equal(out_image[1:4, 1:5], image)
    assert out_image.sum() == image.astype(int).sum()


def test_validation_mode_is_an_exact_crop():
    rows, cols = np.mgrid[0:100, 0:150]
    image = np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)
    inst = np.zeros((100, 150), np.int32)
    inst[30:70, 40:110] = 1
    for seed in range(5):
        out, out_inst, valid = augment(np.random.default_rng(seed), image, inst, (50, 60),
                                       scale_range=(1.0, 1.0), train=False)
        y0, x0 = int(out[0, 0, 0]), int(out[0, 0, 1])
        np.testing.assert_array_equal(out, image[y0:y0 + 50, x0:x0 + 60])
        np.testing.assert_array_equal(out_inst, inst[y0:y0 + 50, x0:x0 + 60])


def test_photometric_is_a_monotone_lookup_per_channel():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    changed = 0
    for seed in range(10):
        out = photometric_augment(np.random.default_rng(seed), image)
        changed += not np.array_equal(out, image)
        for ch in range(3):
            order = np.argsort(image[..., ch], axis=None, kind='stable')
            assert (np.diff(out[..., ch].ravel()[order].astype(int)) >= 0).all()
    assert changed >= 8  # each transform has p 0.75


def test_min_area_makes_objects_invalid_but_keeps_them():
    image = np.zeros((40, 40, 3), np.uint8)
    inst = np.zeros((40, 40), np.int32)
    inst[0:8, 0:10] = 1   # 80 px: valid
    inst[20:30, 20:28] = 2  # 80 px: valid
    inst[10:13, 30:40] = 3  # 30 px: not valid
    inst[35, 0:39] = 4  # 39 px: not valid
    out_image, out_inst, valid = augment(np.random.default_rng(0), image, inst, (40, 40),
                                         scale_range=(1.0, 1.0), train=False)
    np.testing.assert_array_equal(out_inst, inst)
    assert valid == [1, 2]


def test_redraws_until_an_object_is_present():
    image = np.zeros((100, 100, 3), np.uint8)
    inst = np.zeros((100, 100), np.int32)
    inst[0:10, 0:10] = 1  # a 20×20 crop contains part of it with probability 1/64
    kw = dict(crop_hw=(20, 20), scale_range=(1.0, 1.0), train=False)
    for seed in range(10):
        _, out_inst, valid = augment(np.random.default_rng(seed), image, inst, max_redraws=1000, **kw)
        assert out_inst.any()
    empty = [not augment(np.random.default_rng(seed), image, inst, max_redraws=1, **kw)[1].any()
             for seed in range(10)]
    assert sum(empty) >= 8
