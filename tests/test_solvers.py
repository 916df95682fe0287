"""Symplectic Diffrax solvers: convergence order, bounded energy error, agreement with Tsit5.

Vector fields are module-level functions so that `diffrax.diffeqsolve`'s JIT cache is shared
between calls (a fresh lambda per call would recompile).
"""

import functools

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmeta.solvers import ImplicitMidpoint, StormerVerlet, Yoshida4

SOLVERS = [StormerVerlet(), Yoshida4(), ImplicitMidpoint()]
G = 3.0  # pendulum H = p²/2 + G (1 − cos q)


def _drift(t, p, args):
    return p


def _spring_kick(t, q, args):
    return -q


def _pendulum_kick(t, q, args):
    return -G * jnp.sin(q)


def _spring(t, y, args):
    return jnp.stack([y[1], -y[0]])


def _pendulum(t, y, args):
    return jnp.stack([y[1], -G * jnp.sin(y[0])])


def _problem(solver, kick, field, y0):
    """Terms and initial state in the form ``solver`` takes: a pair ``(q, p)`` or a vector."""
    y0 = jnp.asarray(y0)
    if isinstance(solver, ImplicitMidpoint):
        return diffrax.ODETerm(field), y0
    return (diffrax.ODETerm(_drift), diffrax.ODETerm(kick)), (y0[0], y0[1])


def _stack(ys):
    return jnp.stack(ys, axis=-1) if isinstance(ys, tuple) else ys


def _solve_at(solver, kick, field, y0, ts):
    terms, y0 = _problem(solver, kick, field, y0)
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.StepTo(ts=ts),
        max_steps=ts.shape[0] - 1,
    )
    return _stack(sol.ys)


def _oscillator_end(solver, dt, t1=2.0):
    """Harmonic oscillator from (1, 0.5) to ``t1``; ``dt`` is an array, so one compile."""
    terms, y0 = _problem(solver, _spring_kick, _spring, [1.0, 0.5])
    sol = diffrax.diffeqsolve(terms, solver, 0.0, t1, jnp.asarray(dt), y0, max_steps=512)
    return np.ravel(_stack(sol.ys))


def _oscillator_exact(t):
    return np.array([np.cos(t) + 0.5 * np.sin(t), -np.sin(t) + 0.5 * np.cos(t)])


@pytest.mark.parametrize("solver, order", list(zip(SOLVERS, (2, 4, 2))))
def test_order_of_convergence(solver, order):
    assert solver.order(None) == order
    with jax.enable_x64(True):
        ends = [_oscillator_end(solver, 2.0 / n) for n in (10, 20, 40)]
    errors = np.array([np.linalg.norm(end - _oscillator_exact(2.0)) for end in ends])
    np.testing.assert_allclose(np.log2(errors[:-1] / errors[1:]), order, atol=0.1)


@pytest.mark.parametrize("solver", SOLVERS)
def test_energy_error_bounded_over_long_runs(solver):
    # Pendulum, 4000 steps of 0.1 (about 110 periods), in float64 so that the method's
    # error and not float32 round-off is measured.
    with jax.enable_x64(True):
        ts = jnp.linspace(0.0, 400.0, 4001)
        ys = np.asarray(_solve_at(solver, _pendulum_kick, _pendulum, [1.0, 0.5], ts))
    energy = ys[:, 1] ** 2 / 2 + G * (1 - np.cos(ys[:, 0]))
    rel = np.abs(energy - energy[0]) / energy[0]
    assert np.isfinite(rel).all() and rel.max() < 1e-2
    # No secular drift: the late error is no larger than the error seen early on.
    assert rel[2000:].max() < 1.5 * rel[:400].max() + 1e-9


@functools.cache
def _tsit5_pendulum():
    with jax.enable_x64(True):
        ts = jnp.linspace(0.0, 2.0, 201)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_pendulum),
            diffrax.Tsit5(),
            t0=0.0,
            t1=2.0,
            dt0=0.01,
            y0=jnp.array([1.0, 0.5]),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12),
            max_steps=100_000,
        )
        return np.asarray(ts), np.asarray(sol.ys)


@pytest.mark.parametrize("solver, tol", list(zip(SOLVERS, (1e-4, 1e-7, 1e-4))))
def test_agrees_with_tsit5(solver, tol):
    ts, ref = _tsit5_pendulum()
    with jax.enable_x64(True):
        ys = np.asarray(_solve_at(solver, _pendulum_kick, _pendulum, [1.0, 0.5], jnp.array(ts)))
    assert np.abs(ys - ref).max() < tol


def _non_separable(t, y, args):
    q, p = y[0], y[1]  # H = (1 + q²)(1 + p²) / 2
    return jnp.stack([p * (1 + q**2), -q * (1 + p**2)])


def test_midpoint_non_separable_and_quadratic_invariant():
    with jax.enable_x64(True):
        ts = jnp.linspace(0.0, 50.0, 1001)
        ys = np.asarray(_solve_at(ImplicitMidpoint(), None, _non_separable, [0.5, 0.3], ts))
        # Quadratic invariant q² + p² of the linear oscillator: exact up to the fixed-point
        # residual, about (h / 2)^12 per step.
        end = _oscillator_end(ImplicitMidpoint(), 0.05, t1=20.0)
    energy = (1 + ys[:, 0] ** 2) * (1 + ys[:, 1] ** 2) / 2
    assert np.abs(energy / energy[0] - 1).max() < 1e-3
    assert abs(np.sum(end**2) - 1.25) < 1e-10


def test_gradient_through_midpoint():
    def final_q(q0):
        y0 = jnp.stack([q0, jnp.zeros_like(q0)])
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_spring), ImplicitMidpoint(), 0.0, 1.0, 0.05, y0, max_steps=32
        )
        return sol.ys[-1, 0]

    np.testing.assert_allclose(jax.grad(final_q)(jnp.array(1.0)), np.cos(1.0), rtol=1e-3)


@pytest.mark.parametrize("solver", SOLVERS)
def test_adaptive_controller_refused(solver):
    terms, y0 = _problem(solver, _spring_kick, _spring, [1.0, 0.5])
    with pytest.raises(RuntimeError, match="error estimates"):
        diffrax.diffeqsolve(
            terms,
            solver,
            t0=0.0,
            t1=1.0,
            dt0=0.1,
            y0=y0,
            stepsize_controller=diffrax.PIDController(rtol=1e-3, atol=1e-3),
        )


def test_func_and_bad_arguments():
    terms, y0 = _problem(StormerVerlet(), _spring_kick, _spring, [2.0, 3.0])
    dq, dp = StormerVerlet().func(terms, 0.0, y0, None)
    assert (float(dq), float(dp)) == (3.0, -2.0)
    term = diffrax.ODETerm(_spring)
    np.testing.assert_array_equal(ImplicitMidpoint().func(term, 0.0, jnp.ones(2), None), [1, -1])
    with pytest.raises(ValueError, match="num_iterations"):
        ImplicitMidpoint(num_iterations=0)
    with pytest.raises(ValueError, match="term"):  # one term given to a two-term solver
        diffrax.diffeqsolve(term, StormerVerlet(), 0.0, 1.0, 0.1, jnp.ones(2))
