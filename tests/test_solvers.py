"""The solver back ends on small problems with the BRS contract: L-BFGS against SciPy's
L-BFGS-B, Adam against a plain optax loop."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp
import optax

from fbrs_jax.brs.objective import mask_iou
from fbrs_jax.brs.solvers import BACKENDS, SolverSettings, get_backend

MASK0 = jnp.zeros((1, 2, 2, 1), bool)


def rosenbrock(x, last_mask, has_last, scale, stop_below):
    """Rosenbrock in 4-D; 'logits' = x; stops (zero gradient) once the loss is below stop_below."""
    loss = scale * jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    logits = x.reshape(1, 2, 2, 1)
    stop = loss < stop_below
    loss = jnp.where(stop, jax.lax.stop_gradient(loss), loss)
    return loss, {
        'logits': logits,
        'mask': logits > 0,
        'stop': stop,
        'satisfied': stop,
        'stagnated': jnp.asarray(False),
    }


def solve(name, x0, settings, stop_below=-1.0):
    backend = get_backend(name)
    args = (jnp.float32(1.0), jnp.float32(stop_below))
    if backend.on_device:
        run = jax.jit(lambda a, x: backend(rosenbrock, a, x, MASK0, settings))
        return run(args, jnp.asarray(x0, jnp.float32))
    return backend(rosenbrock, args, np.asarray(x0, np.float32), MASK0, settings)


X0 = np.array([-1.2, 1.0, -0.5, 0.8], np.float32)


@pytest.mark.parametrize('name', sorted(set(BACKENDS) - {'adam'}))
def test_backends_reach_the_scipy_minimum(name):
    settings = SolverSettings(maxfun=400, maxiter=200)
    ref = solve('scipy', X0, settings)
    got = solve(name, X0, settings)
    np.testing.assert_allclose(get_backend(name).values(got.x), np.ones(4), atol=2e-3)
    assert float(got.loss) <= 1e-5 and float(ref.loss) <= 1e-5
    # the returned logits are those of the lowest loss seen
    np.testing.assert_allclose(np.asarray(got.logits).ravel(), get_backend(name).values(got.x), atol=2e-3)


@pytest.mark.parametrize('name', ['jaxopt', 'scipy', 'lbfgsb'])
def test_budget_counts_every_evaluation(name):
    """maxfun is checked after each iteration, as SciPy does: the last iteration may overrun
    by its line-search evaluations, no further iteration starts."""
    s = SolverSettings(maxfun=5, maxiter=40)
    r = solve(name, X0, s)
    assert s.maxfun < int(r.num_evals) <= s.maxfun + s.maxls
    assert int(r.num_iters) < 40


def test_jaxopt_follows_scipy_on_the_first_iterations():
    """Same first step rule (1/|g0|, then 1) and strong-Wolfe searches: on Rosenbrock the two
    agree on the early iterates."""
    for maxfun in (1, 2, 3):
        s = SolverSettings(maxfun=maxfun)
        a, b = solve('jaxopt', X0, s), solve('scipy', X0, s)
        np.testing.assert_allclose(np.asarray(a.x), b.x, rtol=1e-4, atol=1e-5)
        assert int(a.num_evals) == b.num_evals


@pytest.mark.parametrize('name', sorted(BACKENDS))
def test_zero_gradient_at_the_start_stops_after_one_evaluation(name):
    r = solve(name, X0, SolverSettings(), stop_below=1e9)
    assert int(r.num_evals) == 1
    np.testing.assert_array_equal(np.asarray(get_backend(name).values(r.x), np.float32), X0)
    np.testing.assert_array_equal(np.asarray(r.logits).ravel(), X0)


def test_adam_takes_maxfun_minus_one_steps_as_optax_does():
    s = SolverSettings(maxfun=7, learning_rate=0.05)
    r = solve('adam', X0, s)
    assert (int(r.num_evals), int(r.num_iters)) == (7, 6)
    opt, x = optax.adam(0.05), jnp.asarray(X0)
    state = opt.init(x)
    losses = []
    for _ in range(7):
        (loss, _), g = jax.value_and_grad(rosenbrock, has_aux=True)(x, MASK0, False, 1.0, -1.0)
        losses.append(float(loss))
        if len(losses) < 7:
            updates, state = opt.update(g, state, x)
            x = optax.apply_updates(x, updates)
    np.testing.assert_allclose(np.asarray(r.x), np.asarray(x), rtol=1e-6)
    assert float(r.loss) == pytest.approx(min(losses), rel=1e-6)


def test_mask_iou_is_float32_and_drops_empty_samples():
    a = jnp.zeros((2, 10, 10, 1), bool).at[0, :, :9].set(True)
    b = jnp.zeros((2, 10, 10, 1), bool).at[0].set(True)
    assert float(mask_iou(a, b)) == pytest.approx(0.9)          # the empty second sample is dropped
    assert np.isnan(float(mask_iou(jnp.zeros_like(a), jnp.zeros_like(a))))
    # IoU of exactly float32(0.99) does not pass the '> 0.99' test in float32
    c = jnp.zeros((1, 10, 10, 1), bool).at[0].set(True)
    d = c.at[0, 0, 0].set(False)
    for fn in (mask_iou, jax.jit(mask_iou)):
        assert float(fn(d, c)) == np.float32(0.99) and not bool(fn(d, c) > np.float32(1 - 0.01))


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match='unknown optimiser back end'):
        get_backend('sgd')
