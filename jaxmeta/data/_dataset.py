"""Datasets of trajectories from a parametric family: one `TaskSet` per split."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..systems import AbstractSystem
from ._simulate import finite_difference, simulate


class TaskSet(eqx.Module):
    """The functions (tasks) of one split, as arrays.

    **Fields** (``F`` functions, ``K`` support and ``Q`` query trajectories, ``T`` times):

    - `mu`: ``(F, params)`` system parameters (hidden from learners; for plots and checks).
    - `ts`: ``(T,)`` save times.
    - `xs`: ``(F, K, T, dim)`` support trajectories (training data, or the shots of Alg. 2).
    - `dxs`: ``(F, K, T, dim)`` their centred finite-difference velocities.
    - `query_xs`: ``(F, Q, T, dim)`` trajectories from novel initial states, used only for
      scoring (``Q = 0`` for the training split).
    - `query_dxs`: ``(F, Q, T, dim)`` their exact velocities (the true vector field).
    """

    mu: Float[Array, "F params"]
    ts: Float[Array, " T"]
    xs: Float[Array, "F K T dim"]
    dxs: Float[Array, "F K T dim"]
    query_xs: Float[Array, "F Q T dim"]
    query_dxs: Float[Array, "F Q T dim"]

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
            self.query_xs[idx], self.query_dxs[idx],
        )  # fmt: skip

    def shots(self, k: int) -> "TaskSet":
        """The same functions with only the first ``k`` support trajectories."""
        if not isinstance(k, int) or not 1 <= k <= self.num_trajectories:
            raise ValueError(
                f"`k` must be an int in [1, {self.num_trajectories}] (the support "
                f"trajectories available), got k={k!r}."
            )
        return eqx.tree_at(lambda s: (s.xs, s.dxs), self, (self.xs[:, :k], self.dxs[:, :k]))


class Dataset(eqx.Module):
    """Train / validation / test `TaskSet`s of one system (spec §1)."""

    train: TaskSet
    val: TaskSet
    test: TaskSet


def split_counts(num_functions: int, split: tuple[float, float, float]) -> tuple[int, int, int]:
    """Function counts per split; the test split takes the rounding remainder."""
    if not isinstance(num_functions, int) or num_functions < 3:
        raise ValueError(f"`num_functions` must be an int >= 3, got {num_functions!r}.")
    if len(split) != 3 or any(not (f > 0) for f in split) or not math.isclose(sum(split), 1.0):
        raise ValueError(
            f"`split` must be three positive fractions summing to 1, got split={split!r}."
        )
    n_train = round(split[0] * num_functions)
    n_val = round(split[1] * num_functions)
    n_test = num_functions - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"`split`={split!r} of {num_functions} functions leaves an empty split "
            f"({n_train}, {n_val}, {n_test})."
        )
    return n_train, n_val, n_test


@eqx.filter_jit
def _trajectories(system, mu, key, num, ts, substeps):
    """``num`` trajectories per parameter vector: ``(F, num, T, dim)`` states and x0s."""
    keys = jax.random.split(key, (mu.shape[0], num))
    x0 = jax.vmap(jax.vmap(system.sample_initial_state, (0, None)), (0, 0))(keys, mu)
    solve = lambda x, m: simulate(lambda y: system.vector_field(y, m), x, ts, substeps=substeps)
    xs = jax.vmap(jax.vmap(solve, (0, None)), (0, 0))(x0, mu)
    return x0, xs


@eqx.filter_jit
def _exact_velocities(system, mu, xs):
    field = lambda x, m: system.vector_field(x, m)
    per_fn = jax.vmap(jax.vmap(field, (0, None)), (0, None))  # over K, then T
    return jax.vmap(per_fn, (0, 0))(xs, mu)


def _make_taskset(system, mu, ts, xs, k: int, with_query: bool) -> TaskSet:
    support = xs[:, :k]
    query = xs[:, k:] if with_query else xs[:, :0]
    return TaskSet(
        mu=mu,
        ts=ts,
        xs=support,
        dxs=finite_difference(support, system.dt),
        query_xs=query,
        query_dxs=_exact_velocities(system, mu, query) if with_query else query,
    )


def generate_dataset(
    system: AbstractSystem,
    key: PRNGKeyArray,
    *,
    num_functions: int = 100,
    split: tuple[float, float, float] = (0.7, 0.2, 0.1),
    num_trajectories: int | None = None,
    num_query: int = 10,
    substeps: int = 4,
    dtype=None,
) -> Dataset:
    """Simulate a dataset of one parametric system (spec §1).

    ``num_functions`` parameter vectors ``μ`` are drawn from the system's ranges and split
    into train/val/test; each function gets ``num_trajectories`` support trajectories from
    random initial states (classical RK4, saved at the system's step over its horizon) with
    finite-difference
    velocities, and validation and test functions get ``num_query`` more from novel initial
    states with exact velocities. The whole dataset is a pure function of ``key``.

    **Arguments:**

    - `system`: an `AbstractSystem`.
    - `key`: a JAX PRNG key.
    - `num_functions`: how many parameter draws (paper: 100).
    - `split`: train/val/test fractions (paper: 0.7/0.2/0.1).
    - `num_trajectories`: support trajectories per function ``K``; defaults to the system's
      `default_num_trajectories` (paper: 20 mass-spring, 10 otherwise).
    - `num_query`: novel trajectories per validation/test function ``K_test``.
    - `substeps`: RK4 steps per saved step. The default 4 keeps the data within 1e-5 of the
      exact flow for every built-in system; 1 is the paper's literal setting (RK4 at the saved
      step, 2e-5 to 7e-5 away from the exact flow).
    - `dtype`: floating dtype; defaults to JAX's default float (float32 unless x64 is on).
    """
    if not isinstance(system, AbstractSystem):
        raise TypeError(f"`system` must be an AbstractSystem, got {type(system).__name__}.")
    counts = split_counts(num_functions, split)
    k = system.default_num_trajectories if num_trajectories is None else num_trajectories
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"`num_trajectories` (K) must be an int >= 1, got {k!r}.")
    if not isinstance(num_query, int) or num_query < 1:
        raise ValueError(f"`num_query` (K_test) must be an int >= 1, got {num_query!r}.")
    dtype = jnp.zeros(0, dtype).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`dtype` must be a floating dtype, got {dtype!r}.")
    k_mu, k_x0 = jax.random.split(key)
    mu = system.sample_params(k_mu, num_functions, dtype=dtype)
    system.check_params(mu)
    # One compiled solve for all functions; the training split simply drops its queries.
    ts = system.times(dtype)
    x0, xs = _trajectories(system, mu, k_x0, k + num_query, ts, substeps)
    system.check_state(x0)
    if not bool(jnp.isfinite(xs).all()):
        raise ValueError(
            f"Simulating {system.name} produced non-finite states: the ranges "
            f"param_ranges={system.param_ranges}, ic_bounds={system.ic_bounds} or the step "
            f"dt={system.dt} give a stiff or unbounded system."
        )
    bounds = np.cumsum((0,) + counts)
    parts = [
        _make_taskset(system, mu[lo:hi], ts, xs[lo:hi], k, with_query=i > 0)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]
    return Dataset(*parts)
