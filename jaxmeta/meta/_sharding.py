"""Scale-out: the task axis of the training data and of the latents sharded over devices.

One `jax.sharding.Mesh` with a single axis ``"tasks"``; training arrays ``xs``, ``dxs`` of
shape ``(F, N, D)`` and the per-function latents ``(F, latent_dim)`` are split along ``F``
(``NamedSharding(mesh, P("tasks"))``), everything else (meta-parameters, optimiser state,
validation data) is replicated. Each meta-step's batch of functions is constrained to the
same axis, so the per-task inner loops run data-parallel and the outer gradient becomes an
all-reduce (XLA's SPMD partitioner inserts the collectives). The same program runs on one
CPU, one GPU, several GPUs, or several hosts.

Several processes (hosts): start one process per host, each calling
`jax.distributed.initialize` before anything else touches JAX, then call `fit` / `fit_seeds`
with the same dataset on every process and ``devices`` a multiple of the process count (each
process contributes ``devices / jax.process_count()`` of its local devices; with
``devices=jax.device_count()``, all of them). Each process puts only its own devices' shards
of the training data and latents on them (`jax.make_array_from_callback` from its host copy
of the dataset), checkpoints are gathered and
written by process 0 only (so ``checkpoint_dir`` must be on a file system every process
reads), and the returned states are gathered to every process as process-local arrays.
``python -m experiments.run --coordinator HOST:PORT --num-processes N --process-id I`` does
all of this; ``tests/test_distributed.py`` runs it as two CPU processes on one machine and
checks it against one process with two devices.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXIS = "tasks"


def task_mesh(devices: int, num_tasks: int) -> Mesh:
    """A one-axis ``("tasks",)`` mesh over the first ``devices`` of `jax.devices()`; with
    several processes, over the first ``devices / jax.process_count()`` local devices of each.

    Raises `ValueError` if ``devices`` is not a positive int, does not divide ``num_tasks``
    (the number of training functions ``F``; we do not pad, since padded functions would
    enter the latent mean used at test time), exceeds the devices available, or (several
    processes) is not a multiple of the process count.
    """
    available = jax.devices()
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        raise ValueError(f"`devices` must be a positive int or None, got devices={devices!r}.")
    if num_tasks % devices:
        divisors = [d for d in range(1, devices + 1) if num_tasks % d == 0]
        raise ValueError(
            f"`devices`={devices} does not divide the F={num_tasks} training functions, so the "
            f"task axis cannot be split evenly; use a device count dividing F "
            f"(e.g. {', '.join(map(str, divisors))}) or change the number of functions."
        )
    if devices > len(available):
        raise ValueError(
            f"`devices`={devices} exceeds the {len(available)} available "
            f"{available[0].platform.upper()} device(s) ({available}). On a CPU, more host "
            f"devices can be forced with XLA_FLAGS=--xla_force_host_platform_device_count=N "
            f"set before JAX starts."
        )
    return Mesh(np.asarray(_mesh_devices(devices)), (AXIS,), axis_types=(AxisType.Auto,))


def _mesh_devices(devices: int) -> list:
    available, processes = jax.devices(), jax.process_count()
    if processes == 1:
        return available[:devices]
    local = [[d for d in available if d.process_index == p] for p in range(processes)]
    per = devices // processes
    if devices % processes or any(len(ds) < per for ds in local):
        raise ValueError(
            f"`devices`={devices} cannot be split evenly over the {processes} processes (local "
            f"devices per process: {[len(ds) for ds in local]}); use a multiple of "
            f"{processes} that each process can supply, e.g. jax.device_count()="
            f"{len(available)}."
        )
    return [d for ds in local for d in ds[:per]]


def largest_divisor(num_tasks: int, available: int, *, multiple_of: int = 1) -> int:
    """The most devices (at most ``available``, a multiple of ``multiple_of``, e.g. the
    process count) whose count divides ``num_tasks``; a `ValueError` if there is none."""
    fits = [d for d in range(multiple_of, available + 1, multiple_of) if num_tasks % d == 0]
    if not fits:
        raise ValueError(
            f"No device count up to {available} that is a multiple of `multiple_of`="
            f"{multiple_of} divides the {num_tasks} training functions; change the number of "
            f"processes or of functions."
        )
    return max(fits)


def _put(x, sharding):
    if jax.process_count() == 1 or not eqx.is_array(x):
        return jax.device_put(x, sharding) if eqx.is_array(x) else x
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_tasks(tree, mesh: Mesh, axis: int = 0):
    """Every array of ``tree`` split along dimension ``axis`` over the mesh."""
    spec = P(*([None] * axis), AXIS)
    return jax.tree.map(lambda x: _put(x, NamedSharding(mesh, spec)), tree)


def replicate(tree, mesh: Mesh):
    """Every array of ``tree`` copied to all devices of the mesh."""
    return jax.tree.map(lambda x: _put(x, NamedSharding(mesh, P())), tree)


def shard_state(state, mesh: Mesh, *, stacked: bool = False):
    """A `MetaState` with its latents split over tasks and the rest replicated; ``stacked``:
    every leaf has a leading seed axis (kept whole on every device)."""
    state = replicate(state, mesh)
    if state.latents is None:
        return state
    latents = shard_tasks(state.latents, mesh, axis=1 if stacked else 0)
    return eqx.tree_at(lambda s: s.latents, state, latents)


def constrain_state(state, mesh: Mesh | None):
    """Inside jit: pin the state's layout (latents over tasks, the rest replicated)."""
    if mesh is None:
        return state
    dynamic, static = eqx.partition(state, eqx.is_array)
    rep = NamedSharding(mesh, P())
    dynamic = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, rep), dynamic)
    if dynamic.latents is not None:
        tasks = NamedSharding(mesh, P(AXIS))
        latents = jax.lax.with_sharding_constraint(state.latents, tasks)
        dynamic = eqx.tree_at(lambda s: s.latents, dynamic, latents)
    return eqx.combine(dynamic, static)


def constrain_tasks(x, mesh: Mesh | None):
    """Inside jit: split a batch of tasks over the mesh (uneven batches are padded by XLA)."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(AXIS)))


def to_host(tree):
    """Arrays spread over several processes gathered to every process as NumPy arrays (for
    checkpoints); unchanged in one process."""
    if jax.process_count() == 1:
        return tree
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(multihost_utils.process_allgather(dynamic, tiled=True), static)


def barrier(name: str) -> None:
    """With several processes, wait until every process gets here (e.g. until process 0
    has written a checkpoint that the others may read next); nothing in one process."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def to_local(tree):
    """Arrays spread over several processes as the same process-local arrays on every
    process (so each can score, save or plot them alone); unchanged in one process."""
    if jax.process_count() == 1:
        return tree
    dynamic, static = eqx.partition(to_host(tree), eqx.is_array)
    return eqx.combine(jax.tree.map(jnp.asarray, dynamic), static)
