"""Fixed-size canvases whose valid extent is data, so one compiled program serves every image
and crop shape.

An image of size (h, w) is placed at the top-left of an (H, W) canvas. While a model is traced
inside ``valid_extent(canvas_hw, extent)``, every feature map of spatial size
``(ceil(H / 2**k), ceil(W / 2**k))`` is taken to be valid on ``[0, ceil(h / 2**k)) x
[0, ceil(w / 2**k))`` (the reference's stride-2 arithmetic), and the spatial operations honour
it: convolutions and max-pooling zero their input outside the extent (the reference's zero
padding; inputs of max-pooling are non-negative), global pooling and softmax run over the
extent only, and align-corners resizes map extent to extent with weights computed in the
program. Outside the extent values are arbitrary and never read. Without the context every
function here is the plain, exact-shape operation.

The same align-corners arithmetic (torch's float32 form, SPEC 1.8) gives the predictor's
crop-and-resize and paste-back with boxes that are data.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Optional

import jax
import jax.numpy as jnp

_CONTEXT = contextvars.ContextVar('fbrs_jax_valid_extent', default=None)


@contextlib.contextmanager
def valid_extent(canvas_hw, extent):
    """Trace a model on a ``canvas_hw`` canvas whose image covers ``extent`` = (h, w) (traced ints).
    Each level's extent and mask are computed once per context: a network has hundreds of
    convolutions, and their bookkeeping would otherwise dominate the trace."""
    token = _CONTEXT.set((tuple(int(s) for s in canvas_hw), extent, {}))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _memoised(key, make):
    """``make()``, computed once per ``valid_extent`` context (every call without one)."""
    ctx = _CONTEXT.get()
    if ctx is None:
        return make()
    memo = ctx[2]
    if key not in memo:
        memo[key] = make()
    return memo[key]


def extent_of(hw) -> Optional[tuple]:
    """Valid (h, w) of a feature map of spatial size ``hw`` on the current canvas, or None."""
    ctx = _CONTEXT.get()
    if ctx is None:
        return None
    (ch, cw), ext, _ = ctx
    hw = tuple(int(s) for s in hw)
    for k in range(16):
        d = 2 ** k
        if (-(-ch // d), -(-cw // d)) == hw:
            # ceil(ext / d) of non-negative ints: lax.div truncates, one op instead of floor_divide's many
            return _memoised(('extent', hw), lambda: tuple(
                jax.lax.div(jnp.asarray(e, jnp.int32) + (d - 1), jnp.int32(d)) for e in ext))
    raise ValueError(f'a {hw[0]}x{hw[1]} feature map is no level of the {ch}x{cw} canvas')


def valid_mask(hw, extent):
    """(H, W) bool: True on ``[0, extent[0]) x [0, extent[1])``."""
    rows = jnp.arange(hw[0]) < extent[0]
    cols = jnp.arange(hw[1]) < extent[1]
    return rows[:, None] & cols[None, :]


def _level_mask(hw):
    """(1, H, W, 1) valid mask of a feature map of spatial size ``hw`` on the current canvas, or None."""
    ext = extent_of(hw)
    if ext is None:
        return None
    return _memoised(('mask', tuple(int(s) for s in hw)), lambda: valid_mask(hw, ext)[None, :, :, None])


def zero_invalid(x):
    """NHWC ``x`` with zeros outside the current valid extent (unchanged without a canvas)."""
    mask = _level_mask(x.shape[1:3])
    if mask is None:
        return x
    return jnp.where(mask, x, jnp.zeros((), x.dtype))


def spatial_mean(x):
    """(B, H, W, C) -> (B, 1, 1, C) mean over the valid extent."""
    ext = extent_of(x.shape[1:3])
    if ext is None:
        return jnp.mean(x, axis=(1, 2), keepdims=True)
    count = (ext[0] * ext[1]).astype(x.dtype)
    return jnp.sum(zero_invalid(x), axis=(1, 2), keepdims=True) / count


def masked_logits(x):
    """NHWC logits with -inf outside the valid extent (for a softmax over positions)."""
    mask = _level_mask(x.shape[1:3])
    if mask is None:
        return x
    return jnp.where(mask, x, -jnp.inf)


def ac_weights(n_in, n_out, k):
    """Torch's align-corners bilinear in float32 for output positions ``k``: (i0, i1, l0, l1).

    ``n_in``/``n_out`` may be traced; positions outside [0, n_out) give clipped, unused values.
    """
    n_in = jnp.asarray(n_in, jnp.int32)
    n_out = jnp.asarray(n_out, jnp.int32)
    scale = jnp.where(n_out > 1, (n_in - 1).astype(jnp.float32) / jnp.maximum(n_out - 1, 1).astype(jnp.float32),
                      jnp.float32(0.0))
    src = scale * jnp.asarray(k, jnp.float32)
    i0 = jnp.clip(jnp.floor(src).astype(jnp.int32), 0, n_in - 1)
    lam1 = jnp.clip(src - i0.astype(jnp.float32), 0.0, 1.0)
    lam0 = jnp.float32(1.0) - lam1
    i1 = jnp.minimum(i0 + 1, n_in - 1)
    return i0, i1, lam0, lam1


def _lerp(x, axis, i0, i1, lam0, lam1):
    shape = [1] * x.ndim
    shape[axis] = -1
    return (jnp.take(x, i0, axis=axis) * lam0.reshape(shape).astype(x.dtype)
            + jnp.take(x, i1, axis=axis) * lam1.reshape(shape).astype(x.dtype))


def resize_ac(x, out_hw, in_extent=None, out_extent=None):
    """Bilinear align-corners resize of NHWC ``x`` to spatial size ``out_hw`` (W first, then H).

    On a canvas the valid extent of the input is resized onto the valid extent of the output;
    explicit ``in_extent``/``out_extent`` override the context.
    """
    h_in, w_in = x.shape[1:3]
    h_out, w_out = int(out_hw[0]), int(out_hw[1])
    if (h_in, w_in) == (1, 1):   # a 1x1 map resizes to a broadcast, exactly
        return jnp.broadcast_to(x, (x.shape[0], h_out, w_out, x.shape[3]))
    from_context = in_extent is None and out_extent is None
    in_extent = in_extent if in_extent is not None else extent_of((h_in, w_in))
    out_extent = out_extent if out_extent is not None else extent_of((h_out, w_out))
    if in_extent is None and out_extent is None and (h_in, w_in) == (h_out, w_out):
        return x
    ih, iw = in_extent if in_extent is not None else (h_in, w_in)
    oh, ow = out_extent if out_extent is not None else (h_out, w_out)

    def weights(axis, n_in, n_out, size):
        # between two levels of the canvas, once per context (HRNet resizes between the same
        # levels dozens of times); explicit extents are not keyed by the shapes alone
        make = lambda: ac_weights(n_in, n_out, jnp.arange(size))
        return _memoised(('ac', axis, (h_in, w_in), (h_out, w_out)), make) if from_context else make()

    if in_extent is not None or w_in != w_out:
        x = _lerp(x, 2, *weights(2, iw, ow, w_out))
    if in_extent is not None or h_in != h_out:
        x = _lerp(x, 1, *weights(1, ih, oh, h_out))
    return x


def crop_resize(image, box, out_hw, out_extent):
    """(H, W, C) ``image`` cropped to the inclusive ``box`` (rmin, rmax, cmin, cmax) and resized
    onto ``out_extent`` of an ``out_hw`` canvas; box and extent may be traced."""
    rmin, rmax, cmin, cmax = box[0], box[1], box[2], box[3]
    i0, i1, l0, l1 = ac_weights(cmax - cmin + 1, out_extent[1], jnp.arange(out_hw[1]))
    x = _lerp(image, 1, i0 + cmin, i1 + cmin, l0, l1)
    i0, i1, l0, l1 = ac_weights(rmax - rmin + 1, out_extent[0], jnp.arange(out_hw[0]))
    return _lerp(x, 0, i0 + rmin, i1 + rmin, l0, l1)


def paste(probs, extent, box, out_hw):
    """(h, w, ...) canvas ``probs`` valid on ``extent``, resized to the inclusive ``box`` and pasted into
    zeros of an ``out_hw`` canvas (the ZoomIn / LimitLongestSide inverse)."""
    rmin, rmax, cmin, cmax = box[0], box[1], box[2], box[3]
    cols = jnp.arange(out_hw[1]) - cmin
    rows = jnp.arange(out_hw[0]) - rmin
    x = _lerp(probs, 1, *ac_weights(extent[1], cmax - cmin + 1, cols))
    x = _lerp(x, 0, *ac_weights(extent[0], rmax - rmin + 1, rows))
    inside = ((rows >= 0) & (rows <= rmax - rmin))[:, None] & ((cols >= 0) & (cols <= cmax - cmin))[None, :]
    inside = inside.reshape(inside.shape + (1,) * (x.ndim - 2))
    return jnp.where(inside, x, jnp.zeros((), x.dtype))


def flip_w(x, width, axis):
    """Mirror ``x`` along ``axis`` within its valid width ``width`` (a plain flip when it fills the axis)."""
    n = x.shape[axis]
    j = jnp.arange(n)
    return jnp.take(x, jnp.where(j < width, width - 1 - j, j), axis=axis)
