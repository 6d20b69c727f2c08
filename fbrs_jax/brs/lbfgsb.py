"""SciPy's L-BFGS-B without bounds, as one ``lax.while_loop`` that evaluates the objective once
per step.

The reference refines with ``scipy.optimize.fmin_l_bfgs_b(func, x0, m=20, factr=0, pgtol=1e-8,
maxfun=20, maxiter=40)`` and no bounds (maxls stays at its default, 20).
With every variable free, L-BFGS-B's generalised Cauchy point and subspace minimisation
reduce to the limited-memory quasi-Newton step ``d = -H g`` (H: the inverse of its compact
L-BFGS matrix, computed here by the two-loop recursion with ``H0 = I / theta``) and to the
steepest-descent step ``x - g`` while the memory is empty. Everything else follows SciPy's
C code (``mainlb``, ``lnsrlb``, ``dcsrch``, ``dcstep`` of ``scipy/optimize/src/lbfgsb.c``) and
its Python driver:

* the first trial step of the first iteration is ``min(1 / |d|, 1e10)``, every other one 1;
  a unit step evaluates ``z = x + d`` as formed, other steps ``x + stp * d``;
* the line search is Moré-Thuente's ``dcsrch`` (ftol 1e-3, gtol 0.9, xtol 0.1, stpmin 0,
  stpmax 1e10) with its bracketing, bisection and extrapolation rules, at most ``maxls``
  evaluations per search;
* a search that fails (``maxls`` reached, or a direction that is not a descent direction)
  restores the iterate, then restarts from steepest descent with an empty memory, or ends
  the solve ("abnormal termination") when the memory was already empty;
* at each new iterate: the driver's ``maxiter`` test, then ``nfev > maxfun`` (so the search
  that is running always finishes), then the projected-gradient test ``max|g| <= pgtol``,
  then the relative-reduction test with ``factr``; a correction pair is skipped when
  ``y's <= eps * (-g's)`` (with y's formed from the directional derivatives as SciPy does),
  else ``theta = y'y / y's``;
* the returned ``x`` is the last accepted iterate.

The loop state is a ``LbfgsbState``; each step evaluates the objective at ``trial`` and then
advances the machine (search continues, new iterate, restart or stop) without evaluating again,
so a compiled program holds one copy of the objective and a vmapped lane pays one evaluation
per step. The solver arithmetic runs in ``dtype`` (float64 by default, scoped with
``jax.enable_x64`` to the solver: the objective is the caller's and stays float32).
Not reproduced: SciPy skips re-evaluating a point equal to the last one it evaluated
(a step too small to move x in float64), and the compact representation's round-off.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

FTOL, GTOL, XTOL = 1e-3, 0.9, 0.1     # lnsrlb's line-search tolerances
STPMAX = 1e10                         # lnsrlb's maximum step without bounds
XTRAPL, XTRAPU = 1.1, 4.0             # dcsrch's extrapolation bounds
EPSMCH = 2.220446049250313e-16        # L-BFGS-B's machine epsilon (float64), in any dtype

# LbfgsbState.status
RUNNING, CONV_GRAD, CONV_F, STOP_ITER, STOP_FUN, ABNORMAL = range(6)


class SearchState(NamedTuple):
    """``dcsrch``'s saved variables (MINPACK-2 names): the interval [stx, sty] with function
    values and derivatives at both ends, the bracketing flag and stage, and the widths."""
    brackt: Any
    stage: Any
    ginit: Any
    gtest: Any
    gx: Any
    gy: Any
    finit: Any
    fx: Any
    fy: Any
    stx: Any
    sty: Any
    stmin: Any
    stmax: Any
    width: Any
    width1: Any


class LbfgsbState(NamedTuple):
    """The solver between two evaluations.

    Attributes:
      x, f, g: the current iterate, its objective value and gradient.
      d: the search direction from x; z: ``x + d`` as formed (the trial point of a unit step).
      stp: the step of ``trial``; trial: where the next evaluation is.
      gdold: ``g'd`` at x (the slope at the start of the search).
      search: the line search's state; ifun: evaluations requested by the current search.
      s_mem, y_mem: (m, n) correction pairs, a ring buffer starting at ``head`` with ``col``
        entries; ys: their ``y's`` as L-BFGS-B forms it; theta: ``y'y / y's`` of the newest.
      nit: accepted iterations; nfev: evaluations.
      started: x0 has been evaluated; status: ``RUNNING`` or why the solve stopped.
      book: the caller's bookkeeping, updated by every evaluation.
    """
    x: Any
    f: Any
    g: Any
    d: Any
    z: Any
    stp: Any
    trial: Any
    gdold: Any
    search: SearchState
    ifun: Any
    s_mem: Any
    y_mem: Any
    ys: Any
    head: Any
    col: Any
    theta: Any
    nit: Any
    nfev: Any
    started: Any
    status: Any
    book: Any


def dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):
    """Moré-Thuente's safeguarded step: -> (stx, fx, dx, sty, fy, dy, stp, brackt). The four
    cases are computed and one is selected (scalars: no branches in the compiled loop)."""
    sgnd = dp * (dx / jnp.abs(dx))
    theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
    s = jnp.maximum(jnp.abs(theta), jnp.maximum(jnp.abs(dx), jnp.abs(dp)))
    disc = (theta / s) ** 2 - (dx / s) * (dp / s)
    gamma = s * jnp.sqrt(disc)

    # 1: higher function value, the minimum is bracketed
    g1 = jnp.where(stp < stx, -gamma, gamma)
    r = ((g1 - dx) + theta) / (((g1 - dx) + g1) + dp)
    stpc = stx + r * (stp - stx)
    stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
    stpf1 = jnp.where(jnp.abs(stpc - stx) < jnp.abs(stpq - stx), stpc, stpc + (stpq - stpc) / 2.0)

    # 2: lower value, derivatives of opposite sign
    g2 = jnp.where(stp > stx, -gamma, gamma)
    r = ((g2 - dp) + theta) / (((g2 - dp) + g2) + dx)
    stpc = stp + r * (stx - stp)
    stpq = stp + (dp / (dp - dx)) * (stx - stp)
    stpf2 = jnp.where(jnp.abs(stpc - stp) > jnp.abs(stpq - stp), stpc, stpq)

    # 3: lower value, same sign, the derivative's magnitude decreases
    g3 = s * jnp.sqrt(jnp.maximum(0.0, disc))
    g3 = jnp.where(stp > stx, -g3, g3)
    r = ((g3 - dp) + theta) / ((g3 + (dx - dp)) + g3)
    stpc = jnp.where((r < 0.0) & (g3 != 0.0), stp + r * (stx - stp), jnp.where(stp > stx, stpmax, stpmin))
    stpq = stp + (dp / (dp - dx)) * (stx - stp)
    closer = jnp.where(jnp.abs(stpc - stp) < jnp.abs(stpq - stp), stpc, stpq)
    toward = stp + 0.66 * (sty - stp)
    stpf3_b = jnp.where(stp > stx, jnp.minimum(toward, closer), jnp.maximum(toward, closer))
    farther = jnp.where(jnp.abs(stpc - stp) > jnp.abs(stpq - stp), stpc, stpq)
    stpf3_u = jnp.maximum(stpmin, jnp.minimum(stpmax, farther))
    stpf3 = jnp.where(brackt, stpf3_b, stpf3_u)

    # 4: lower value, same sign, the derivative's magnitude does not decrease
    theta4 = 3.0 * (fp - fy) / (sty - stp) + dy + dp
    s4 = jnp.maximum(jnp.abs(theta4), jnp.maximum(jnp.abs(dy), jnp.abs(dp)))
    g4 = s4 * jnp.sqrt((theta4 / s4) ** 2 - (dy / s4) * (dp / s4))
    g4 = jnp.where(stp > sty, -g4, g4)
    r = ((g4 - dp) + theta4) / (((g4 - dp) + g4) + dy)
    stpf4 = jnp.where(brackt, stp + r * (sty - stp), jnp.where(stp > stx, stpmax, stpmin))

    case1 = fp > fx
    case2 = ~case1 & (sgnd < 0.0)
    case3 = ~case1 & ~case2 & (jnp.abs(dp) < jnp.abs(dx))
    stpf = jnp.where(case1, stpf1, jnp.where(case2, stpf2, jnp.where(case3, stpf3, stpf4)))

    # the interval that contains a minimiser
    to_y = case1 | (sgnd < 0.0)
    sty_, fy_, dy_ = (jnp.where(case1, stp, jnp.where(to_y, stx, sty)),
                      jnp.where(case1, fp, jnp.where(to_y, fx, fy)),
                      jnp.where(case1, dp, jnp.where(to_y, dx, dy)))
    stx_, fx_, dx_ = (jnp.where(case1, stx, stp), jnp.where(case1, fx, fp), jnp.where(case1, dx, dp))
    return stx_, fx_, dx_, sty_, fy_, dy_, stpf, brackt | case1 | case2


def dcsrch_start(f, g, stp, stpmin=0.0, stpmax=STPMAX) -> SearchState:
    """``dcsrch`` with task START: f, g are the value and slope at step 0 (g < 0)."""
    zero = jnp.zeros_like(f)
    width = stpmax - stpmin + zero
    return SearchState(brackt=jnp.asarray(False), stage=jnp.asarray(1, jnp.int32), ginit=g, gtest=FTOL * g,
                       gx=g, gy=g, finit=f, fx=f, fy=f, stx=zero, sty=zero, stmin=zero,
                       stmax=stp + XTRAPU * stp, width=width, width1=width / 0.5)


def dcsrch(f, g, stp, s: SearchState, stpmin=0.0, stpmax=STPMAX):
    """One ``dcsrch`` call with the value f and slope g at ``stp``: -> (finished, stp, state).
    ``finished``: the step is accepted (CONVERGENCE or WARNING); else evaluate at the new stp."""
    ftest = s.finit + stp * s.gtest
    stage = jnp.where((s.stage == 1) & (f <= ftest) & (g >= 0.0), 2, s.stage)
    warn = ((s.brackt & ((stp <= s.stmin) | (stp >= s.stmax)))
            | (s.brackt & ((s.stmax - s.stmin) <= XTOL * s.stmax))
            | ((stp == stpmax) & (f <= ftest) & (g <= s.gtest))
            | ((stp == stpmin) & ((f > ftest) | (g >= s.gtest))))
    conv = (f <= ftest) & (jnp.abs(g) <= GTOL * (-s.ginit))
    finished = warn | conv

    # the modified function psi in the first stage (an offset of 0 leaves the values exact)
    gt = jnp.where((stage == 1) & (f <= s.fx) & (f > ftest), s.gtest, jnp.zeros_like(s.gtest))
    stx, fxm, gxm, sty, fym, gym, new, brackt = dcstep(
        s.stx, s.fx - s.stx * gt, s.gx - gt, s.sty, s.fy - s.sty * gt, s.gy - gt,
        stp, f - stp * gt, g - gt, s.brackt, s.stmin, s.stmax)
    fx, fy, gx, gy = fxm + stx * gt, fym + sty * gt, gxm + gt, gym + gt

    new = jnp.where(brackt & (jnp.abs(sty - stx) >= 0.66 * s.width1), stx + 0.5 * (sty - stx), new)
    width1 = jnp.where(brackt, s.width, s.width1)
    width = jnp.where(brackt, jnp.abs(sty - stx), s.width)
    stmin = jnp.where(brackt, jnp.minimum(stx, sty), new + XTRAPL * (new - stx))
    stmax = jnp.where(brackt, jnp.maximum(stx, sty), new + XTRAPU * (new - stx))
    new = jnp.minimum(jnp.maximum(new, stpmin), stpmax)
    stuck = brackt & ((new <= stmin) | (new >= stmax) | ((stmax - stmin) <= XTOL * stmax))
    new = jnp.where(stuck, stx, new)

    moved = SearchState(brackt, stage, s.ginit, s.gtest, gx, gy, s.finit, fx, fy, stx, sty, stmin, stmax,
                        width, width1)
    kept = s._replace(stage=stage)
    state = jax.tree_util.tree_map(lambda a, b: jnp.where(finished, a, b), kept, moved)
    return finished, jnp.where(finished, stp, new), state


def _two_loop(g, s_mem, y_mem, ys, head, col, theta):
    """``-H g`` for the L-BFGS inverse Hessian of the stored pairs with ``H0 = I / theta``."""
    m = s_mem.shape[0]

    def newest_first(j, c):
        q, alpha = c
        i = (head + col - 1 - j) % m
        a = jnp.dot(s_mem[i], q) / ys[i]
        on = j < col
        return jnp.where(on, q - a * y_mem[i], q), alpha.at[i].set(jnp.where(on, a, 0.0))

    q, alpha = jax.lax.fori_loop(0, m, newest_first, (-g, jnp.zeros_like(ys)))
    r = q / theta

    def oldest_first(j, r):
        i = (head + j) % m
        b = jnp.dot(y_mem[i], r) / ys[i]
        return jnp.where(j < col, r + s_mem[i] * (alpha[i] - b), r)

    return jax.lax.fori_loop(0, m, oldest_first, r)


def _begin_search(st: LbfgsbState) -> LbfgsbState:
    """L-BFGS-B from the top of its loop at the iterate ``st.x``: the direction (quasi-Newton,
    or steepest descent when the memory is empty or its direction is not a descent direction,
    which also empties the memory), the first trial step and the line search's start; a
    steepest-descent direction that is not a descent direction ends the solve (abnormal)."""
    x, g = st.x, st.g

    def direction(use_memory):
        z = x + jax.lax.cond(use_memory, lambda: _two_loop(g, st.s_mem, st.y_mem, st.ys, st.head, st.col, st.theta),
                             lambda: -g)
        d = z - x
        return z, d, jnp.dot(g, d)

    z, d, gd = direction(st.col > 0)
    restart = (st.col > 0) & (gd >= 0.0)
    z, d, gd = jax.lax.cond(restart, lambda: direction(jnp.asarray(False)), lambda: (z, d, gd))
    col = jnp.where(restart, 0, st.col)
    head = jnp.where(restart, 0, st.head)
    theta = jnp.where(restart, jnp.ones_like(st.theta), st.theta)

    dnorm = jnp.sqrt(jnp.dot(d, d))
    stp = jnp.where(st.nit == 0, jnp.minimum(1.0 / dnorm, STPMAX), jnp.ones_like(dnorm))
    trial = jnp.where(stp == 1.0, z, stp * d + x)
    status = jnp.where(gd >= 0.0, ABNORMAL, st.status)
    return st._replace(d=d, z=z, stp=stp, trial=trial, gdold=gd, search=dcsrch_start(st.f, gd, stp),
                       ifun=jnp.asarray(1, jnp.int32), head=head, col=col, theta=theta, status=status)


def _advance(st: LbfgsbState, f, g, settings) -> LbfgsbState:
    """Everything L-BFGS-B and its driver do between two evaluations, given f and g at ``trial``."""
    maxfun, maxiter = settings.maxfun, settings.maxiter
    nfev = st.nfev + 1

    # the running line search (meaningless before x0 is evaluated, and then ignored)
    gd = jnp.dot(g, st.d)
    finished, stp_next, search = dcsrch(f, gd, st.stp, st.search)
    first = ~st.started
    accepted = st.started & finished
    searching = st.started & ~finished
    failed = searching & (st.ifun >= settings.maxls)     # the next request would be past maxls

    new_point = first | accepted
    x = jnp.where(new_point, st.trial, st.x)
    fk = jnp.where(new_point, f, st.f)
    gk = jnp.where(new_point, g, st.g)
    nit = st.nit + accepted.astype(jnp.int32)

    # termination tests at a new iterate, in the driver's and mainlb's order
    stop_iter = accepted & (nit >= maxiter)
    stop_fun = accepted & ~stop_iter & (nfev > maxfun)
    tested = first | (accepted & ~stop_iter & ~stop_fun)
    conv_grad = tested & (jnp.max(jnp.abs(gk)) <= settings.pgtol)
    scale = jnp.maximum(jnp.maximum(jnp.abs(st.f), jnp.abs(f)), 1.0)
    conv_f = accepted & tested & ~conv_grad & ((st.f - f) <= settings.factr * EPSMCH * scale)
    abnormal = failed & (st.col == 0)
    status = jnp.asarray(RUNNING, jnp.int32)
    for flag, code in reversed(((stop_iter, STOP_ITER), (stop_fun, STOP_FUN), (conv_grad, CONV_GRAD),
                                (conv_f, CONV_F), (abnormal, ABNORMAL))):
        status = jnp.where(flag, code, status)

    # the correction pair of an accepted step (skipped when y's is not sufficiently positive)
    unit = st.stp == 1.0
    y = g - st.g
    dr = jnp.where(unit, gd - st.gdold, (gd - st.gdold) * st.stp)
    ddum = jnp.where(unit, -st.gdold, -st.gdold * st.stp)
    update = accepted & (status == RUNNING) & (dr > EPSMCH * ddum)
    m = st.s_mem.shape[0]
    full = st.col == m
    slot = jnp.where(full, st.head, (st.head + st.col) % m)
    s = jnp.where(unit, st.d, st.stp * st.d)
    # one row written (its old value kept without an update), not a select over the whole memory
    s_mem = st.s_mem.at[slot].set(jnp.where(update, s, st.s_mem[slot]))
    y_mem = st.y_mem.at[slot].set(jnp.where(update, y, st.y_mem[slot]))
    ys = st.ys.at[slot].set(jnp.where(update, dr, st.ys[slot]))
    head = jnp.where(update & full, (st.head + 1) % m, st.head)
    col = jnp.where(update & ~full, st.col + 1, st.col)
    theta = jnp.where(update, jnp.dot(y, y) / dr, st.theta)
    # a failed search with a non-empty memory restarts from steepest descent
    restart = failed & (st.col > 0)
    col = jnp.where(restart, 0, col)
    head = jnp.where(restart, 0, head)
    theta = jnp.where(restart, jnp.ones_like(theta), theta)

    st = st._replace(x=x, f=fk, g=gk, nfev=nfev, nit=nit, started=jnp.asarray(True), status=status,
                     s_mem=s_mem, y_mem=y_mem, ys=ys, head=head, col=col, theta=theta,
                     search=search, stp=stp_next, ifun=st.ifun + 1,
                     trial=jnp.where(stp_next == 1.0, st.z, stp_next * st.d + st.x))
    begin = (status == RUNNING) & (new_point | restart)
    return jax.lax.cond(begin, _begin_search, lambda s: s, st)


def minimize(evaluate: Callable, x0, book, settings, dtype=jnp.float64) -> LbfgsbState:
    """Run L-BFGS-B from ``x0``. ``evaluate(x, book) -> (f, g, book)`` is traced inside the
    solver's precision scope (float64 with ``dtype`` float64: an objective of another precision
    casts on its own and leaves the scope with ``jax.enable_x64(False)``); ``settings`` has
    ``maxfun``, ``maxiter``, ``history`` (m), ``pgtol``, ``factr`` and ``maxls`` (the budget
    may be traced). Call inside ``jax.jit``."""
    with jax.enable_x64(jnp.dtype(dtype) == jnp.float64):
        x0 = jnp.asarray(x0).astype(dtype)
        n, m = x0.shape[0], settings.history
        scalar = jnp.zeros((), dtype)
        zeros = jnp.zeros_like(x0)
        st = LbfgsbState(
            x=x0, f=scalar, g=zeros, d=zeros, z=x0, stp=scalar, trial=x0, gdold=scalar,
            search=dcsrch_start(scalar, scalar, scalar), ifun=jnp.asarray(0, jnp.int32),
            s_mem=jnp.zeros((m, n), dtype), y_mem=jnp.zeros((m, n), dtype), ys=jnp.ones((m,), dtype),
            head=jnp.asarray(0, jnp.int32), col=jnp.asarray(0, jnp.int32), theta=scalar + 1.0,
            nit=jnp.asarray(0, jnp.int32), nfev=jnp.asarray(0, jnp.int32), started=jnp.asarray(False),
            status=jnp.asarray(RUNNING, jnp.int32), book=book)

        def body(st):
            f, g, book = evaluate(st.trial, st.book)
            return _advance(st._replace(book=book), jnp.asarray(f, dtype), jnp.asarray(g, dtype), settings)

        return jax.lax.while_loop(lambda st: st.status == RUNNING, body, st)
