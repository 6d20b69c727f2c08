"""Back ends for the BRS solve (L-BFGS, and Adam as a first-order baseline), behind one interface.

A back end is called as ``backend(fun, args, x0, mask0, settings) -> SolveResult`` where
``fun(x, last_mask, has_last, *args) -> (loss, aux)`` is the BRS objective with the reference's stop
rules folded in (its gradient is zero when the clicks are satisfied or the mask stagnated,
see ``objective.with_stop_rules``), ``aux`` holds ``logits``, ``mask`` and the ``stop`` flag, and
``mask0`` is an all-False mask of the right shape (no previous mask yet). ``fun`` is a stable
function and ``args`` its array data, so the host back end compiles it once per shape.

* ``JaxoptLBFGS`` (default) and ``OptaxLBFGS`` run the whole solve in JAX (call them inside
  ``jax.jit``): a ``lax.while_loop`` over L-BFGS steps with the evaluation budget, the
  stagnation rule against the last accepted iterate and lowest-loss tracking of accepted
  iterates.
* ``LBFGSB`` is SciPy's L-BFGS-B compiled into the program (``lbfgsb.py``): the reference's
  algorithm and the reference functor's bookkeeping (as ``ScipyLBFGSB``), one objective
  evaluation per loop step, solver arithmetic in float64 (``lbfgsb``; float32 on TPU, and
  ``lbfgsb32`` everywhere). Its variables cross clicks as the raw bits of the float64 vector.
* ``ScipyLBFGSB`` drives SciPy's L-BFGS-B on the host over a jitted objective with the
  reference functor's state (lowest loss over *every* evaluation, stagnation against the last
  evaluation): an exact replay of the reference trajectory.
"""
from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp
import optax

from .reference_settings import HISTORY, MAXFUN


@dataclasses.dataclass(frozen=True)
class SolverSettings:
    """The reference's ``fmin_l_bfgs_b`` call: m=20, factr=0, pgtol=1e-8, maxfun=20, maxiter=40
    (and SciPy's default maxls=20); ``learning_rate`` is for first-order back ends only."""
    maxfun: int = MAXFUN
    maxiter: int = 2 * MAXFUN
    history: int = HISTORY
    pgtol: float = 1e-8
    factr: float = 0.0
    maxls: int = 20
    learning_rate: float = 0.01


class SolveResult(NamedTuple):
    x: Any            # final iterate (the warm start of the next click)
    logits: Any       # logits of the lowest-loss evaluation seen
    loss: Any
    num_evals: Any    # objective evaluations, line search included
    num_iters: Any


class Backend:
    """What every back end shares: the variables carried between clicks (``initial_x`` makes
    zeros of their form, ``values`` reads them as numbers); float32 vectors unless a back end
    says otherwise."""
    def initial_x(self, size: int) -> np.ndarray:
        return np.zeros((size,), np.float32)

    def values(self, x) -> np.ndarray:
        return np.asarray(x)


def _init_loop_state(loss, aux):
    return dict(best_loss=loss, best_logits=aux['logits'],
                last_mask=aux['mask'], has_last=~aux['stop'])


def _track(carry, loss, aux):
    better = loss < carry['best_loss']
    carry = dict(carry)
    carry['best_loss'] = jnp.where(better, loss, carry['best_loss'])
    carry['best_logits'] = jnp.where(better, aux['logits'], carry['best_logits'])
    keep = aux['stop']      # the reference stores no mask from an evaluation that stopped
    carry['last_mask'] = jnp.where(keep, carry['last_mask'], aux['mask'])
    carry['has_last'] = carry['has_last'] | ~keep
    return carry


def _bind(fun, args):
    return lambda x, last_mask, has_last: fun(x, last_mask, has_last, *args)


@functools.lru_cache(maxsize=None)
def _host_value_and_grad(fun):
    return jax.jit(jax.value_and_grad(fun, has_aux=True))


