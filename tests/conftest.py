"""Shared fixtures: the ../shared reference data (skipped with a reason when absent), a
persistent compilation cache, and models loaded once per session."""
from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image
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


def make_grabcut(root, sizes=((40, 50), (30, 20)), mask_size=None):
    """A GrabCut-layout folder: images 'a.png', 'b.bmp', 'c.png', ... (one per size); 8-bit
    masks with a 128 ignore band."""
    (root / 'data_GT').mkdir(parents=True)
    (root / 'boundary_GT').mkdir()
    rng = np.random.default_rng(0)
    for k, (name, (h, w)) in enumerate(zip('abcdefgh', sizes)):
        ext = ('png', 'bmp')[k % 2]
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(root / 'data_GT' / f'{name}.{ext}')
        mh, mw = mask_size or (h, w)
        m = np.zeros((mh, mw), np.uint8)
        m[5:15, 5:15] = 255
        m[4, 4:16] = 128
        Image.fromarray(m).save(root / 'boundary_GT' / f'{name}.bmp')
    return root


def nhwc(x: np.ndarray) -> np.ndarray:
    """Reference NCHW -> NHWC."""
    return np.transpose(x, (0, 2, 3, 1))


@pytest.fixture(scope='session')
def r34_model():
    import fbrs_jax
    return fbrs_jax.load_model(R34_PTH)


@pytest.fixture(scope='session')
def r34_checkpoint(tmp_path_factory) -> str:
    """A ResNet-34 DeepLab checkpoint for the public-API, evaluate and batched tests: the reference
    weights when ../shared is present, else random weights of the same architecture (PRNGKey 0)
    saved as a converted directory - the same programs; such tests compare the API's results
    with each other and with the network, not with the reference's numbers."""
    if R34_PTH.exists():
        return str(R34_PTH)
    from fbrs_jax.convert.loading import save_converted
    from fbrs_jax.models.arch import RELEASED
    from fbrs_jax.models.model import Model, build_module
    arch = RELEASED['resnet34_dh128']
    module = build_module(arch)
    variables = module.init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 3), np.float32),
                            np.full((1, 2, 2), -1.0, np.float32))
    dst = tmp_path_factory.mktemp('r34_random') / 'resnet34_dh128'
    save_converted(Model(arch, module, variables, {'weights': 'random (PRNGKey 0)'}), dst)
    return str(dst)


@pytest.fixture(scope='session')
def api_model(r34_checkpoint):
    """The model of ``r34_checkpoint``."""
    import fbrs_jax
    return fbrs_jax.load_model(r34_checkpoint)


@pytest.fixture(scope='session')
def hrnet_model():
    import fbrs_jax
    return fbrs_jax.load_model(HRNET_PTH)
