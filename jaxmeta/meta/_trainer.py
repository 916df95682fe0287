"""One trainer for every meta-learner: scanned epochs, validation, checkpoints, NaN guard."""

import functools
import hashlib
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float, PRNGKeyArray
from tqdm.auto import tqdm

from ..data import Dataset, TaskSet
from ..io import checkpoint_exists, load_checkpoint, save_checkpoint
from ..losses import relative_field_error
from ._base import AbstractMetaLearner, Adapted, MetaState, ModelFactory, check_positive
from ._sharding import (
    constrain_state,
    constrain_tasks,
    replicate,
    shard_state,
    shard_tasks,
    task_mesh,
    to_host,
)


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


def _epochs(learner, state, xs, dxs, epoch_keys, mesh=None):
    """``len(epoch_keys)`` epochs: each a random pass over the training functions in batches
    of ``tasks_per_step`` (a remainder smaller than a batch is skipped that epoch). With a
    ``mesh``, each batch is split over its ``"tasks"`` axis and the state's layout pinned."""
    num, batch = xs.shape[0], learner.tasks_per_step
    steps = num // batch

    def step(state, idx):
        xb, dxb = constrain_tasks(xs[idx], mesh), constrain_tasks(dxs[idx], mesh)
        state, loss = learner.meta_step(state, xb, dxb, idx)
        return constrain_state(state, mesh), loss

    def epoch(state, key):
        order = jax.random.permutation(key, num)[: steps * batch].reshape(steps, batch)
        return _filter_scan(step, state, order)

    return _filter_scan(epoch, state, epoch_keys)


_train_epochs = eqx.filter_jit(_epochs)
# Several seeds as one program: states and epoch keys carry a leading seed axis.
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
    """Adapt to each function (Algorithm 2), then the relative field error on its query
    trajectories (novel initial states, exact velocities)."""
    adapted = adapt(learner, state, tasks, key)
    qx, qdx = flatten_query(tasks)
    return eqx.filter_vmap(relative_field_error)(adapted.models, qx, qdx)


def _mean_validation_error(learner, state, tasks, key):
    return jnp.mean(validation_error(learner, state, tasks, key))


_validation_seeds = eqx.filter_jit(
    eqx.filter_vmap(_mean_validation_error, in_axes=(None, eqx.if_array(0), None, 0))
)


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


def _check(learner, dataset: Dataset, epochs, val_every, shots, devices) -> tuple[Dataset, Mesh]:
    """Argument checks shared by `fit` and `fit_seeds`; the dataset cut to ``shots`` and the
    task mesh (None without ``devices``)."""
    if not isinstance(learner, AbstractMetaLearner):
        raise TypeError(f"`learner` must be an AbstractMetaLearner, got {type(learner).__name__}.")
    check_positive("epochs", epochs, int)
    check_positive("val_every", val_every, int)
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


def _select(mask, new, old):
    """Per seed (leading axis): ``new`` where ``mask``, else ``old``."""
    dynamic, static = eqx.partition(new, eqx.is_array)
    mask = np.asarray(mask)
    pick = lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return eqx.combine(jax.tree.map(pick, dynamic, eqx.filter(old, eqx.is_array)), static)


def _save(stem, tree, header):
    tree = to_host(tree)
    if jax.process_index() == 0:
        save_checkpoint(stem, tree, header)


