"""make_predictor: every mode end to end on a small image, the knobs, and defined behaviour on
the reference's crash path (ResNet-34: the reference weights, or random ones in a clone without
../shared)."""
import numpy as np
import pytest

import fbrs_jax
from fbrs_jax.brs.spec import PRESETS

IMAGE = np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8)
CLICKS = [fbrs_jax.Click(20, 24, True), fbrs_jax.Click(5, 5, False)]


# The other modes run the same programs with other taps; their trace tests cover them end to end.
@pytest.mark.parametrize('mode', ['NoBRS', 'f-BRS-B'])
def test_every_mode_predicts(api_model, mode):
    p = fbrs_jax.make_predictor(api_model, mode, zoom_in=None)
    p.set_image(IMAGE)
    for k in (1, 2):
        probs = p.predict(CLICKS[:k])
        assert probs.shape == (40, 48) and probs.dtype == np.float32
        assert np.all((probs >= 0) & (probs <= 1))
        if mode != 'NoBRS':
            assert (p.stats.num_evals == 0) if k == 1 else (1 <= p.stats.num_evals <= 20 + 20)
    assert p.net_clicks_limit == PRESETS[mode].clicks_limit == {'NoBRS': None, 'RGB-BRS': 5}.get(mode, 8)


def test_nobrs_click_is_the_flip_averaged_network(api_model):
    """NoBRS without ZoomIn: sigmoid of the mean of the logits of the image and of its mirror
    (mirrored back; docs/reference.md SPEC §2.4), the network at the image's exact size."""
    from fbrs_jax.models.model import normalize
    p = fbrs_jax.make_predictor(api_model, 'NoBRS', zoom_in=None)
    p.set_image(IMAGE)
    probs = p.predict(CLICKS[:1])
    x = normalize(IMAGE)
    points = np.array([[[20, 24], [-1, -1]], [[20, 47 - 24], [-1, -1]]], np.float32)
    logits = np.asarray(api_model.logits(np.stack([x, x[:, ::-1]]), points))[..., 0]
    want = 1 / (1 + np.exp(-0.5 * (logits[0] + logits[1][:, ::-1])))
    np.testing.assert_allclose(probs, want, atol=1e-6)
    assert 0.05 < probs.mean() < 0.95          # not a constant map


def test_knobs_and_errors(api_model):
    p = fbrs_jax.make_predictor(api_model, 'f-BRS-B', zoom_in={'target_size': 600}, maxfun=7,
                                history=5, solver='scipy', clicks_limit=None, with_flip=False)
    assert p.zoom.params.target_size == 600 and p.zoom.params.skip_clicks == 1
    assert (p.solver.maxfun, p.solver.maxiter, p.solver.history) == (7, 14, 5)
    assert p.net_clicks_limit is None and not p.with_flip
    with pytest.raises(ValueError, match='unknown mode'):
        fbrs_jax.make_predictor(api_model, 'f-BRS-D')
    with pytest.raises(ValueError, match='unknown optimiser back end'):
        fbrs_jax.make_predictor(api_model, 'RGB-BRS', solver='lbfgs-b')
    with pytest.raises(TypeError):
        fbrs_jax.make_predictor(api_model, 'NoBRS', zoom=None)


def test_input_brs_resets_variables_of_another_shape(api_model):
    """The reference crashes when stale input-BRS variables meet an input of another shape
    (T13 path); here they are reset to zeros."""
    p = fbrs_jax.make_predictor(api_model, 'RGB-BRS', zoom_in=None)
    p.set_image(IMAGE)
    _, after_first = p.plan(p.sample, CLICKS[:1])            # the host decisions of click 1
    plan, _ = p.plan(after_first, CLICKS)
    assert not bool(plan.inp.reset)                          # same input: warm start
    plan, _ = p.plan(after_first._replace(last_input=(p.sample.canvas, (30, 30))), CLICKS)
    assert bool(plan.inp.reset)                              # the last input was 30x30


def test_limit_longest_side(api_model):
    p = fbrs_jax.make_predictor(api_model, 'NoBRS', zoom_in=None, max_size=32)
    p.set_image(IMAGE)
    probs = p.predict(CLICKS)
    assert probs.shape == (40, 48) and p.sample.limit.roi_hw == (27, 32)