def _jaxopt():
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='JAXopt is no longer maintained', category=DeprecationWarning)
        import jaxopt
    return jaxopt


@functools.lru_cache(maxsize=None)
def _zoom_linesearch_cls():
    jaxopt = _jaxopt()

    class ZoomLineSearch(jaxopt.ZoomLineSearch):
        """jaxopt's zoom line search minus one thing: LBFGS hands it the current value and
        gradient but not the aux, and the stock ``init_state`` then re-evaluates the objective
        for the aux - a full extra forward pass per iteration, counted as an evaluation. Here
        the aux slot starts as zeros of the right structure; it is replaced by the aux of the
        accepted (or, on failure, the re-evaluated) step."""

        def __post_init__(self):
            super().__post_init__()
            fun = self.fun

            def zeros_aux(params, *args, **kwargs):
                shape = jax.eval_shape(lambda p: fun(p, *args, **kwargs)[1], params)
                return None, jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shape)
            self._fun_with_aux = zeros_aux      # used only for that initial aux

        def init_state(self, init_stepsize, params, value=None, grad=None, *args, **kwargs):
            state = super().init_state(init_stepsize, params, value, grad, *args, **kwargs)
            if value is not None and grad is not None:     # the placeholder was no evaluation
                state = state._replace(num_fun_eval=state.num_fun_eval - 1,
                                       num_grad_eval=state.num_grad_eval - 1)
            return state

    return ZoomLineSearch


@dataclasses.dataclass(frozen=True)
class JaxoptLBFGS(Backend):
    """jaxopt.LBFGS with a zoom (strong Wolfe) line search, stepped inside one while loop.
    As in L-BFGS-B, the first trial step is 1/|g0| and later ones start at 1."""
    name = 'jaxopt'
    on_device = True

    def __call__(self, fun: Callable, args, x0, mask0, s: SolverSettings) -> SolveResult:
        fun = _bind(fun, args)
        linesearch = _zoom_linesearch_cls()(fun=fun, has_aux=True, maxiter=s.maxls, max_stepsize=1e10)
        solver = _jaxopt().LBFGS(fun=fun, has_aux=True, maxiter=s.maxiter, tol=s.pgtol,
                                 history_size=s.history, linesearch=linesearch,
                                 linesearch_init='current', max_stepsize=1e10)
        state = solver.init_state(x0, mask0, jnp.asarray(False))
        gnorm = jnp.sqrt(jnp.sum(state.grad ** 2))
        state = state._replace(stepsize=jnp.where(gnorm > 0, 1.0 / gnorm, 1.0).astype(state.stepsize.dtype))
        carry = _init_loop_state(state.value, state.aux)

        def cond(c):
            x, st, carry = c
            return ((st.iter_num < s.maxiter) & (st.num_fun_eval <= s.maxfun)
                    & (jnp.max(jnp.abs(st.grad)) > s.pgtol) & ~st.failed_linesearch)

        def body(c):
            x, st, carry = c
            x, st = solver.update(x, st, carry['last_mask'], carry['has_last'])
            st = st._replace(stepsize=jnp.ones_like(st.stepsize))
            return x, st, _track(carry, st.value, st.aux)

        x, state, carry = jax.lax.while_loop(cond, body, (x0, state, carry))
        return SolveResult(x, carry['best_logits'], carry['best_loss'], state.num_fun_eval, state.iter_num)


