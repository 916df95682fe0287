"""The one Diffrax call behind data generation and rollouts."""

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.numpy as jnp

from .._checks import check_int
from ._rk4 import RK4


class Autonomous(eqx.Module):
    """``(t, y, args) -> field(y)`` as a pytree, so a model's arrays stay dynamic.

    Wrapping in a Module rather than a fresh lambda lets `diffrax.diffeqsolve`'s JIT cache hit
    across calls with different models (or parameters) of the same structure.
    """

    field: Callable

    def __call__(self, t, y, args):
        del t, args
        return self.field(y)


def solve_at(
    terms,
    solver: diffrax.AbstractSolver | None,
    y0,
    ts,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 100_000,
    substeps: int = 1,
):
    """Solve from ``ts[0]`` and return the states at every time of ``ts``.

    Without tolerances: ``substeps`` fixed steps per save interval (`diffrax.StepTo`), so every
    save time is a step end and nothing is interpolated; default solver classical RK4. With
    ``rtol`` and ``atol``: an adaptive `diffrax.PIDController` solve, default `diffrax.Tsit5`;
    a solver without an error estimate (RK4) is refused there.
    """
    check_int("substeps", substeps)
    if (rtol is None) != (atol is None):
        raise ValueError(f"Give both `rtol` and `atol` or neither, got {rtol=}, {atol=}.")
    adaptive = rtol is not None
    if solver is None:
        solver = diffrax.Tsit5() if adaptive else RK4()
    if adaptive:
        if isinstance(solver, RK4):
            raise ValueError(
                "`solver`=RK4() has no error estimate, so `rtol`/`atol` cannot control it; "
                "use an adaptive solver such as diffrax.Tsit5() or drop the tolerances."
            )
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0, steps = ts[1] - ts[0], max_steps
    else:
        frac = jnp.arange(substeps, dtype=ts.dtype) / substeps
        fine = (ts[:-1, None] + (ts[1:] - ts[:-1])[:, None] * frac[None, :]).reshape(-1)
        controller = diffrax.StepTo(ts=jnp.concatenate([fine, ts[-1:]]))
        dt0, steps = None, (ts.shape[0] - 1) * substeps
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=dt0,
        y0=y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        max_steps=steps,
    )
    return sol.ys
