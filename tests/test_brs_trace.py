"""BRS modes teacher-forced with the reference clicks (the traces in ../shared/reference).

* ``scipy`` back end: an exact replay of the reference optimiser - the same number of
  objective evaluations on every click and probabilities within 1e-3 (the traces are float16:
  rounding alone is up to 4.9e-4).
* ``lbfgsb`` back end (SciPy's L-BFGS-B compiled on device): the same, on clicks where the
  reference really solves (input BRS: RGB-BRS ``pub_ring`` clicks 6-7 take 3 evaluations each,
  DistMap-BRS ``pub_scene_a`` clicks 2-3 take 4 and 5).
* ``jaxopt`` back end (default; its own line search): the first optimised clicks within 1e-3,
  the reference's own 1-vs-2-thread band on these traces (``sensitivity_public.md``).
* HRNet (untrained, chaotic - the reference disagrees with itself from click 2 on): on a
  trace the reference reproduces itself on (f-BRS-C, pub_polyhole; f-BRS-A passes too but is
  left out of CI for time), the same evaluation
  counts and per click within max(1e-3, that click's 1-vs-2-thread difference). RGB-BRS on
  this network is not asserted: at click 2 the reference's own band is 8.8e-3 and ours is
  1.9e-2 with the same loss to 2e-4 (reported by experiments/trace_agreement.py).
"""
import json

import numpy as np
import pytest

import fbrs_jax
from conftest import REFERENCE, requires_shared
from fbrs_jax.eval.evaluate import replay_clicks

pytestmark = requires_shared
PROB_TOL = 1e-3


def teacher_forced(model, folder, mode, image_name, n_clicks, backend):
    """Yield (k, probs, reference probs, evaluations, reference evaluations, zoom box ok)."""
    trace = np.load(REFERENCE / folder / f'trace_{model.arch.name}_{mode}_{image_name}.npz')
    image = np.load(REFERENCE / folder / 'trace_images.npz')[f'{image_name}__image']
    clicks = [fbrs_jax.Click(int(r), int(c), bool(p)) for r, c, p in trace['clicks'][:n_clicks]]
    steps = replay_clicks(fbrs_jax.make_predictor(model, mode, solver=backend), image, clicks)
    for k, step in enumerate(steps):
        roi = step['roi'] if step['roi'] is not None else (-1, -1, -1, -1)
        yield (k, step['probs'], trace['probs'][k].astype(np.float32), step['evals'],
               int(trace['n_fun_calls'][k]), roi == tuple(trace['roi'][k]))


@pytest.mark.parametrize('backend,mode,image_name,n_clicks', [
    ('scipy', 'f-BRS-A', 'pub_scene_a', 4), ('scipy', 'f-BRS-B', 'pub_scene_a', 4),
    ('scipy', 'f-BRS-C', 'pub_scene_a', 3), ('scipy', 'RGB-BRS', 'pub_ring', 7),
    ('scipy', 'DistMap-BRS', 'pub_scene_a', 3),
    ('lbfgsb', 'f-BRS-B', 'pub_scene_a', 4), ('lbfgsb', 'RGB-BRS', 'pub_ring', 7),
    ('lbfgsb', 'DistMap-BRS', 'pub_scene_a', 3)])
def test_lbfgsb_backends_replay_the_reference(r34_model, backend, mode, image_name, n_clicks):
    for k, probs, ref, evals, ref_evals, roi_ok in teacher_forced(
            r34_model, 'r34_trained', mode, image_name, n_clicks, backend):
        assert roi_ok, f'zoom box at click {k + 1}'
        assert evals == ref_evals, f'click {k + 1}: {evals} objective evaluations, reference {ref_evals}'
        err = np.abs(probs - ref).max()
        assert err <= PROB_TOL, f'click {k + 1}: max |dprob| = {err:.2e}'


@pytest.mark.parametrize('mode,image_name,n_clicks', [
    ('f-BRS-A', 'pub_scene_a', 3), ('f-BRS-B', 'pub_scene_a', 3), ('f-BRS-C', 'pub_scene_a', 2),
    ('RGB-BRS', 'pub_ring', 2)])
def test_jaxopt_backend_first_optimised_clicks(r34_model, mode, image_name, n_clicks):
    for k, probs, ref, evals, ref_evals, roi_ok in teacher_forced(
            r34_model, 'r34_trained', mode, image_name, n_clicks, 'jaxopt'):
        err = np.abs(probs - ref).max()
        assert roi_ok and err <= PROB_TOL, f'click {k + 1}: max |dprob| = {err:.2e}'


@pytest.mark.parametrize('mode,image_name,n_clicks', [('f-BRS-C', 'pub_polyhole', 2)])
def test_hrnet_scipy_backend_within_the_reference_band(hrnet_model, mode, image_name, n_clicks):
    band = json.loads((REFERENCE / 'hrnet18_random' / 'sensitivity_public.json').read_text())
    band = band[f'hrnet18_ocr64/{mode}/{image_name}']['replay_max_abs_dprob']
    for k, probs, ref, evals, ref_evals, roi_ok in teacher_forced(
            hrnet_model, 'hrnet18_random', mode, image_name, n_clicks, 'scipy'):
        err = np.abs(probs - ref).max()
        assert roi_ok and err <= max(PROB_TOL, band[k]), f'click {k + 1}: max |dprob| = {err:.2e}'
        assert evals == ref_evals, f'click {k + 1}: {evals} objective evaluations, reference {ref_evals}'
