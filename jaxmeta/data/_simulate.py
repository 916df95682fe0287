"""Integrate vector fields (through `jaxmeta.rollout`, the package's one rollout) and
finite-difference velocities."""

from collections.abc import Callable

import diffrax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._rollout import rollout


def simulate(
    field: Callable[[Float[Array, " dim"]], Float[Array, " dim"]],
    x0: Float[Array, " dim"],
    ts: Float[Array, " time"],
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 100_000,
    substeps: int = 1,
) -> Float[Array, "time dim"]:
    """Solve ``dx/dt = field(x)`` from ``x0`` and return the states at times ``ts``: the data
    generator's name for `jaxmeta.rollout` (the same solve, arguments and checks).

    With the default (classical RK4, or any solver without ``rtol``) the solver takes
    ``substeps`` equal steps between consecutive save times (`diffrax.StepTo`), so every save
    time is a step end and no interpolation enters the data.
    With ``rtol``/``atol`` given, an adaptive PID controller is used (for reference solves).

    **Arguments:**

    - `field`: autonomous vector field of one state.
    - `x0`: initial state, shape ``(dim,)``.
    - `ts`: increasing save times, shape ``(time,)``; ``ts[0]`` is the initial time.
    - `solver`: a Diffrax solver; defaults to `jaxmeta.solvers.RK4()`, or `diffrax.Tsit5()`
      when tolerances are given.
    - `rtol`, `atol`: tolerances of an adaptive solve (both or neither).
    - `max_steps`: step budget of an adaptive solve.
    - `substeps`: fixed steps per save interval (fixed-step solves only).
    """
    return rollout(
        field, x0, ts, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps,
        substeps=substeps,
    )  # fmt: skip


def finite_difference(xs: Float[Array, "time dim"], dt: float) -> Float[Array, "time dim"]:
    """Velocities by second-order finite differences along the time axis (axis ``-2``).

    Centred ``(x[i+1] − x[i−1]) / (2 dt)`` inside; second-order one-sided at the two ends,
    ``(−3x[0] + 4x[1] − x[2]) / (2 dt)`` and its mirror, so the error is ``O(dt²)`` everywhere.
    """
    if xs.shape[-2] < 3:
        raise ValueError(f"`xs` needs at least 3 time points, got shape {xs.shape}.")
    if not dt > 0:
        raise ValueError(f"`dt` must be positive, got dt={dt!r}.")
    inner = (xs[..., 2:, :] - xs[..., :-2, :]) / (2 * dt)
    first = (-3 * xs[..., :1, :] + 4 * xs[..., 1:2, :] - xs[..., 2:3, :]) / (2 * dt)
    last = (3 * xs[..., -1:, :] - 4 * xs[..., -2:-1, :] + xs[..., -3:-2, :]) / (2 * dt)
    return jnp.concatenate([first, inner, last], axis=-2)
