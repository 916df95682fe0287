"""Scale-out: the task axis of the training data and of the latents sharded over devices.

One `jax.sharding.Mesh` with a single axis ``"tasks"``; training arrays ``xs``, ``dxs`` of
shape ``(F, N, D)`` and the per-function latents ``(F, latent_dim)`` are split along ``F``
(``NamedSharding(mesh, P("tasks"))``), everything else (meta-parameters, optimiser state,
validation data) is replicated. Each meta-step's batch of functions is constrained to the
same axis, so the per-task inner loops run data-parallel and the outer gradient becomes an
all-reduce (XLA's SPMD partitioner inserts the collectives). The same program runs on one
CPU, one GPU, several GPUs, or several hosts.

Several hosts: start one process per host, each calling `jax.distributed.initialize` before
anything else touches JAX, then call `fit` / `fit_seeds` with ``devices=jax.device_count()``
(the global count) and the same dataset on every process. For example, two GPU hosts::

    # on host 0 (10.0.0.1) and host 1, with PROCESS_ID=0 and 1 respectively:
    python -c "import jax; jax.distributed.initialize('10.0.0.1:1234', num_processes=2,
    process_id=$PROCESS_ID); import runpy, sys; sys.argv = ['run', '--system', 'kepler',
    '--preset', 'paper', '--devices', str(jax.device_count())];
    runpy.run_module('experiments.run', run_name='__main__')"

(On SLURM or Cloud TPU `jax.distributed.initialize()` needs no arguments.) Checkpoints are
gathered to every process and written by process 0 only, so ``checkpoint_dir`` must be on a
file system all hosts share. Multi-host use is written against JAX's documented API but has
only been tested here with several devices in one process.
"""

import equinox as eqx
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXIS = "tasks"


def task_mesh(devices: int, num_tasks: int) -> Mesh:
    """A one-axis ``("tasks",)`` mesh over the first ``devices`` of `jax.devices()`.

    Raises `ValueError` if ``devices`` is not a positive int, does not divide ``num_tasks``
    (the number of training functions ``F``; we do not pad, since padded functions would
    enter the latent mean used at test time), or exceeds the devices available.
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
    return Mesh(np.asarray(available[:devices]), (AXIS,), axis_types=(AxisType.Auto,))


def largest_divisor(num_tasks: int, available: int) -> int:
    """The most devices (at most ``available``) whose count divides ``num_tasks``."""
    return max(d for d in range(1, available + 1) if num_tasks % d == 0)


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
    """Arrays spread over several processes gathered to every process (for checkpoints)."""
    if jax.process_count() == 1:
        return tree
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(multihost_utils.process_allgather(dynamic, tiled=True), static)
