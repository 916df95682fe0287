"""One trainer for every meta-learner: scanned epochs, validation, checkpoints, NaN guard."""

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

from .._checks import check_int
from .._minibatch import minibatch_epochs
from ..data import Dataset, TaskSet
from ..losses import relative_field_error
from ._base import AbstractMetaLearner, Adapted, ModelFactory
from ._progress import (
    Progress,
    check_losses,
    check_validation,
    load_progress,
    run_config,
    save_progress,
)
from ._result import TrainResult
from ._seeds import one_key, per_seed, stack_keys
from ._sharding import (
    constrain_state,
    constrain_tasks,
    replicate,
    shard_state,
    shard_tasks,
    task_mesh,
    to_local,
)


def flatten_support(tasks: TaskSet) -> tuple[Float[Array, "F n dim"], Float[Array, "F n dim"]]:
    """Support states and finite-difference velocities as ``(F, K·T, dim)`` arrays."""
    f, k, t, d = tasks.xs.shape
    return tasks.xs.reshape(f, k * t, d), tasks.dxs.reshape(f, k * t, d)


def flatten_query(tasks: TaskSet) -> tuple[Float[Array, "F n dim"], Float[Array, "F n dim"]]:
    """Query states and exact velocities as ``(F, Q·T, dim)`` arrays."""
    f, q, t, d = tasks.query_xs.shape
    return tasks.query_xs.reshape(f, q * t, d), tasks.query_dxs.reshape(f, q * t, d)


def _epochs(learner, state, xs, dxs, epoch_keys, mesh=None):
    """``len(epoch_keys)`` epochs: each a random pass over the training functions in batches
    of ``tasks_per_step`` (a remainder smaller than a batch is skipped that epoch). With a
    ``mesh``, each batch is split over its ``"tasks"`` axis and the state's layout pinned."""

    def step(state, idx):
        xb, dxb = constrain_tasks(xs[idx], mesh), constrain_tasks(dxs[idx], mesh)
        state, loss = learner.meta_step(state, xb, dxb, idx)
        return constrain_state(state, mesh), loss

    return minibatch_epochs(step, state, epoch_keys, xs.shape[0], learner.tasks_per_step)


# One program per chunk of epochs; several seeds as one program with a leading seed axis on
# states and epoch keys (`per_seed` picks `_train_epochs` for one seed).
_train_epochs = eqx.filter_jit(_epochs)
_train_epochs_seeds = eqx.filter_jit(
    eqx.filter_vmap(_epochs, in_axes=(None, eqx.if_array(0), None, None, 0, None))
)


@eqx.filter_jit
def adapt(learner, state, tasks: TaskSet, key) -> Adapted:
    """Test-time adaptation of every function of ``tasks`` from its support trajectories."""
    xs, dxs = flatten_support(tasks)
    return learner.adapt(state, xs, dxs, key=key)


@eqx.filter_jit
def validation_error(learner, state, tasks: TaskSet, key) -> Float[Array, " F"]:
    """Adapt to each function (Algorithm 2), then the relative field error of the adapted
    model on the same support trajectories (states and finite-difference velocities).

    Validation sees only what Algorithm 2 sees (paper §4: it samples extra novel-IC
    trajectories "for testing only"), so any query trajectories of ``tasks`` are ignored.
    """
    adapted = adapt(learner, state, tasks, key)
    xs, dxs = flatten_support(tasks)
    return eqx.filter_vmap(relative_field_error)(adapted.models, xs, dxs)


def _mean_validation_error(learner, state, tasks, key):
    return jnp.mean(validation_error(learner, state, tasks, key))


_validation_seeds = eqx.filter_jit(
    eqx.filter_vmap(_mean_validation_error, in_axes=(None, eqx.if_array(0), None, 0))
)


# Positions of the seeded arguments (state, keys) of `_epochs` and `_mean_validation_error`.
_EPOCHS_SEEDED, _VALIDATION_SEEDED = (1, 4), (1, 3)


def _check(learner, dataset: Dataset, epochs, val_every, shots, devices) -> tuple[Dataset, Mesh]:
    """Argument checks; the dataset cut to ``shots`` and the task mesh (None without
    ``devices``)."""
    if not isinstance(learner, AbstractMetaLearner):
        raise TypeError(f"`learner` must be an AbstractMetaLearner, got {type(learner).__name__}.")
    check_int("epochs", epochs)
    check_int("val_every", val_every)
    num_train = dataset.train.num_functions
    if learner.meta_trains and learner.tasks_per_step > num_train:
        raise ValueError(
            f"`tasks_per_step`={learner.tasks_per_step} exceeds the {num_train} training functions."
        )
    mesh = None if devices is None else task_mesh(devices, num_train)
    if shots is not None:
        dataset = Dataset(
            *(split.shots(shots) for split in (dataset.train, dataset.val, dataset.test))
        )
    return dataset, mesh


