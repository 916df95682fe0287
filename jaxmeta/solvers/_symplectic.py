"""Symplectic Diffrax solvers: Störmer–Verlet, Yoshida's 4th-order composition, implicit midpoint.

All three are fixed-step methods without an error estimate. Use them with
`diffrax.StepTo` or `diffrax.ConstantStepSize`, **never under an adaptive controller**: their
``step`` returns ``y_error=None``, so `diffrax.PIDController` raises (Diffrax's own
`diffrax.SemiImplicitEuler` behaves the same way).

`StormerVerlet` and `Yoshida4` are splitting methods for *separable* Hamiltonians
``H(q, p) = T(p) + V(q)``. Like `diffrax.SemiImplicitEuler` they take a pair of terms and a
pair state ``y = (q, p)``::

    terms = (diffrax.ODETerm(lambda t, p, args: dT/dp),    # dq/dt, a function of p
             diffrax.ODETerm(lambda t, q, args: -dV/dq))   # dp/dt, a function of q
    diffrax.diffeqsolve(terms, StormerVerlet(), t0, t1, dt0, y0=(q0, p0), ...)

`ImplicitMidpoint` takes one term and any state; it is symplectic for *every* Hamiltonian
field ``J ∇H`` (separable or not, e.g. the MLP Hamiltonian of an HNN) and conserves quadratic
invariants exactly.
"""

from collections.abc import Callable
from typing import ClassVar, TypeAlias

import diffrax
import jax
from equinox.internal import ω
from jaxtyping import ArrayLike, Float, PyTree

from .._checks import check_int

_Y: TypeAlias = PyTree[Float[ArrayLike, "?*y"]]
_Pair: TypeAlias = tuple[_Y, _Y]
_Terms: TypeAlias = tuple[diffrax.AbstractTerm, diffrax.AbstractTerm]

# Yoshida (1990) triple jump: three leapfrogs of lengths w1 h, w0 h, w1 h.
_CBRT2 = 2.0 ** (1.0 / 3.0)
_W1 = 1.0 / (2.0 - _CBRT2)
_W0 = -_CBRT2 / (2.0 - _CBRT2)


def _kick_drift_kick(terms: _Terms, t0, t1, y0: _Pair, args, drifts: tuple[float, ...]) -> _Pair:
    """A composition of leapfrogs (kick-drift-kick), adjacent half-kicks merged.

    ``drifts`` are the fractions of ``[t0, t1]`` taken by each leapfrog (summing to one).
    Each leapfrog of length ``w h`` is: kick ``p`` by ``w h / 2``, drift ``q`` by ``w h``,
    kick ``p`` by ``w h / 2``.
    """
    drift_term, kick_term = terms
    q, p = y0
    dt = t1 - t0
    # Fractions of [t0, t1] where each drift starts and ends.
    edges = [0.0]
    for w in drifts:
        edges.append(edges[-1] + w)
    # Kick k acts at time t0 + edges[k] dt, with weight (drifts[k-1] + drifts[k]) / 2.
    kicks = [0.5 * (a + b) for a, b in zip((0.0, *drifts), (*drifts, 0.0))]
    for k, kick in enumerate(kicks):
        tk = t0 + edges[k] * dt
        control = kick_term.contr(tk - 0.5 * kick * dt, tk + 0.5 * kick * dt)
        p = (p**ω + kick_term.vf_prod(tk, q, args, control) ** ω).ω
        if k < len(drifts):
            ta, tb = t0 + edges[k] * dt, t0 + edges[k + 1] * dt
            control = drift_term.contr(ta, tb)
            q = (q**ω + drift_term.vf_prod(0.5 * (ta + tb), p, args, control) ** ω).ω
    return q, p


