"""The functions (tasks) of one split as arrays, checked when built."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

_ARRAYS = ("mu", "ts", "xs", "dxs", "query_xs", "query_dxs")


class TaskSet(eqx.Module):
    """The functions (tasks) of one split, as arrays.

    **Fields** (``F`` functions, ``K`` support and ``Q`` query trajectories, ``T`` times):

    - `mu`: ``(F, params)`` system parameters (hidden from learners; for plots and checks).
    - `ts`: ``(T,)`` save times, strictly increasing and uniformly spaced.
    - `xs`: ``(F, K, T, dim)`` support trajectories (training data, or the shots of Alg. 2).
    - `dxs`: ``(F, K, T, dim)`` their centred finite-difference velocities.
    - `query_xs`: ``(F, Q, T, dim)`` trajectories from novel initial states, used only for
      scoring (``Q = 0`` for the training split).
    - `query_dxs`: ``(F, Q, T, dim)`` their exact velocities (the true vector field).
    - `name`: the split's name in error messages (``"train"``, ``"val"``, ``"test"``; static).

    Construction checks the layout (the shapes above, ``F, K, dim >= 1``, ``T >= 2``, one
    floating dtype) and, when the arrays hold values (not under `jax.jit`, `jax.vmap` or
    `eqx.filter_eval_shape`), that every entry is finite and `ts` is a uniform grid; a
    failure is a `TypeError`/`ValueError` naming the split, the field and the first bad index.
    """

    mu: Float[Array, "F params"]
    ts: Float[Array, " T"]
    xs: Float[Array, "F K T dim"]
    dxs: Float[Array, "F K T dim"]
    query_xs: Float[Array, "F Q T dim"]
    query_dxs: Float[Array, "F Q T dim"]
    name: str = eqx.field(static=True, default="TaskSet")

    def __check_init__(self):
        label = "TaskSet" if self.name == "TaskSet" else f"{self.name} TaskSet"
        _check_layout(self, label)
        if all(_holds_values(getattr(self, f)) for f in _ARRAYS):
            _check_values(self, label)

    @property
    def num_functions(self) -> int:
        return self.xs.shape[0]

    @property
    def num_trajectories(self) -> int:
        return self.xs.shape[1]

    @property
    def num_query(self) -> int:
        return self.query_xs.shape[1]

    def take(self, idx) -> "TaskSet":
        """The functions at integer index array ``idx`` (all fields but `ts`)."""
        return TaskSet(
            self.mu[idx], self.ts, self.xs[idx], self.dxs[idx],
            self.query_xs[idx], self.query_dxs[idx], name=self.name,
        )  # fmt: skip

    def shots(self, k: int) -> "TaskSet":
        """The same functions with only the first ``k`` support trajectories."""
        if not isinstance(k, int) or not 1 <= k <= self.num_trajectories:
            raise ValueError(
                f"`k` must be an int in [1, {self.num_trajectories}] (the support "
                f"trajectories available), got k={k!r}."
            )
        return eqx.tree_at(lambda s: (s.xs, s.dxs), self, (self.xs[:, :k], self.dxs[:, :k]))


def _holds_values(x) -> bool:
    """Whether ``x`` has values to check here: not a tracer, a `jax.ShapeDtypeStruct`, or an
    array spread over other processes."""
    if isinstance(x, np.ndarray):
        return True
    return (
        isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) and x.is_fully_addressable
    )


def _check_layout(t: TaskSet, label: str) -> None:
    for f in _ARRAYS:
        x = getattr(t, f)
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            raise TypeError(f"{label}: `{f}` must be an array, got {type(x).__name__}.")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"{label}: `{f}` must be a floating array, got dtype {x.dtype}.")
    if len({getattr(t, f).dtype for f in _ARRAYS}) > 1:
        dtypes = ", ".join(f"{f}: {getattr(t, f).dtype}" for f in _ARRAYS)
        raise TypeError(f"{label}: every field must have one floating dtype, got {dtypes}.")
    xs = t.xs
    if xs.ndim != 4:
        raise ValueError(f"{label}: `xs` must have shape (F, K, T, dim), got shape {xs.shape}.")
    num_f, _, num_t, dim = xs.shape
    if min(num_f, xs.shape[1], dim) < 1 or num_t < 2:
        raise ValueError(
            f"{label}: `xs` (F, K, T, dim) needs F, K, dim >= 1 and T >= 2, got shape {xs.shape}."
        )
    if t.dxs.shape != xs.shape:
        raise ValueError(
            f"{label}: `dxs` must have the shape of `xs`, (F, K, T, dim) = {xs.shape}, "
            f"got shape {t.dxs.shape}."
        )
    q = t.query_xs
    if q.ndim != 4 or (q.shape[0], q.shape[2], q.shape[3]) != (num_f, num_t, dim):
        raise ValueError(
            f"{label}: `query_xs` must have shape (F, Q, T, dim) = ({num_f}, Q, {num_t}, {dim}) "
            f"with F, T, dim of `xs`, got shape {q.shape}."
        )
    if t.query_dxs.shape != q.shape:
        raise ValueError(
            f"{label}: `query_dxs` must have the shape of `query_xs`, {q.shape}, "
            f"got shape {t.query_dxs.shape}."
        )
    if t.mu.ndim != 2 or t.mu.shape[0] != num_f:
        raise ValueError(
            f"{label}: `mu` must have shape (F, params) = ({num_f}, params), "
            f"got shape {t.mu.shape}."
        )
    if t.ts.shape != (num_t,):
        raise ValueError(
            f"{label}: `ts` must have shape (T,) = ({num_t},), the time axis of `xs`, "
            f"got shape {t.ts.shape}."
        )


def _all_finite(x) -> bool:
    if isinstance(x, np.ndarray):
        return bool(np.isfinite(x).all())
    # On the array's own device (a dataset is not copied to the host to be checked), and
    # eagerly even when a TaskSet of concrete arrays is built while tracing.
    with jax.ensure_compile_time_eval():
        return bool(jnp.isfinite(x).all())


def _check_values(t: TaskSet, label: str) -> None:
    for f in _ARRAYS:
        x = getattr(t, f)
        if not _all_finite(x):
            arr = np.asarray(x)
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(
                f"{label}: `{f}` has a non-finite value at index {idx} ({float(arr[idx])})."
            )
    ts = np.asarray(t.ts, np.float64)
    steps = np.diff(ts)
    if not (steps > 0).all():
        i = int(np.argmin(steps > 0))
        raise ValueError(
            f"{label}: `ts` must be strictly increasing, got ts[{i}]={float(ts[i])} and "
            f"ts[{i + 1}]={float(ts[i + 1])}."
        )
    # Times made in the array's dtype (i * dt, linspace, a cast) carry up to two roundings of
    # u = eps / 2 each, so every step, and the mean step, is within 2 eps max|t| of the exact
    # one: a step further than 4 eps max|t| from the mean is a non-uniform grid.
    mean = (ts[-1] - ts[0]) / (len(ts) - 1)
    tol = 4 * float(np.finfo(t.ts.dtype).eps) * float(np.abs(ts).max())
    bad = np.abs(steps - mean) > tol
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{label}: `ts` must be uniformly spaced, but ts[{i + 1}] - ts[{i}] = "
            f"{float(steps[i])} differs from the mean step {float(mean)} by more than float "
            f"tolerance {tol:.2g}."
        )
