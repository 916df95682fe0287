"""A `TaskSet` from plain arrays: bring your own trajectories."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from ._dataset import TaskSet
from ._simulate import finite_difference

#: Relative tolerance of a uniform time grid: every step within 0.1 % of the mean step.
GRID_RTOL = 1e-3


def uniform_step(ts: ArrayLike, *, name: str = "ts") -> float:
    """The step of a uniform, increasing time grid of at least 3 points.

    Each step must equal the mean step ``(ts[-1] − ts[0]) / (T − 1)`` to within
    ``GRID_RTOL`` of it, plus the rounding of the times themselves (``4 eps max|t|`` in their
    dtype), so a float32 grid ``dt·arange(T)`` passes and a perturbed grid does not.

    **Raises** `ValueError` naming ``name`` for fewer than 3 times, non-finite, non-increasing
    or unequal steps.
    """
    arr = np.asarray(ts)
    if arr.ndim != 1 or arr.shape[0] < 3:
        raise ValueError(f"`{name}` must be 1-D with at least 3 times, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"`{name}` must hold real numbers, got dtype {arr.dtype}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` has non-finite times.")
    eps = np.finfo(arr.dtype).eps if np.issubdtype(arr.dtype, np.floating) else 0.0
    t = arr.astype(np.float64)
    steps = np.diff(t)
    dt = (t[-1] - t[0]) / (t.shape[0] - 1)
    if not dt > 0 or (steps <= 0).any():
        raise ValueError(f"`{name}` must be strictly increasing, got steps {steps[:5]}....")
    worst = int(np.argmax(np.abs(steps - dt)))
    if abs(steps[worst] - dt) > GRID_RTOL * dt + 4 * eps * np.abs(t).max():
        raise ValueError(
            f"`{name}` is not a uniform time grid: step {worst} is {steps[worst]:.6g}, the mean "
            f"step {dt:.6g} (resample onto equal steps first)."
        )
    return float(dt)


def taskset_from_arrays(
    ts: Float[ArrayLike, " T"],
    xs: Float[ArrayLike, "*F K T dim"],
    dxs: Float[ArrayLike, "*F K T dim"] | None = None,
    mu: Float[ArrayLike, "*F params"] | None = None,
    *,
    dtype=None,
) -> TaskSet:
    """Support trajectories of one function (or ``F``) as a `TaskSet`, ready for
    `jaxmeta.meta.adapt`.

    Velocities are the given ``dxs`` or, without them, the second-order finite differences the
    training data use (`jaxmeta.data.finite_difference` at the grid's step). The result has no
    query trajectories (``Q = 0``).

    **Arguments:**

    - `ts`: ``(T,)`` uniform, increasing save times, ``T >= 3`` (see `uniform_step`).
    - `xs`: ``(K, T, dim)`` trajectories of one function, or ``(F, K, T, dim)`` of ``F``.
    - `dxs`: exact velocities of the same shape, or None for finite differences.
    - `mu`: the functions' parameters, ``(params,)`` for one function or ``(F, params)``,
      if known; None gives an ``(F, 0)`` array.
    - `dtype`: floating dtype of the result; defaults to JAX's default float.

    **Returns:** a `TaskSet` with ``F`` functions, ``K`` support and no query trajectories.
    """
    dt = uniform_step(ts)
    dtype = jnp.zeros(0, dtype).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`dtype` must be a floating dtype, got {dtype!r}.")
    xs = np.asarray(xs)
    if xs.ndim not in (3, 4):
        raise ValueError(
            f"`xs` must have shape (K, T, dim) or (F, K, T, dim), got shape {xs.shape}."
        )
    one = int(xs.ndim == 3)  # 1: a single function, given without its F axis
    xs = xs[None] if one else xs
    if xs.shape[2] != np.shape(ts)[0]:
        raise ValueError(
            f"`xs` has {xs.shape[2]} time points (shape {xs.shape}) but `ts` has {np.shape(ts)[0]}."
        )
    if xs.shape[1] < 1 or xs.shape[3] < 1:
        raise ValueError(f"`xs` needs at least one trajectory and one state dimension, got "
                         f"shape {xs.shape}.")  # fmt: skip
    if not np.isfinite(xs).all():
        raise ValueError(f"`xs` has non-finite values (shape {xs.shape}).")
    xs = jnp.asarray(xs, dtype)
    if dxs is None:
        dxs = finite_difference(xs, dt)
    else:
        dxs = np.asarray(dxs)
        dxs = dxs[None] if one else dxs
        if dxs.shape != xs.shape:
            raise ValueError(f"`dxs` must have the shape of `xs` {xs.shape[one:]}, got "
                             f"{dxs.shape[one:]}.")  # fmt: skip
        if not np.isfinite(dxs).all():
            raise ValueError(f"`dxs` has non-finite values (shape {dxs.shape[one:]}).")
        dxs = jnp.asarray(dxs, dtype)
    f = xs.shape[0]
    if mu is None:
        mu = jnp.zeros((f, 0), dtype)
    else:
        mu = np.asarray(mu)
        mu = mu[None] if one and mu.ndim == 1 else mu
        if mu.ndim != 2 or mu.shape[0] != f:
            raise ValueError(f"`mu` must have shape ({'' if one else 'F, '}params) for the "
                             f"{f} function(s) of `xs`, got shape {np.shape(mu)}.")  # fmt: skip
        if not np.isfinite(mu).all():
            raise ValueError("`mu` has non-finite values.")
        mu = jnp.asarray(mu, dtype)
    empty = xs[:, :0]
    return TaskSet(mu=mu, ts=jnp.asarray(ts, dtype), xs=xs, dxs=dxs, query_xs=empty,
                   query_dxs=empty)  # fmt: skip
