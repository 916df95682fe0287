"""Roll out learned vector fields with Diffrax.

A model is any callable ``model(x) -> dx/dt`` on one state (an `eqx.Module` or a closure);
Hamiltonian models also have ``model.energy(x)``. Both functions act on one initial state:
batch over initial states with ``jax.vmap`` and over a stacked batch of models with
``eqx.filter_vmap``.
"""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .solvers import Autonomous, ImplicitMidpoint, solve_at
from .systems import symplectic_gradient

State = Float[Array, " dim"]
Scalar = Float[Array, ""]


class _Gradient(eqx.Module):
    """``(t, y, args) -> sign ∇f(y)``, a pytree term of a splitting solver."""

    fn: Callable
    sign: float

    def __call__(self, t, y, args):
        del t, args
        return self.sign * jax.grad(self.fn)(y)


class _HamiltonianField(eqx.Module):
    """``(t, x, args) -> J ∇H(x)`` (paper eq. 1)."""

    hamiltonian: Callable

    def __call__(self, t, x, args):
        del t, args
        return symplectic_gradient(self.hamiltonian, x)


def _check_inputs(x0, ts):
    x0 = jnp.asarray(x0)
    ts = jnp.asarray(ts)
    if x0.ndim != 1:
        raise ValueError(f"`x0` must be one state of shape (dim,), got shape {x0.shape}.")
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must be 1-D with at least 2 times, got shape {ts.shape}.")
    return x0, ts


def _check_field(model, x0, name: str = "model") -> None:
    if not callable(model):
        raise TypeError(f"`{name}` must be callable as {name}(x) -> dx/dt, got {model!r}.")
    out = eqx.filter_eval_shape(model, x0)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != x0.shape:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"`{name}(x)` must return an array of the state's shape {x0.shape}, got {shape}."
        )


def rollout(
    model: Callable[[State], State],
    x0: State,
    ts: Float[Array, " time"],
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 100_000,
    substeps: int = 1,
) -> Float[Array, "time dim"]:
    """Integrate ``dx/dt = model(x)`` from ``x0`` and return the states at times ``ts``.

    Without tolerances the solver steps exactly from one save time to the next
    (`diffrax.StepTo`); this is the path for fixed-step solvers (the default classical RK4,
    the data generator's integrator, or `jaxmeta.solvers.ImplicitMidpoint`). With ``rtol``
    and ``atol`` an adaptive `diffrax.PIDController` solve is made, by default with
    `diffrax.Tsit5`; the solver must then have an error estimate (e.g. Tsit5, Dopri5).

    **Arguments:**

    - `model`: the learned vector field ``model(x) -> dx/dt`` of one state.
    - `x0`: initial state, shape ``(dim,)``.
    - `ts`: increasing save times, shape ``(time,)``; ``ts[0]`` is the initial time.
    - `solver`: a single-term Diffrax solver; defaults to `jaxmeta.solvers.RK4()`, or to
      `diffrax.Tsit5()` when tolerances are given.
    - `rtol`, `atol`: tolerances of an adaptive solve (both or neither).
    - `max_steps`: step budget of an adaptive solve.
    - `substeps`: equal fixed steps per interval between save times (fixed-step solves only;
      1 steps at the save times, as the paper's rollouts do).

    **Returns:** the states, shape ``(time, dim)``; row 0 is ``x0``.
    """
    x0, ts = _check_inputs(x0, ts)
    _check_field(model, x0)
    term = diffrax.ODETerm(Autonomous(model))
    return solve_at(
        term, solver, x0, ts, rtol=rtol, atol=atol, max_steps=max_steps, substeps=substeps
    )