def test_zoom_onto_a_smaller_canvas(api_model):
    """The second click zooms onto a 32x32 canvas, smaller than the image's 64x64 one: the step
    switches programs (f-BRS carrying its variables over is covered by the trace tests)."""
    p = fbrs_jax.make_predictor(api_model, 'NoBRS', zoom_in={'target_size': 32, 'min_crop_size': 16})
    p.set_image(IMAGE)
    p.predict(CLICKS[:1])
    p.sample = p.sample._replace(zoom=p.sample.zoom._replace(prev_box=(12, 27, 14, 33)))  # click 1 found an object
    probs = p.predict(CLICKS)
    assert p.stats.net_canvas == (32, 32) and p.sample.canvas == (64, 64)
    assert probs.shape == (40, 48) and np.isfinite(probs).all()


def test_budgets_share_one_compiled_program(api_model):
    """maxfun / maxiter are data of the click program: a budget sweep compiles once, and the
    budget still binds (maxfun=1: one L-BFGS iteration)."""
    from fbrs_jax.eval.runinfo import CompileCounter
    for k, maxfun in enumerate((1, 8)):
        p = fbrs_jax.make_predictor(api_model, 'f-BRS-C', zoom_in=None, maxfun=maxfun)
        p.set_image(IMAGE)
        counter = CompileCounter()
        p.predict(CLICKS[:1])
        p.predict(CLICKS)
        if k:
            assert counter.read() == {'compilations': 0, 'compile_s': 0.0, 'cache_hits': 0, 'load_s': 0.0}
        assert p.stats.num_evals >= 2 and (p.stats.num_iters == 1 if maxfun == 1 else p.stats.num_evals <= 8 + 20)


def test_compile_counter_tells_compilations_from_cache_loads(tmp_path):
    """JAX reports a persistent-cache load under its compilation event: the counter must not
    count it as a compilation. A fresh process, so the session's in-memory programs stay."""
    import json
    import subprocess
    import sys
    script = f"""
import json, jax, jax.numpy as jnp, numpy as np
from fbrs_jax.eval.runinfo import CompileCounter
jax.config.update('jax_compilation_cache_dir', {str(tmp_path)!r})
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
f = lambda x: jnp.tanh(x @ x.T).sum()
first = CompileCounter()
jax.jit(f)(np.ones((4, 4), np.float32)).block_until_ready()
print(json.dumps(first.read()))
jax.clear_caches()
second = CompileCounter()
jax.jit(f)(np.ones((4, 4), np.float32)).block_until_ready()
print(json.dumps(second.read()))
"""
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True).stdout
    first, second = (json.loads(line) for line in out.strip().splitlines()[-2:])
    assert first['compilations'] >= 1 and first['cache_hits'] == 0 and first['compile_s'] > 0 == first['load_s']
    assert second == {'compilations': 0, 'compile_s': 0.0, 'cache_hits': first['compilations'],
                      'load_s': second['load_s']} and second['load_s'] > 0, second


def _resize_ac(a, hw):
    """Bilinear resize with align-corners semantics (docs/reference.md SPEC §1.8), in float64."""
    for axis, n_out in enumerate(hw):
        n_in = a.shape[axis]
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1, lam = np.minimum(i0 + 1, n_in - 1), src - i0
        shape = [1] * a.ndim
        shape[axis] = n_out
        lam = lam.reshape(shape)
        a = np.take(a, i0, axis) * (1 - lam) + np.take(a, i1, axis) * lam
    return a


def _static_crop_logits_paste(model, box, crop_hw, clicks):
    """The reference pipeline written out for one click list: crop ``box`` of the normalised
    image, resize it to ``crop_hw``, map the clicks (edge mapping), run the network on the image
    and its mirror at that exact size, average the logits, sigmoid, resize to the box and paste
    into zeros (docs/reference.md SPEC §2.2, §2.4-2.6)."""
    from fbrs_jax.models.model import normalize
    r0, r1, c0, c1 = box
    x = _resize_ac(normalize(IMAGE)[r0:r1 + 1, c0:c1 + 1].astype(np.float64), crop_hw).astype(np.float32)
    h, w = crop_hw
    mapped = [(h * (c.row - r0) / (r1 - r0 + 1), w * (c.col - c0) / (c1 - c0 + 1), c.is_positive) for c in clicks]
    rows = lambda flip: [[r, (w - 1 - c) if flip else c] for r, c, positive in mapped if positive] + \
        [[r, (w - 1 - c) if flip else c] for r, c, positive in mapped if not positive]
    points = np.array([rows(False), rows(True)], np.float32)
    logits = np.asarray(model.logits(np.stack([x, x[:, ::-1]]), points), np.float64)[..., 0]
    probs = 1 / (1 + np.exp(-0.5 * (logits[0] + logits[1][:, ::-1])))
    full = np.zeros(IMAGE.shape[:2])
    full[r0:r1 + 1, c0:c1 + 1] = _resize_ac(probs, (r1 - r0 + 1, c1 - c0 + 1))
    return full