def _epoch_keys(key, *, start, n):
    return jax.vmap(lambda e: jax.random.fold_in(key, e))(jnp.arange(start, start + n))


def _train(learner, dataset, progress: Progress, keys, config, *, epochs, val_every,
           checkpoint_dir, show, mesh, callback) -> Progress:  # fmt: skip
    """The training loop: chunks of ``val_every`` epochs, each followed by validation, the
    NaN guard and checkpoints. ``progress.state`` and ``keys = (k_train, k_val)`` carry a
    leading seed axis."""
    k_train, k_val = keys
    xs, dxs = flatten_support(dataset.train)
    val_tasks = dataset.val
    if checkpoint_dir is not None:
        progress = load_progress(checkpoint_dir, progress, config, epochs=epochs)
    if mesh is not None:
        xs, dxs = shard_tasks((xs, dxs), mesh)
        val_tasks = replicate(val_tasks, mesh)
        progress = dataclasses.replace(
            progress,
            state=shard_state(progress.state, mesh, stacked=True),
            best_state=shard_state(progress.best_state, mesh, stacked=True),
        )
    name = type(learner).__name__
    with tqdm(total=epochs, initial=progress.epoch, disable=not show, desc=name) as bar:
        while progress.epoch < epochs:
            start, n = progress.epoch, min(val_every, epochs - progress.epoch)
            epoch_keys = jax.vmap(functools.partial(_epoch_keys, start=start, n=n))(k_train)
            state, losses = per_seed(_train_epochs, _train_epochs_seeds, _EPOCHS_SEEDED,
                                     learner, progress.state, xs, dxs, epoch_keys, mesh)  # fmt: skip
            losses = np.asarray(losses)
            check_losses(losses, start, name, checkpoint_dir)
            val_key = jax.vmap(functools.partial(jax.random.fold_in, data=start + n))(k_val)
            vals = per_seed(_mean_validation_error, _validation_seeds, _VALIDATION_SEEDED,
                            learner, state, val_tasks, val_key)  # fmt: skip
            vals = np.asarray(vals, dtype=float)
            check_validation(vals, start + n, name)
            progress, improved = progress.advance(state, losses, vals)
            if callback is not None:
                callback("chunk", progress.epoch)
            if checkpoint_dir is not None:
                save_progress(checkpoint_dir, progress, config, improved=bool(improved.any()),
                              callback=callback)  # fmt: skip
            bar.update(n)
            mean_loss = np.mean([h.train_loss[-1] for h in progress.histories])
            bar.set_postfix(loss=f"{mean_loss:.3e}", val_error=f"{np.mean(vals):.3e}")
    return progress


def fit_seeds(
    learner: AbstractMetaLearner,
    make_model: ModelFactory,
    dataset: Dataset,
    *,
    epochs: int,
    keys: Sequence[PRNGKeyArray] | PRNGKeyArray,
    val_every: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    shots: int | None = None,
    progress: bool = True,
    devices: int | None = None,
    callback: Callable[[str, int], None] | None = None,
) -> list[TrainResult]:
    """`fit` for several seeds at once: one compiled program with a leading seed axis.

    ``fit_seeds(..., keys=[k0, k1, k2])`` returns what ``[fit(..., key=k) for k in keys]``
    returns (to float tolerance: XLA may order batched sums differently; for one key,
    exactly), but initialises, trains and validates the seeds together: `learner.init`
    under `eqx.filter_vmap`, every chunk of ``val_every`` epochs one `eqx.filter_vmap` of the
    same scanned chunk `fit` compiles, validation vmapped too. On an accelerator this fills
    the device that one small seed leaves idle; on a CPU it mostly saves compile time and
    host calls. With one key, the program of one seed runs unbatched.

    Checkpoints hold the stacked state of all seeds (``last``, and ``best``: each seed's own
    best-on-validation state), so a run resumes like `fit`'s; the NaN guard stops all seeds
    and names the one that failed.

    **Arguments:** as `fit`, except

    - `keys`: one PRNG key per seed, all distinct (a repeated key is a `ValueError` naming
      both positions): a sequence of `jax.random.key`s or a stacked ``(S,)`` key array
      (e.g. ``jax.vmap(jax.random.key)(jnp.arange(3))``).
    - `devices`: shard the training functions over this many devices (see `fit`); the seed
      axis is kept whole on every device.
    - `callback`: as `fit`'s.

    **Returns:** a list of ``S`` `TrainResult`s, one per key, in order.
    """
    dataset, mesh = _check(learner, dataset, epochs, val_every, shots, devices)
    keys = stack_keys(keys)
    num_train = dataset.train.num_functions
    split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
    k_init, k_train, k_val = split[:, 0], split[:, 1], split[:, 2]
    init = lambda k: learner.init(make_model, num_train, key=k)
    state = per_seed(init, eqx.filter_vmap(init), (0,), k_init)
    run = Progress.start(state, keys.shape[0])
    if learner.meta_trains:
        config = run_config(learner, state, dataset, val_every, keys)
        run = _train(learner, dataset, run, (k_train, k_val), config, epochs=epochs,
                     val_every=val_every, checkpoint_dir=checkpoint_dir, show=progress,
                     mesh=mesh, callback=callback)  # fmt: skip
        # Several processes: every process gets the whole trained states, as local arrays.
        run = dataclasses.replace(run, state=to_local(run.state),
                                  best_state=to_local(run.best_state))  # fmt: skip
    return [run.result(i) for i in range(keys.shape[0])]