def _train(learner, dataset, state, keys, config, *, seeds, epochs, val_every, checkpoint_dir,
           progress, mesh):  # fmt: skip
    """The loop shared by `fit` (``seeds=False``) and `fit_seeds` (``seeds=True``: ``state``
    and ``keys`` carry a leading seed axis). ``keys`` are ``(k_train, k_val)``.

    Returns ``(state, best_state, best_epochs, histories)``, the last two per seed.
    """
    k_train, k_val = keys
    num_seeds = k_train.shape[0] if seeds else 1
    pack = list if seeds else (lambda v: v[0])  # per-seed lists <-> fit's checkpoint header
    unpack = list if seeds else (lambda v: [v])
    xs, dxs = flatten_support(dataset.train)
    val_tasks = dataset.val
    histories = [_empty_history() for _ in range(num_seeds)]
    best_state, best_val, best_epoch, start = state, np.full(num_seeds, np.inf), [0] * num_seeds, 0
    last = best = None
    if checkpoint_dir is not None:
        last, best = Path(checkpoint_dir) / "last", Path(checkpoint_dir) / "best"
        if checkpoint_exists(last):
            state, header = load_checkpoint(last, state, config=config)
            best_state, best_header = load_checkpoint(best, state, config=config)
            start, histories = header["epoch"], unpack(header["history"])
            best_val = np.asarray(unpack(best_header["best_val"]), dtype=float)
            best_epoch = unpack(best_header["best_epoch"])
    if mesh is not None:
        xs, dxs = shard_tasks((xs, dxs), mesh)
        val_tasks = replicate(val_tasks, mesh)
        state = shard_state(state, mesh, stacked=seeds)
        best_state = shard_state(best_state, mesh, stacked=seeds)

    # fit: one state; fit_seeds: the same functions vmapped over the leading seed axis.
    train = _train_epochs_seeds if seeds else _train_epochs
    validate = _validation_seeds if seeds else _mean_validation_error
    each = jax.vmap if seeds else (lambda f: f)
    name = type(learner).__name__
    bar = tqdm(total=epochs, initial=start, disable=not progress, desc=name)
    epoch = start
    while epoch < epochs:
        n = min(val_every, epochs - epoch)
        keys = each(functools.partial(_epoch_keys, start=epoch, n=n))(k_train)
        new_state, losses = train(learner, state, xs, dxs, keys, mesh)
        losses = np.asarray(losses).reshape(num_seeds, n, -1)
        bad = np.argwhere(~np.isfinite(losses))
        if bad.size:
            s, e, step = bad[0]
            bar.close()
            if last is None:
                kept = "none (no checkpoint_dir)"
            elif checkpoint_exists(last):
                kept = f"epoch {epoch} in {checkpoint_dir}"
            else:
                kept = f"none yet in {checkpoint_dir}"
            raise FloatingPointError(
                f"Non-finite training loss at epoch {epoch + e}, meta-step {step}"
                f"{f' (seed {s})' if seeds else ''} of {name}; stopped. Last good checkpoint: "
                f"{kept}."
            )
        state, epoch = new_state, epoch + n
        val_key = each(functools.partial(jax.random.fold_in, data=epoch))(k_val)
        vals = np.asarray(validate(learner, state, val_tasks, val_key), dtype=float)
        vals = vals.reshape(num_seeds)
        if not np.isfinite(vals).all():
            bar.close()
            which = f" (seed {np.argwhere(~np.isfinite(vals))[0, 0]})" if seeds else ""
            raise FloatingPointError(
                f"Non-finite validation error after epoch {epoch}{which} of {name}."
            )
        for history, loss, val in zip(histories, losses, vals):
            history["train_loss"].extend(loss.mean(axis=1).tolist())
            history["val_epoch"].append(epoch)
            history["val_error"].append(float(val))
        improved = vals < best_val
        if improved.any():
            best_state = _select(improved, state, best_state) if seeds else state
            best_val = np.where(improved, vals, best_val)
            best_epoch = [epoch if i else b for i, b in zip(improved, best_epoch)]
            if best is not None:
                _save(best, best_state, {"config": config, "epoch": epoch,
                                         "best_val": pack(best_val.tolist()),
                                         "best_epoch": pack(best_epoch)})  # fmt: skip
        if last is not None:
            _save(last, state, {"config": config, "epoch": epoch, "history": pack(histories)})
        bar.update(n)
        mean_loss = np.mean([h["train_loss"][-1] for h in histories])
        bar.set_postfix(loss=f"{mean_loss:.3e}", val_error=f"{np.mean(vals):.3e}")
    bar.close()
    return state, best_state, best_epoch, histories


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
    - `devices`: shard the training functions (data and latents) over the first ``devices``
      of `jax.devices()` on a one-axis ``"tasks"`` mesh, meta-parameters replicated (see
      `jaxmeta.meta.task_mesh`; multi-host use in `jaxmeta.meta._sharding`). Must divide the
      number of training functions ``F`` (we do not pad): a `ValueError` names both
      otherwise. ``None`` (default): no mesh, JAX's default device. Results agree with an
      unsharded run to float tolerance (the all-reduce may sum in another order).

    **Returns:** a `TrainResult` with `state`, `best_state`, `best_epoch` and `history`
    (``train_loss`` per epoch, ``val_error`` per chunk at epochs ``val_epoch``).
    """
    dataset, mesh = _check(learner, dataset, epochs, val_every, shots, devices)
    k_init, k_train, k_val = jax.random.split(key, 3)
    state = learner.init(make_model, dataset.train.num_functions, key=k_init)
    if not learner.meta_trains:
        return TrainResult(state, state, 0, _empty_history())
    config = _config(learner, state, dataset, val_every, key)
    state, best_state, best_epoch, history = _train(
        learner, dataset, state, (k_train, k_val), config, seeds=False, epochs=epochs,
        val_every=val_every, checkpoint_dir=checkpoint_dir, progress=progress, mesh=mesh,
    )  # fmt: skip
    return TrainResult(state, best_state, best_epoch[0], history[0])