@dataclasses.dataclass(frozen=True)
class OptaxLBFGS(Backend):
    """optax.lbfgs (zoom line search) in a while loop; the objective's aux (logits, mask) of each
    accepted iterate is recomputed by one extra forward pass, not counted as an evaluation."""
    name = 'optax'
    on_device = True

    def __call__(self, fun: Callable, args, x0, mask0, s: SolverSettings) -> SolveResult:
        fun = _bind(fun, args)
        opt = optax.lbfgs(memory_size=s.history, linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=s.maxls, initial_guess_strategy='one'))
        value_fn = lambda x, last_mask, has_last: fun(x, last_mask, has_last)[0]
        value_and_grad = optax.value_and_grad_from_state(value_fn)
        (loss0, aux0), grad0 = jax.value_and_grad(fun, has_aux=True)(x0, mask0, jnp.asarray(False))
        state0 = optax.tree_utils.tree_set(opt.init(x0), value=loss0, grad=grad0)
        init = (x0, state0, _init_loop_state(loss0, aux0), jnp.asarray(1), jnp.asarray(0), grad0)

        def cond(c):
            x, st, carry, evals, it, g = c
            return (it < s.maxiter) & (evals <= s.maxfun) & (jnp.max(jnp.abs(g)) > s.pgtol)

        def body(c):
            x, st, carry, evals, it, _ = c
            extra = dict(last_mask=carry['last_mask'], has_last=carry['has_last'])
            value, grad = value_and_grad(x, state=st, **extra)
            updates, st = opt.update(grad, st, x, value=value, grad=grad, value_fn=value_fn, **extra)
            x = optax.apply_updates(x, updates)
            ls = optax.tree_utils.tree_get(st, 'info')
            loss, aux = fun(x, carry['last_mask'], carry['has_last'])
            g_new = optax.tree_utils.tree_get(st, 'grad')
            return x, st, _track(carry, loss, aux), evals + ls.num_linesearch_steps, it + 1, g_new

        x, _, carry, evals, it, _ = jax.lax.while_loop(cond, body, init)
        return SolveResult(x, carry['best_logits'], carry['best_loss'], evals, it)


@dataclasses.dataclass(frozen=True)
class ScipyLBFGSB(Backend):
    """SciPy's L-BFGS-B on the host, with the reference functor's bookkeeping per evaluation.
    Its value-and-grad is jitted once per ``fun`` (array data passed as ``args``); x0 keeps its
    dtype (the reference passes float32 zeros after a reset and SciPy's float64 result afterwards)."""
    name = 'scipy'
    on_device = False

    def __call__(self, fun: Callable, args, x0, mask0, s: SolverSettings) -> SolveResult:
        from scipy.optimize import fmin_l_bfgs_b
        book = {'best_loss': None, 'best_logits': None, 'last_mask': None, 'n': 0}
        value_and_grad = _host_value_and_grad(fun)

        def func(x):
            book['n'] += 1
            has_last = book['last_mask'] is not None
            last = book['last_mask'] if has_last else mask0
            (loss, aux), grad = value_and_grad(jnp.asarray(x, jnp.float32), last, jnp.asarray(has_last), *args)
            f = float(np.float32(loss))
            if book['best_loss'] is None or f < book['best_loss']:
                book['best_loss'], book['best_logits'] = f, aux['logits']
            if not bool(aux['stop']):
                book['last_mask'] = aux['mask']
            return f, np.asarray(grad, np.float64)

        x, _, info = fmin_l_bfgs_b(func, x0, m=s.history, factr=s.factr, pgtol=s.pgtol,
                                   maxfun=s.maxfun, maxiter=s.maxiter, maxls=s.maxls)
        return SolveResult(x, book['best_logits'], book['best_loss'], book['n'], info['nit'])


@dataclasses.dataclass(frozen=True)
class AdamSteps(Backend):
    """Adam at ``s.learning_rate`` for at most ``s.maxfun`` evaluations (the first at x0, then
    one per step); a zero gradient (clicks satisfied, mask stagnated, or a click that is not
    optimised) ends the loop. Returns the last iterate and the lowest-loss logits."""
    name = 'adam'
    on_device = True

    def __call__(self, fun: Callable, args, x0, mask0, s: SolverSettings) -> SolveResult:
        fun = _bind(fun, args)
        opt = optax.adam(s.learning_rate)
        value_and_grad = jax.value_and_grad(fun, has_aux=True)
        (loss0, aux0), grad0 = value_and_grad(x0, mask0, jnp.asarray(False))

        def cond(c):
            x, st, carry, evals, g = c
            return (evals < s.maxfun) & (jnp.max(jnp.abs(g)) > 0)

        def body(c):
            x, st, carry, evals, g = c
            updates, st = opt.update(g, st, x)
            x = optax.apply_updates(x, updates)
            (loss, aux), g = value_and_grad(x, carry['last_mask'], carry['has_last'])
            return x, st, _track(carry, loss, aux), evals + 1, g

        init = (x0, opt.init(x0), _init_loop_state(loss0, aux0), jnp.asarray(1), grad0)
        x, _, carry, evals, _ = jax.lax.while_loop(cond, body, init)
        return SolveResult(x, carry['best_logits'], carry['best_loss'], evals, evals - 1)


