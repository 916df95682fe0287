"""Datasets of trajectories from a parametric family: one `TaskSet` per split."""

import math
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._checks import check_int, check_positive
from ..systems import AbstractSystem
from ._simulate import finite_difference, simulate
from ._taskset import TaskSet

_SPLITS = ("train", "val", "test")


class Dataset(eqx.Module):
    """Train / validation / test `TaskSet`s of one system (paper §4, App. D)."""

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


def _make_taskset(system, mu, ts, xs, k: int, with_query: bool, name: str) -> TaskSet:
    support = xs[:, :k]
    query = xs[:, k:] if with_query else xs[:, :0]
    return TaskSet(
        mu=mu,
        ts=ts,
        xs=support,
        dxs=finite_difference(support, system.dt),
        query_xs=query,
        query_dxs=_exact_velocities(system, mu, query) if with_query else query,
        name=name,
    )


def _checked_options(system, num_functions, split, num_trajectories, num_query, substeps, dtype):
    """The options of `generate_dataset`, checked: ``(counts, K, dtype)``."""
    if not isinstance(system, AbstractSystem):
        raise TypeError(f"`system` must be an AbstractSystem, got {type(system).__name__}.")
    counts = split_counts(num_functions, split)
    k = system.default_num_trajectories if num_trajectories is None else num_trajectories
    check_int("num_trajectories", k)
    check_int("num_query", num_query)
    check_int("substeps", substeps)
    dtype = jnp.zeros(0, dtype).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"`dtype` must be a floating dtype, got {dtype!r}.")
    return counts, k, dtype


def estimate_dataset_bytes(
    system: AbstractSystem,
    *,
    num_functions: int = 100,
    split: tuple[float, float, float] = (0.7, 0.2, 0.1),
    num_trajectories: int | None = None,
    num_query: int = 10,
    substeps: int = 4,
    dtype=None,
) -> int:
    """Peak memory, in bytes, that `generate_dataset` needs with these options (an estimate).

    With ``F`` functions, ``K`` support and ``Q`` query trajectories, ``T = t1 / dt + 1`` save
    times and ``dim`` state dimensions of ``itemsize`` bytes, one trajectory is
    ``T · dim · itemsize`` bytes, and generation holds at once: the one compiled solve of all
    ``F (K + Q)`` trajectories; the support states and their velocities (``2 F K``
    trajectories) and the query states and exact velocities of the validation and test
    functions; the largest temporary of one split (the finite-difference pieces, the vmapped
    field's per-point matrices of up to ``dim²`` entries, or the finiteness mask); and RK4's
    working set, about 8 states per trajectory (the sub-steps are a loop: their number does
    not add memory). Arguments as in `generate_dataset`.
    """
    counts, k, dtype = _checked_options(
        system, num_functions, split, num_trajectories, num_query, substeps, dtype
    )
    n_train, n_val, n_test = counts
    num_t, dim, item = system.num_steps + 1, system.state_dim, dtype.itemsize
    trajectory = num_t * dim * item
    solve = num_functions * (k + num_query) * trajectory
    support = 2 * num_functions * k * trajectory
    query = 2 * (n_val + n_test) * num_query * trajectory
    temporary = max(
        2 * max(counts) * k * trajectory,  # finite differences of one split
        max(n_val, n_test) * num_query * num_t * (2 * dim * dim + 4 * dim) * item,  # exact field
        num_functions * (k + num_query) * num_t * dim,  # the finiteness mask (1 byte a value)
    )
    rk4 = 8 * num_functions * (k + num_query) * dim * item
    return solve + support + query + temporary + rk4


def _default_max_bytes() -> int:
    """Half the memory of the machine (or of the default device, when it reports less)."""
    try:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        limit = 8 * 2**30
    stats = jax.local_devices()[0].memory_stats() or {}
    if stats.get("bytes_limit"):
        limit = min(limit, stats["bytes_limit"])
    return limit // 2


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


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
    max_bytes: int | float | None = None,
) -> Dataset:
    """Simulate a dataset of one parametric system (paper §4, App. D).

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
    - `max_bytes`: refuse, with a `MemoryError` before anything is allocated, a dataset whose
      `estimate_dataset_bytes` exceeds this; defaults to half the machine's memory (half the
      default device's, if that is less; 8 GiB where the machine's size is unknown).
    """
    counts, k, dtype = _checked_options(
        system, num_functions, split, num_trajectories, num_query, substeps, dtype
    )
    if max_bytes is None:
        max_bytes = _default_max_bytes()
    check_positive("max_bytes", max_bytes)
    need = estimate_dataset_bytes(
        system, num_functions=num_functions, split=split, num_trajectories=k,
        num_query=num_query, substeps=substeps, dtype=dtype,
    )  # fmt: skip
    if need > max_bytes:
        raise MemoryError(
            f"The {system.name} dataset needs about {_gib(need)} ({num_functions} functions x "
            f"({k} support + {num_query} query trajectories) x {system.num_steps + 1} times "
            f"x {system.state_dim} dims x {dtype.itemsize} bytes, with velocities and solver "
            f"memory), more than max_bytes={_gib(max_bytes)}: lower `num_trajectories`, "
            "`num_query` or `num_functions`, or raise the system's `dt` (fewer time points)."
        )
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
        _make_taskset(system, mu[lo:hi], ts, xs[lo:hi], k, with_query=i > 0, name=name)
        for i, (lo, hi, name) in enumerate(zip(bounds[:-1], bounds[1:], _SPLITS))
    ]
    return Dataset(*parts)
