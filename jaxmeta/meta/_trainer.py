"""One trainer for every meta-learner: scanned epochs, validation, checkpoints, NaN guard."""

import hashlib
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

from ..data import Dataset, TaskSet
from ..io import checkpoint_exists, load_checkpoint, save_checkpoint
from ..losses import relative_field_error
from ._base import AbstractMetaLearner, Adapted, MetaState, ModelFactory, check_positive


def flatten_support(tasks: TaskSet) -> tuple[Float[Array, "F n dim"], Float[Array, "F n dim"]]:
    """Support states and finite-difference velocities as ``(F, K·T, dim)`` arrays."""
    f, k, t, d = tasks.xs.shape
    return tasks.xs.reshape(f, k * t, d), tasks.dxs.reshape(f, k * t, d)


def flatten_query(tasks: TaskSet) -> tuple[Float[Array, "F n dim"], Float[Array, "F n dim"]]:
    """Query states and exact velocities as ``(F, Q·T, dim)`` arrays."""
    f, q, t, d = tasks.query_xs.shape
    return tasks.query_xs.reshape(f, q * t, d), tasks.query_dxs.reshape(f, q * t, d)


def _filter_scan(f, state, xs):
    """`lax.scan` over a carry holding non-array leaves (activations, factories)."""
    dynamic, static = eqx.partition(state, eqx.is_array)

    def body(carry, x):
        new, out = f(eqx.combine(carry, static), x)
        return eqx.filter(new, eqx.is_array), out

    dynamic, outs = jax.lax.scan(body, dynamic, xs)
    return eqx.combine(dynamic, static), outs


@eqx.filter_jit
def _train_epochs(learner, state, xs, dxs, epoch_keys):
    """``len(epoch_keys)`` epochs: each a random pass over the training functions in batches
    of ``tasks_per_step`` (a remainder smaller than a batch is skipped that epoch)."""
    num, batch = xs.shape[0], learner.tasks_per_step
    steps = num // batch

    def epoch(state, key):
        order = jax.random.permutation(key, num)[: steps * batch].reshape(steps, batch)
        step = lambda s, idx: learner.meta_step(s, xs[idx], dxs[idx], idx)
        return _filter_scan(step, state, order)

    return _filter_scan(epoch, state, epoch_keys)


@eqx.filter_jit
def adapt(learner, state, tasks: TaskSet, key) -> Adapted:
    """Test-time adaptation of every function of ``tasks`` from its support trajectories."""
    xs, dxs = flatten_support(tasks)
    return learner.adapt(state, xs, dxs, key=key)


@eqx.filter_jit
def validation_error(learner, state, tasks: TaskSet, key) -> Float[Array, " F"]:
    """Adapt to each function (Algorithm 2), then the relative field error on its query
    trajectories (novel initial states, exact velocities)."""
    adapted = adapt(learner, state, tasks, key)
    qx, qdx = flatten_query(tasks)
    return eqx.filter_vmap(relative_field_error)(adapted.models, qx, qdx)


class TrainResult(eqx.Module):
    """What `fit` returns: final and best-on-validation states and the history."""

    state: MetaState
    best_state: MetaState
    best_epoch: int = eqx.field(static=True)
    history: dict = eqx.field(static=True)


def _empty_history() -> dict:
    return {"train_loss": [], "val_epoch": [], "val_error": []}