def test_limit_longest_side_values(api_model):
    """LimitLongestSide 32 on a 40x48 image: the whole image resized to 27x32, the network at
    that size, the probabilities resized back."""
    p = fbrs_jax.make_predictor(api_model, 'NoBRS', zoom_in=None, max_size=32)
    p.set_image(IMAGE)
    probs = p.predict(CLICKS)
    assert p.sample.limit.roi_hw == (27, 32)
    want = _static_crop_logits_paste(api_model, (0, 39, 0, 47), (27, 32), CLICKS)
    np.testing.assert_allclose(probs, want, atol=2e-6)
    assert 0.05 < probs.mean() < 0.95


def test_zoom_in_values(api_model):
    """ZoomIn (target 32, min crop 16) after a click-1 mask boxed (12, 27, 14, 33): the ROI
    expanded 1.4x about its centre with half-to-even rounding, the crop resized to 26x32, the
    network at that size, the probabilities pasted back with zeros outside the ROI."""
    p = fbrs_jax.make_predictor(api_model, 'NoBRS', zoom_in={'target_size': 32, 'min_crop_size': 16})
    p.set_image(IMAGE)
    p.predict(CLICKS[:1])
    p.sample = p.sample._replace(zoom=p.sample.zoom._replace(prev_box=(12, 27, 14, 33)))
    probs = p.predict(CLICKS)
    assert (p.sample.zoom.roi, p.sample.zoom.roi_hw) == ((8, 31, 10, 38), (26, 32))
    want = _static_crop_logits_paste(api_model, (8, 31, 10, 38), (26, 32), CLICKS)
    np.testing.assert_allclose(probs, want, atol=2e-6)
    inside = np.zeros(IMAGE.shape[:2], bool)
    inside[8:32, 10:39] = True
    assert np.all(probs[~inside] == 0) and probs[inside].min() > 0


def test_a_widened_click_keeps_its_input_on_the_larger_canvas(api_model):
    """``widen`` (the batched evaluator filling a program): an f-BRS-B click that recomputes its
    head input runs on a larger canvas of the same program family; the input then stays there, so
    the clicks past the clicks limit reuse the head input cached on it, until the input changes."""
    from fbrs_jax.inference.predictor import SampleState
    p = fbrs_jax.make_predictor(api_model, 'f-BRS-B', zoom_in=None, canvas=(64, 64), canvas_step=16)
    _, sample = p.new_sample(IMAGE)                      # 40x48: the 48x48 bucket of the 64x64 canvas
    clicks = [fbrs_jax.Click(20, 24, True)] + [fbrs_jax.Click(2 * k, 3, False) for k in range(1, 9)]
    plan, after = p.plan(sample, clicks[:8])                           # within the clicks limit: recomputes
    assert plan.spec.net_canvas == (48, 48) and plan.recompute
    onto = p.step_spec((64, 48))
    assert p.widens(plan.spec, onto, 1.5) and not p.widens(plan.spec, onto, 1.2)   # 4/3 of the pixels
    assert not p.widens(onto, plan.spec, 2.0) and not p.widens(plan.spec, p.step_spec((32, 64)), 2.0)
    wide, held = p.widen(plan, sample, onto)
    assert wide.spec == onto and wide.inp is plan.inp and held.held == (64, 48)
    nxt, later = p.plan(held, clicks)                                  # past the limit: reuses the cache
    assert nxt.spec.net_canvas == (64, 48) and not nxt.recompute and not bool(nxt.inp.reset)
    assert later.held == (64, 48)
    own, _ = p.plan(after, clicks)                                     # not widened: its own canvas
    assert own.spec.net_canvas == (48, 48) and not own.recompute
    with pytest.raises(ValueError, match='cached head input'):
        p.widen(nxt, later, p.step_spec((64, 64)))
    moved = SampleState(sample.hw, sample.canvas, last_input=((64, 48), (30, 30)), held=(64, 48))
    back, _ = p.plan(moved, clicks)                                    # another input size: back home
    assert back.spec.net_canvas == (48, 48) and back.recompute
