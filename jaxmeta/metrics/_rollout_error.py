"""Rollout error: the adapted model rolled out from true initial states (beyond the
paper; the paper's "trajectory error" is the velocity error of `trajectory_error`)."""

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._rollout import rollout

State = Float[Array, " dim"]


def _check_times(xs, ts, time_axis: int) -> None:
    if ts.ndim != 1:
        raise ValueError(f"`ts` must be 1-D, got shape {ts.shape}.")
    if xs.shape[time_axis] != ts.shape[0]:
        raise ValueError(
            f"`xs_true` has {xs.shape[time_axis]} time points (shape {xs.shape}) but `ts` has "
            f"{ts.shape[0]}."
        )


def rollout_error(
    model: Callable[[State], State],
    xs_true: Float[Array, "time dim"],
    ts: Float[Array, " time"],
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> Float[Array, ""]:
    """Relative ℓ2 error of the model's rollout against one true trajectory (the "rollout
    error", beyond the paper).

    The model is rolled out from ``xs_true[0]`` with `jaxmeta.rollout` and the error
    is taken over the whole trajectory at once (Frobenius norms over time and state)::

        ‖x̂ − x‖ / ‖x‖.

    This is not the paper's "trajectory error" (the relative error of the model's output, the
    velocity, at the test states: `jaxmeta.metrics.trajectory_error`); the archived results of
    the documentation report this rollout metric under the name ``trajectory_error``.

    **Arguments:**

    - `model`: the learned vector field ``model(x) -> dx/dt``.
    - `xs_true`: the true trajectory, shape ``(time, dim)``.
    - `ts`: its times, shape ``(time,)``.
    - `solver`, `rtol`, `atol`: passed to `jaxmeta.rollout` (default RK4 stepping
      from one save time to the next, the data generator's integrator).

    **Returns:** a scalar.
    """
    xs_true = jnp.asarray(xs_true)
    ts = jnp.asarray(ts)
    if xs_true.ndim != 2:
        raise ValueError(
            f"`xs_true` must be one trajectory of shape (time, dim), got shape {xs_true.shape}."
        )
    _check_times(xs_true, ts, 0)
    xs_hat = rollout(model, xs_true[0], ts, solver=solver, rtol=rtol, atol=atol)
    return jnp.linalg.norm(xs_hat - xs_true) / jnp.linalg.norm(xs_true)


def rollout_errors(
    model: Callable[[State], State],
    xs_true: Float[Array, "traj time dim"],
    ts: Float[Array, " time"],
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> Float[Array, " traj"]:
    """`rollout_error` of one model on each of a batch of trajectories.

    For a `TaskSet` evaluate a stacked batch of per-function models with
    ``eqx.filter_vmap(lambda m, xs: rollout_errors(m, xs, ts))(models, taskset.query_xs)``
    (shape ``(functions, trajectories)``) and average over the novel trajectories and the test
    functions.

    **Arguments:**

    - `xs_true`: true trajectories, shape ``(traj, time, dim)``.
    - the rest as in `rollout_error`.

    **Returns:** the errors, shape ``(traj,)``.
    """
    xs_true = jnp.asarray(xs_true)
    ts = jnp.asarray(ts)
    if xs_true.ndim != 3:
        raise ValueError(
            f"`xs_true` must be trajectories of shape (traj, time, dim), got shape {xs_true.shape}."
        )
    _check_times(xs_true, ts, 1)
    return jax.vmap(lambda xs: rollout_error(model, xs, ts, solver=solver, rtol=rtol, atol=atol))(
        xs_true
    )
