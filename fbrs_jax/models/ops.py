"""The click encoding (distance maps, SPEC §1.2); the align-corners resize lives in ``canvas``.

All tensors are NHWC. The function follows the reference's float32 arithmetic (SPEC §1.2,
§1.8) rather than the mathematically exact forms, because the difference is most of a
1e-4 logit budget.
"""
from __future__ import annotations

import jax.numpy as jnp

NORM_RADIUS = 260.0
INVALID_D2 = 1e6


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