class _AbstractSplitting(diffrax.AbstractSolver):
    """Shared parts of the separable splitting solvers (pair of terms, state ``(q, p)``)."""

    term_structure: ClassVar = (diffrax.AbstractTerm, diffrax.AbstractTerm)
    interpolation_cls: ClassVar[Callable[..., diffrax.LocalLinearInterpolation]] = (
        diffrax.LocalLinearInterpolation
    )
    drifts: ClassVar[tuple[float, ...]]

    def init(self, terms, t0, t1, y0, args):
        del terms, t0, t1, y0, args
        return None

    def step(self, terms: _Terms, t0, t1, y0: _Pair, args, solver_state, made_jump):
        del solver_state, made_jump
        y1 = _kick_drift_kick(terms, t0, t1, y0, args, self.drifts)
        dense_info = dict(y0=y0, y1=y1)
        return y1, None, dense_info, None, diffrax.RESULTS.successful

    def func(self, terms: _Terms, t0, y0: _Pair, args):
        drift_term, kick_term = terms
        q, p = y0
        return drift_term.vf(t0, p, args), kick_term.vf(t0, q, args)


class StormerVerlet(_AbstractSplitting):
    """Störmer–Verlet (leapfrog, kick-drift-kick) for separable ``H = T(p) + V(q)``.

    Symplectic, time-reversible, 2nd order; one force evaluation per step. Takes the pair
    of terms ``(dq/dt as a function of p, dp/dt as a function of q)`` and the state
    ``y = (q, p)``. Fixed step only: no error estimate, never under an adaptive controller.
    Local linear dense output.
    """

    drifts: ClassVar[tuple[float, ...]] = (1.0,)

    def order(self, terms):
        del terms
        return 2


class Yoshida4(_AbstractSplitting):
    """Yoshida's (1990) 4th-order symplectic integrator for separable ``H = T(p) + V(q)``.

    The triple-jump composition of three `StormerVerlet` steps of lengths ``w1 h, w0 h, w1 h``
    with ``w1 = 1 / (2 − 2^{1/3})``, ``w0 = −2^{1/3} w1`` (the middle one steps backwards);
    three force evaluations per step. Same terms and state as `StormerVerlet`. Fixed step
    only: no error estimate, never under an adaptive controller.
    """

    drifts: ClassVar[tuple[float, ...]] = (_W1, _W0, _W1)

    def order(self, terms):
        del terms
        return 4


class ImplicitMidpoint(diffrax.AbstractSolver):
    """The implicit midpoint rule ``y1 = y0 + h f((y0 + y1) / 2)``.

    Symplectic for any Hamiltonian field ``J ∇H`` (no separability needed), time-reversible,
    2nd order; conserves quadratic invariants exactly. Takes one term and any state.

    The implicit equation is solved by a fixed number of fixed-point iterations
    ``y1 ← y0 + h f((y0 + y1) / 2)`` started from an explicit Euler step. Each iteration
    shrinks the error by about ``h Lip(f) / 2``, so the step must satisfy
    ``h Lip(f) < 2``; after ``num_iterations`` iterations the residual is about
    ``(h Lip(f) / 2)^num_iterations`` relative to the step. A fixed count (instead of a
    tolerance-driven loop) keeps the cost predictable under ``vmap`` and the step
    reverse-mode differentiable. Fixed step only: no error estimate, never under an
    adaptive controller.

    **Arguments:**

    - `num_iterations`: fixed-point iterations per step (default 12).
    """

    num_iterations: int = 12

    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar[Callable[..., diffrax.LocalLinearInterpolation]] = (
        diffrax.LocalLinearInterpolation
    )

    def __check_init__(self):
        check_int("num_iterations", self.num_iterations)

    def order(self, terms):
        del terms
        return 2

    def init(self, terms, t0, t1, y0, args):
        del terms, t0, t1, y0, args
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        control = terms.contr(t0, t1)
        tm = t0 + 0.5 * (t1 - t0)

        def update(y1):
            ym = (0.5 * (y0**ω + y1**ω)).ω
            return (y0**ω + terms.vf_prod(tm, ym, args, control) ** ω).ω

        y1 = (y0**ω + terms.vf_prod(t0, y0, args, control) ** ω).ω
        y1 = jax.lax.fori_loop(0, self.num_iterations, lambda _, y: update(y), y1)
        dense_info = dict(y0=y0, y1=y1)
        return y1, None, dense_info, None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