def symplectic_rollout(
    model: Callable[[State], State] | None,
    x0: State,
    ts: Float[Array, " time"],
    *,
    solver: diffrax.AbstractSolver | None = None,
    kinetic: Callable[[Float[Array, " n"]], Scalar] | None = None,
    potential: Callable[[Float[Array, " n"]], Scalar] | None = None,
    substeps: int = 1,
) -> Float[Array, "time dim"]:
    """Roll out a Hamiltonian model with a symplectic fixed-step solver.

    Two paths, chosen by the solver's term structure:

    - One-term solvers (default `jaxmeta.solvers.ImplicitMidpoint()`): integrate the field
      ``J ∇H`` built from ``model.energy`` (paper eq. 1), which is Hamiltonian by
      construction whatever ``model(x)`` returns. Works for any, non-separable, ``H``.
    - Two-term splitting solvers (`jaxmeta.solvers.StormerVerlet`,
      `jaxmeta.solvers.Yoshida4`, `diffrax.SemiImplicitEuler`): need a separable
      ``H = T(p) + V(q)`` given as ``kinetic`` (``T(p)``) and ``potential`` (``V(q)``);
      the model is then not used (pass ``None``). The state ``x = (q, p)`` is split in half.

    Steps go from one save time to the next (`diffrax.StepTo`), in ``substeps`` equal steps.
    The energy of a symplectic rollout oscillates (it does not drift) with an amplitude of
    order ``h^p`` (``p = 2`` for implicit midpoint and Störmer–Verlet): ``substeps`` shrinks it.

    **Arguments:**

    - `model`: a model with ``model.energy(x) -> H`` (one-term solvers).
    - `x0`: initial state ``(q, p)``, shape ``(dim,)`` with ``dim`` even.
    - `ts`: increasing save times, shape ``(time,)``.
    - `solver`: a fixed-step symplectic Diffrax solver; defaults to ``ImplicitMidpoint()``.
    - `kinetic`, `potential`: scalar ``T(p)`` and ``V(q)`` of ``n = dim / 2`` coordinates
      (two-term solvers only).
    - `substeps`: equal steps per interval between save times (default 1).

    **Returns:** the states, shape ``(time, dim)``.
    """
    x0, ts = _check_inputs(x0, ts)
    if x0.shape[0] % 2 != 0:
        raise ValueError(f"`x0` must be a state (q, p) of even dimension, got shape {x0.shape}.")
    solver = ImplicitMidpoint() if solver is None else solver
    if not isinstance(solver, diffrax.AbstractSolver):
        raise TypeError(f"`solver` must be a diffrax.AbstractSolver, got {solver!r}.")
    n = x0.shape[0] // 2
    if solver.term_structure == (diffrax.AbstractTerm, diffrax.AbstractTerm):
        if kinetic is None or potential is None:
            raise ValueError(
                f"`kinetic` and `potential` are needed by the splitting solver "
                f"{type(solver).__name__}, got kinetic={kinetic!r}, potential={potential!r}."
            )
        for name, fn in (("kinetic", kinetic), ("potential", potential)):
            out = eqx.filter_eval_shape(fn, x0[:n])
            if getattr(out, "shape", None) != ():
                raise ValueError(
                    f"`{name}` must map {n} coordinates to a scalar, got "
                    f"{getattr(out, 'shape', out)}."
                )
        terms = (
            diffrax.ODETerm(_Gradient(kinetic, 1.0)),
            diffrax.ODETerm(_Gradient(potential, -1.0)),
        )
        y0 = (x0[:n], x0[n:])
    else:
        energy = getattr(model, "energy", None)
        if not callable(energy):
            raise TypeError(
                f"`model` needs an `energy(x)` method for the solver "
                f"{type(solver).__name__}, got {model!r}."
            )
        out = eqx.filter_eval_shape(energy, x0)
        if getattr(out, "shape", None) != ():
            raise ValueError(
                f"`model.energy(x)` must return a scalar, got {getattr(out, 'shape', out)}."
            )
        terms = diffrax.ODETerm(_HamiltonianField(energy))
        y0 = x0
    ys = solve_at(terms, solver, y0, ts, substeps=substeps)
    return jnp.concatenate(ys, axis=-1) if isinstance(ys, tuple) else ys
