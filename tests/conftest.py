"""Shared fixtures: the ../shared reference data (skipped with a reason when absent), a
persistent compilation cache, and models loaded once per session."""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
import jax

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('FBRS_SHARED', REPO.parent / 'shared'))
REFERENCE = SHARED / 'reference'
FIXTURES = pathlib.Path(__file__).resolve().parent / 'fixtures'
R34_PTH = REFERENCE / 'weights' / 'resnet34_dh128_synth.pth'
HRNET_PTH = REFERENCE / 'weights' / 'hrnet18_ocr64.pth'

jax.config.update('jax_compilation_cache_dir', str(REPO / '.jax_cache'))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)

requires_shared = pytest.mark.skipif(
    not (REFERENCE / 'README.md').exists(),
    reason=f'reference data not found at {SHARED} (set FBRS_SHARED or place shared/ beside the repo)')


def nhwc(x: np.ndarray) -> np.ndarray:
    """Reference NCHW -> NHWC."""
    return np.transpose(x, (0, 2, 3, 1))


@pytest.fixture(scope='session')
def r34_model():
    import fbrs_jax
    return fbrs_jax.load_model(R34_PTH)


@pytest.fixture(scope='session')
def hrnet_model():
    import fbrs_jax
    return fbrs_jax.load_model(HRNET_PTH)
