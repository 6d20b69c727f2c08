"""NoBRS closed loop against the reference traces: same clicks, same zoom boxes, probabilities
within 1e-3 (the reference stored them as float16: rounding alone is up to 2.4e-4). The loop
is ``evaluate_sample``'s, the interactive predictor's closed loop."""
import numpy as np
import pytest

from conftest import REFERENCE, requires_shared
from fbrs_jax.eval.evaluate import evaluate_sample
from fbrs_jax.inference.predictor import Predictor

pytestmark = requires_shared
PROB_TOL = 1e-3


def replay(model, folder, image_name, n_clicks=None):
    trace = np.load(REFERENCE / folder / f'trace_{model.arch.name}_NoBRS_{image_name}.npz')
    images = np.load(REFERENCE / folder / 'trace_images.npz')
    image, gt = images[f'{image_name}__image'], images[f'{image_name}__gt_mask']
    predictor = Predictor(model)                # reference evaluation defaults: flip, zoom-in 400
    seen = {'probs': [], 'roi': []}
    record = lambda p: seen['roi'].append(p.sample.zoom.roi or (-1, -1, -1, -1)) or {}
    predict = predictor.predict
    predictor.predict = lambda clicks: seen['probs'].append(predict(clicks)) or seen['probs'][-1]
    n = n_clicks or len(trace['clicks'])
    result = evaluate_sample(predictor, image, gt, n, 2.0, 0.49, per_click=record)   # IoU 2: never stops
    assert len(result['clicks']) == n
    for k in range(n):
        assert tuple(result['clicks'][k]) == tuple(trace['clicks'][k]), f'click {k + 1}'
        assert seen['roi'][k] == tuple(trace['roi'][k]), f'zoom box at click {k + 1}'
        err = np.abs(seen['probs'][k] - trace['probs'][k].astype(np.float32)).max()
        assert err <= PROB_TOL, f'click {k + 1}: max |dprob| = {err:.2e}'


@pytest.mark.parametrize('image_name', ['pub_ring', 'pub_scene_a'])
def test_r34_nobrs_closed_loop(r34_model, image_name):
    replay(r34_model, 'r34_trained', image_name)


def test_hrnet_nobrs_closed_loop(hrnet_model):
    replay(hrnet_model, 'hrnet18_random', 'pub_polyhole', n_clicks=2)
