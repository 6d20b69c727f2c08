"""``Click``: the value every layer passes (models, refinement, inference, evaluation), at the
bottom of the package so that none of them imports a layer above it for it."""
from __future__ import annotations

from typing import NamedTuple


class Click(NamedTuple):
    """A click at integer or float pixel coordinates (row, col) in the original image."""
    row: float
    col: float
    is_positive: bool
