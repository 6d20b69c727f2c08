"""Parameter-free operations shared by every model: align-corners resize and distance maps.

All tensors are NHWC. Both functions follow the reference's float32 arithmetic (SPEC §1.2,
§1.8) rather than the mathematically exact forms, because the difference is most of a
1e-4 logit budget.
"""
from __future__ import annotations

import numpy as np
import jax.numpy as jnp

NORM_RADIUS = 260.0
INVALID_D2 = 1e6


def _ac_weights(n_in: int, n_out: int):
    """Gather indices and lerp weights of torch's align_corners=True bilinear, in float32."""
    k = np.arange(n_out, dtype=np.float32)
    if n_out > 1:
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
    else:
        scale = np.float32(0.0)
    src = (scale * k).astype(np.float32)
    i0 = np.minimum(np.floor(src).astype(np.int32), n_in - 1)
    lam1 = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    lam0 = (np.float32(1.0) - lam1).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, lam0, lam1


def resize_ac(x: jnp.ndarray, out_hw: tuple[int, int]) -> jnp.ndarray:
    """Bilinear resize with align_corners=True semantics of an NHWC tensor (W first, then H)."""
    h_in, w_in = x.shape[1], x.shape[2]
    h_out, w_out = int(out_hw[0]), int(out_hw[1])
    if (h_in, w_in) == (h_out, w_out):
        return x
    if w_in != w_out:
        i0, i1, l0, l1 = _ac_weights(w_in, w_out)
        x = (jnp.take(x, i0, axis=2) * l0[None, None, :, None].astype(x.dtype)
             + jnp.take(x, i1, axis=2) * l1[None, None, :, None].astype(x.dtype))
    if h_in != h_out:
        i0, i1, l0, l1 = _ac_weights(h_in, h_out)
        x = (jnp.take(x, i0, axis=1) * l0[None, :, None, None].astype(x.dtype)
             + jnp.take(x, i1, axis=1) * l1[None, :, None, None].astype(x.dtype))
    return x


def dist_maps(points: jnp.ndarray, hw: tuple[int, int], norm_radius: float = NORM_RADIUS) -> jnp.ndarray:
    """Click encoding of SPEC §1.2: (B, 2K, 2) (row, col) points -> (B, H, W, 2) maps in [0, 1].

    The first K points are positive, the last K negative; a point is padding iff both of its
    coordinates are negative.
    """
    points = jnp.asarray(points, jnp.float32)
    b, n2, _ = points.shape
    k = n2 // 2
    h, w = int(hw[0]), int(hw[1])
    rows = jnp.arange(h, dtype=jnp.float32)
    cols = jnp.arange(w, dtype=jnp.float32)
    radius = jnp.float32(norm_radius)
    dr = ((rows[None, None, :] - points[:, :, 0:1]) / radius) ** 2   # (B, 2K, H)
    dc = ((cols[None, None, :] - points[:, :, 1:2]) / radius) ** 2   # (B, 2K, W)
    d2 = dr[:, :, :, None] + dc[:, :, None, :]                         # (B, 2K, H, W)
    invalid = jnp.max(points, axis=2) < 0                              # (B, 2K)
    d2 = jnp.where(invalid[:, :, None, None], jnp.float32(INVALID_D2), d2)
    d2 = jnp.min(d2.reshape(b, 2, k, h, w), axis=2)                    # (B, 2, H, W)
    feats = jnp.tanh(2.0 * jnp.sqrt(d2))
    return jnp.transpose(feats, (0, 2, 3, 1))