@dataclasses.dataclass(frozen=True)
class LBFGSB(Backend):
    """SciPy's L-BFGS-B (no bounds) inside the compiled program, with the reference functor's
    bookkeeping per evaluation (lowest loss over every evaluation, stagnation against the last
    evaluation), see ``lbfgsb.py``. ``precision``: 'float64' solver arithmetic (float32 on TPU,
    which has no float64) or 'float32'. In float64 the variables are carried between clicks as
    their raw bits, (n, 2) uint32 (the programs run without x64; the reference hands SciPy's
    float64 result to the next click): ``initial_x`` makes them, ``values`` reads them."""
    name: str = 'lbfgsb'
    precision: str = 'float64'
    on_device = True

    @property
    def dtype(self):
        f64 = self.precision == 'float64' and jax.default_backend() != 'tpu'
        return jnp.float64 if f64 else jnp.float32

    def initial_x(self, size: int) -> np.ndarray:
        return np.zeros((size, 2), np.uint32) if self.dtype == jnp.float64 else super().initial_x(size)

    def values(self, x) -> np.ndarray:
        x = np.asarray(x)
        return x.view(np.float64)[..., 0] if x.dtype == np.uint32 else x

    def _decode(self, x0):
        if x0.dtype == jnp.uint32:
            return jax.lax.bitcast_convert_type(x0, jnp.float64)
        return x0.astype(self.dtype)

    def _encode(self, x):
        return jax.lax.bitcast_convert_type(x, jnp.uint32) if x.dtype == jnp.float64 else x

    def __call__(self, fun: Callable, args, x0, mask0, s: SolverSettings) -> SolveResult:
        from . import lbfgsb
        fun = _bind(fun, args)
        value_and_grad = jax.value_and_grad(fun, has_aux=True)
        x32 = jax.ShapeDtypeStruct(x0.shape[:1], jnp.float32)
        logits = jax.eval_shape(lambda x: fun(x, mask0, jnp.asarray(False))[1]['logits'], x32)
        book = dict(best_loss=jnp.float32(jnp.inf), best_logits=jnp.zeros(logits.shape, logits.dtype),
                    last_mask=mask0, has_last=jnp.asarray(False))

        def evaluate(x, book):
            with jax.enable_x64(False):      # the objective is the reference's: float32
                (loss, aux), grad = value_and_grad(x.astype(jnp.float32), book['last_mask'], book['has_last'])
                return loss, grad, _track(book, loss, aux)

        with jax.enable_x64(self.dtype == jnp.float64):
            state = lbfgsb.minimize(evaluate, self._decode(x0), book, s, self.dtype)
            x = self._encode(state.x)
        return SolveResult(x, state.book['best_logits'], state.book['best_loss'], state.nfev, state.nit)


BACKENDS = {b.name: b for b in (JaxoptLBFGS(), OptaxLBFGS(), ScipyLBFGSB(), AdamSteps(), LBFGSB(),
                                LBFGSB('lbfgsb32', 'float32'))}
DEFAULT_BACKEND = 'jaxopt'       # the project's specified optimiser


def get_backend(name: str):
    if name not in BACKENDS:
        raise ValueError(f'unknown optimiser back end {name!r}; choose one of {", ".join(BACKENDS)}')
    return BACKENDS[name]
