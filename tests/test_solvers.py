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



def wavy(x, last_mask, has_last, scale, stop_below):
    """1.41 sin(6.78 x) + x^2 / 2 in 1-D: from x = 2 the first line search's second trial
    (x = 1) is lower than the point the search ends at (x = -3)."""
    loss = scale * jnp.sum(1.41 * jnp.sin(6.78 * x) + 0.5 * x ** 2)
    logits = x.reshape(1, 1, 1, 1)
    return loss, {'logits': logits, 'mask': logits > 0, 'stop': loss < stop_below,
                  'satisfied': jnp.asarray(False), 'stagnated': jnp.asarray(False)}


@pytest.mark.parametrize('name', ['scipy', 'lbfgsb'])
def test_a_solve_cut_inside_a_line_search_returns_the_lowest_evaluation(name):
    """The reference functor's bookkeeping: the logits of the lowest loss over every evaluation
    (line-search trials included), not those of the last evaluation or of the returned x. The
    budget (maxfun 2) is crossed inside the first search, which runs to its end."""
    x0 = np.array([2.0], np.float32)
    settings = SolverSettings(maxfun=2)
    points = []

    loss = lambda x: float(np.sum(1.41 * np.sin(6.78 * x) + 0.5 * x ** 2))

    def f_and_g(x):
        points.append(np.array(x, np.float64))
        return loss(x), 1.41 * 6.78 * np.cos(6.78 * x) + x

    from scipy.optimize import fmin_l_bfgs_b
    x_ref, _, info = fmin_l_bfgs_b(f_and_g, x0.astype(np.float64), m=settings.history, factr=settings.factr,
                                   pgtol=settings.pgtol, maxfun=settings.maxfun, maxiter=settings.maxiter)
    losses = np.array([loss(p) for p in points])
    lowest = points[int(np.argmin(losses))]
    assert info['nit'] == 1 and len(losses) == 3
    assert np.abs(lowest - points[-1]).max() > 1.0 and np.abs(lowest - x_ref).max() > 1.0

    backend = get_backend(name)
    args = (jnp.float32(1.0), jnp.float32(-1e9))
    mask0 = jnp.zeros((1, 1, 1, 1), bool)
    if backend.on_device:
        start = x0.astype(np.float64).view(np.uint32).reshape(1, 2)      # lbfgsb's variables: float64 bits
        got = jax.jit(lambda a, x: backend(wavy, a, x, mask0, settings))(args, start)
    else:
        got = backend(wavy, args, x0, mask0, settings)
    assert int(got.num_evals) == 3
    np.testing.assert_allclose(np.asarray(got.logits).ravel(), lowest, rtol=1e-6)
    assert float(got.loss) == pytest.approx(losses.min(), rel=1e-5)
    np.testing.assert_allclose(np.asarray(backend.values(got.x), np.float64), x_ref, rtol=1e-6)