def _config(learner, like_state, dataset, val_every, key) -> dict:
    shapes = [(str(x.dtype), list(x.shape)) for x in jax.tree.leaves(like_state) if eqx.is_array(x)]
    data_shapes = [list(x.shape) for x in jax.tree.leaves(dataset)]
    return {
        "learner": eqx.tree_pformat(learner, short_arrays=True),
        "state": hashlib.sha256(repr(shapes).encode()).hexdigest(),
        "data": data_shapes,
        "val_every": val_every,
        "key": np.asarray(jax.random.key_data(key)).tolist(),
    }


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
) -> TrainResult:
    """Meta-train ``learner`` on ``dataset.train``, validating on ``dataset.val``.

    Epochs run in compiled chunks of ``val_every`` (all meta-steps of the chunk in one
    `lax.scan`, one host call); after each chunk the validation error (Algorithm 2, then the
    relative field error on the validation queries) is computed and, with ``checkpoint_dir``,
    the state is checkpointed (``last``) and the best-on-validation state kept (``best``).
    Calling `fit` again with the same ``checkpoint_dir`` resumes from ``last`` (bitwise
    identical on CPU to an uninterrupted run); a checkpoint written for another configuration,
    or truncated, is refused with a `ValueError`. A non-finite loss stops the run with a
    `FloatingPointError` naming the epoch and meta-step; the last good checkpoint is kept.

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

    **Returns:** a `TrainResult` with `state`, `best_state`, `best_epoch` and `history`
    (``train_loss`` per epoch, ``val_error`` per chunk at epochs ``val_epoch``).
    """
    if not isinstance(learner, AbstractMetaLearner):
        raise TypeError(f"`learner` must be an AbstractMetaLearner, got {type(learner).__name__}.")
    check_positive("epochs", epochs, int)
    check_positive("val_every", val_every, int)
    num_train = dataset.train.num_functions
    if learner.meta_trains and learner.tasks_per_step > num_train:
        raise ValueError(
            f"`tasks_per_step`={learner.tasks_per_step} exceeds the {num_train} training functions."
        )
    if shots is not None:
        dataset = Dataset(
            *(split.shots(shots) for split in (dataset.train, dataset.val, dataset.test))
        )
    k_init, k_train, k_val = jax.random.split(key, 3)
    state = learner.init(make_model, num_train, key=k_init)
    if not learner.meta_trains:
        return TrainResult(state, state, 0, _empty_history())

    xs, dxs = flatten_support(dataset.train)
    history = _empty_history()
    best_state, best_val, best_epoch, start = state, np.inf, 0, 0
    config = _config(learner, state, dataset, val_every, key)
    last = best = None
    if checkpoint_dir is not None:
        last, best = Path(checkpoint_dir) / "last", Path(checkpoint_dir) / "best"
        if checkpoint_exists(last):
            state, header = load_checkpoint(last, state, config=config)
            best_state, best_header = load_checkpoint(best, state, config=config)
            start, history = header["epoch"], header["history"]
            best_val, best_epoch = best_header["best_val"], best_header["best_epoch"]

    bar = tqdm(total=epochs, initial=start, disable=not progress, desc=type(learner).__name__)
    epoch = start
    while epoch < epochs:
        n = min(val_every, epochs - epoch)
        keys = jax.vmap(lambda e: jax.random.fold_in(k_train, e))(jnp.arange(epoch, epoch + n))
        new_state, losses = _train_epochs(learner, state, xs, dxs, keys)
        losses = np.asarray(losses)
        if not np.isfinite(losses).all():
            e, s = np.argwhere(~np.isfinite(losses))[0]
            bar.close()
            raise FloatingPointError(
                f"Non-finite training loss at epoch {epoch + e}, meta-step {s} of "
                f"{type(learner).__name__}; stopped. Last good checkpoint: "
                f"{f'epoch {epoch} in {checkpoint_dir}' if last else 'none (no checkpoint_dir)'}."
            )
        state, epoch = new_state, epoch + n
        val = float(
            jnp.mean(
                validation_error(learner, state, dataset.val, jax.random.fold_in(k_val, epoch))
            )
        )
        if not np.isfinite(val):
            bar.close()
            raise FloatingPointError(
                f"Non-finite validation error after epoch {epoch} of {type(learner).__name__}."
            )
        history["train_loss"].extend(losses.mean(axis=1).tolist())
        history["val_epoch"].append(epoch)
        history["val_error"].append(val)
        if val < best_val:
            best_state, best_val, best_epoch = state, val, epoch
            if best is not None:
                save_checkpoint(
                    best,
                    state,
                    {"config": config, "epoch": epoch, "best_val": val, "best_epoch": epoch},
                )
        if last is not None:
            save_checkpoint(last, state, {"config": config, "epoch": epoch, "history": history})
        bar.update(n)
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.3e}", val_error=f"{val:.3e}")
    bar.close()
    return TrainResult(state, best_state, best_epoch, history)
