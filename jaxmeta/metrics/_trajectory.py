"""Trajectory error: the model's velocity at the test trajectories' states (paper §4)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

State = Float[Array, " dim"]


def trajectory_error(
    model: Callable[[State], State],
    xs: Float[Array, "*states dim"],
    dxs: Float[Array, "*states dim"],
) -> Float[Array, ""]:
    """Relative ℓ2 error of the model's velocity at the states of test trajectories.

    The paper's first metric (§4): the "relative ℓ2-error applied to the model's output,
    measured using the test trajectories", where "for testing, we use the ground truth ẋ".
    The model's output is the vector field, so with ``X`` all states of one test function's
    K_test novel trajectories and ``F(X)`` their exact velocities::

        ‖f̂(X) − F(X)‖ / ‖F(X)‖,

    the norms taken over all states and components at once: one ratio per function. The
    paper's Tables 1, 4–10 average it over the test functions. A model that predicts zero
    velocity scores exactly 1; the exact field scores 0. (The error of the model's *rollout*
    is `jaxmeta.metrics.rollout_error`, beyond the paper.)

    For a `TaskSet`, evaluate a stacked batch of per-function models with
    ``eqx.filter_vmap(trajectory_error)(models, taskset.query_xs, taskset.query_dxs)``
    (shape ``(functions,)``) and average.

    **Arguments:**

    - `model`: the learned vector field ``model(x) -> dx/dt`` of one state.
    - `xs`: the states, shape ``(..., dim)``, e.g. ``(trajectories, time, dim)``.
    - `dxs`: their exact velocities, the same shape as `xs`.

    **Returns:** a scalar.
    """
    if not callable(model):
        raise TypeError(f"`model` must be callable as model(x) -> dx/dt, got {model!r}.")
    xs = jnp.asarray(xs)
    dxs = jnp.asarray(dxs)
    if xs.ndim < 1:
        raise ValueError(f"`xs` must have shape (..., dim), got shape {xs.shape}.")
    if dxs.shape != xs.shape:
        raise ValueError(
            f"`dxs` must have the shape of `xs` {xs.shape} (one velocity per state), got shape "
            f"{dxs.shape}."
        )
    if xs.size == 0:
        raise ValueError(f"`xs` holds no states (shape {xs.shape}): the error would be 0/0.")
    dim = xs.shape[-1]
    flat = xs.reshape(-1, dim)
    out = jax.eval_shape(model, flat[0])
    if getattr(out, "shape", None) != (dim,):
        raise ValueError(
            f"`model(x)` must return the state's shape ({dim},) for states `xs` of shape "
            f"{xs.shape}, got {getattr(out, 'shape', out)}."
        )
    learned = jax.vmap(model)(flat)
    true = dxs.reshape(-1, dim)
    return jnp.linalg.norm(learned - true) / jnp.linalg.norm(true)