def fit(
    learner: AbstractMetaLearner,
    make_model: ModelFactory,
    dataset: Dataset,
    *,
    epochs: int,
    key: PRNGKeyArray,
    val_every: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    shots: int | None = None,
    progress: bool = True,
    devices: int | None = None,
    callback: Callable[[str, int], None] | None = None,
) -> TrainResult:
    """Meta-train ``learner`` on ``dataset.train``, validating on ``dataset.val``.

    Epochs run in compiled chunks of ``val_every`` (all meta-steps of the chunk in one
    `lax.scan`, one host call); after each chunk the validation error (Algorithm 2, then the
    relative field error on the validation queries) is computed and, with ``checkpoint_dir``,
    the state is checkpointed (``last``) and the best-on-validation state kept (``best``).
    Calling `fit` again with the same ``checkpoint_dir`` resumes from ``last`` (bitwise
    identical on CPU to an uninterrupted run). A checkpoint written for another configuration
    (learner, state shapes, ``val_every``, key, or data: the SHA-256 of every array of the
    dataset, so another family or seed of the same shapes is refused too), one already past
    ``epochs``, or a truncated one is refused with a `jaxmeta.io.CheckpointError` (a
    `ValueError`) naming ``checkpoint_dir`` and what differs. Saves are atomic (see
    `jaxmeta.io.save_checkpoint`): a run killed at any moment resumes from its last complete
    checkpoint. A non-finite loss stops the run with a `FloatingPointError` naming the epoch
    and meta-step; the last good checkpoint is kept.

    **Arguments:**

    - `learner`: an `AbstractMetaLearner` (its hyper-parameters are static).
    - `make_model`: ``key -> model`` (e.g. ``lambda k: HNN(2, key=k)``).
    - `dataset`: a `jaxmeta.data.Dataset`.
    - `epochs`: total epochs (a resumed run continues up to this many).
    - `key`: PRNG key; the whole run is a pure function of it.
    - `val_every`: epochs per compiled chunk, validation and checkpoint.
    - `checkpoint_dir`: where ``last`` and ``best`` checkpoints live (resumes from there).
    - `shots`: use only the first ``shots`` support trajectories of every function.
    - `progress`: show a progress bar.
    - `devices`: shard the training functions (data and latents) over the first ``devices``
      of `jax.devices()` on a one-axis ``"tasks"`` mesh, meta-parameters replicated (see
      `jaxmeta.meta.task_mesh`; several processes: `jaxmeta.meta._sharding`, where the
      returned states are gathered to every process). Must divide the number of training
      functions ``F`` (we do not pad): a `ValueError` names both otherwise. ``None``
      (default): no mesh, JAX's default device. Results agree with an unsharded run to float
      tolerance (the all-reduce may sum in another order).
    - `callback`: ``callback(event, epoch)``, called on the host after each chunk has been
      trained and validated (``"chunk"``), after its ``best`` checkpoint is saved
      (``"best"``, when some seed improved) and after its ``last`` one (``"last"``): a hook
      for monitoring, and for tests that stop a run at a given point by raising from it.

    **Returns:** a `TrainResult` with `state`, `best_state`, `best_epoch` and `history`
    (a `History`: ``train_loss`` per epoch, ``val_error`` per chunk at epochs ``val_epoch``).
    A learner that does not meta-train (`Scratch`) is only initialised.

    ``fit(..., key=k)`` is ``fit_seeds(..., keys=[k])[0]``: one training loop serves both.
    """
    (result,) = fit_seeds(
        learner, make_model, dataset, epochs=epochs, keys=one_key(key)[None],
        val_every=val_every, checkpoint_dir=checkpoint_dir, shots=shots, progress=progress,
        devices=devices, callback=callback,
    )  # fmt: skip
    return result
