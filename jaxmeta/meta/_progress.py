"""The resumable progress of a training run: its carry between chunks, the update after a
chunk (histories, best-on-validation selection), the NaN guard, its identity and its
checkpoints."""

import dataclasses
import hashlib
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..io import (
    CheckpointError,
    checkpoint_exists,
    data_digest,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from ._base import MetaState
from ._result import History, TrainResult
from ._seeds import index_seed
from ._sharding import barrier, to_host


def run_config(learner, like_state, dataset, val_every, keys) -> dict:
    """What a checkpoint must have been written for: the learner's class and the `fingerprint`
    of each of its fields (hyper-parameters, optimisers, modulation), the
    state's shapes, the data's `data_digest` (its values, not only its shapes), ``val_every``
    and the keys."""
    shapes = [(str(x.dtype), list(x.shape)) for x in jax.tree.leaves(like_state) if eqx.is_array(x)]
    # One digest per field, so a refusal names the field (e.g. `learner.outer_optimiser`).
    fields = {f.name: fingerprint(getattr(learner, f.name)) for f in dataclasses.fields(learner)}
    return {
        "learner": {"class": type(learner).__qualname__, **fields},
        "state": hashlib.sha256(repr(shapes).encode()).hexdigest(),
        "data": data_digest(dataset),
        "val_every": val_every,
        "key": np.asarray(jax.random.key_data(keys)).tolist(),
    }


def _select(mask, new, old):
    """Per seed (leading axis): ``new`` where ``mask``, else ``old``."""
    dynamic, static = eqx.partition(new, eqx.is_array)
    mask = np.asarray(mask)
    pick = lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return eqx.combine(jax.tree.map(pick, dynamic, eqx.filter(old, eqx.is_array)), static)


@dataclasses.dataclass(frozen=True)
class Progress:
    """A run of ``S`` seeds after ``epoch`` epochs; `state` and `best_state` carry a leading
    seed axis, the rest holds one entry per seed."""

    state: MetaState
    best_state: MetaState
    best_val: np.ndarray
    best_epoch: tuple[int, ...]
    histories: tuple[History, ...]
    epoch: int

    @classmethod
    def start(cls, state: MetaState, num_seeds: int) -> "Progress":
        return cls(state, state, np.full(num_seeds, np.inf), (0,) * num_seeds,
                   (History.empty(),) * num_seeds, 0)  # fmt: skip

    def advance(self, state, losses, vals) -> tuple["Progress", np.ndarray]:
        """After a chunk: ``losses`` ``(S, epochs, meta_steps)``, ``vals`` ``(S,)``. Returns
        the new progress and which seeds improved on their best validation error."""
        epoch = self.epoch + losses.shape[1]
        histories = tuple(
            h.extend(loss.mean(axis=1), epoch, float(val))
            for h, loss, val in zip(self.histories, losses, vals)
        )
        improved = vals < self.best_val
        best_state = self.best_state
        if improved.any():
            best_state = _select(improved, state, self.best_state)
        best_epoch = tuple(epoch if i else b for i, b in zip(improved, self.best_epoch))
        best_val = np.where(improved, vals, self.best_val)
        return Progress(state, best_state, best_val, best_epoch, histories, epoch), improved

    def result(self, i: int) -> TrainResult:
        """Seed ``i``'s `TrainResult`."""
        return TrainResult(
            index_seed(self.state, i),
            index_seed(self.best_state, i),
            self.best_epoch[i],
            self.histories[i],
        )


def _paths(directory) -> tuple[Path, Path]:
    return Path(directory) / "last", Path(directory) / "best"


def load_progress(directory: str | os.PathLike, fresh: Progress, config: dict, *,
                  epochs: int) -> Progress:  # fmt: skip
    """The progress checkpointed in ``directory`` (``fresh`` if nothing is there yet).

    Raises `CheckpointError` (naming ``checkpoint_dir``) for a checkpoint of another
    ``config``, a corrupt one, or one already past ``epochs``: its result is not this run's.
    """
    last, best = _paths(directory)
    if not checkpoint_exists(last):
        return fresh
    try:
        state, header = load_checkpoint(last, fresh.state, config=config)
        best_state, best_header = load_checkpoint(best, state, config=config)
    except CheckpointError as err:
        raise CheckpointError(f"`checkpoint_dir`={str(directory)!r}: {err}") from err
    if header["epoch"] > epochs:
        raise CheckpointError(
            f"`checkpoint_dir`={str(directory)!r} holds a run at epoch {header['epoch']}, past "
            f"`epochs`={epochs}; refusing to report it as this run. Delete it, or use another "
            f"directory."
        )
    return Progress(
        state,
        best_state,
        np.asarray(best_header["best_val"], dtype=float),
        tuple(best_header["best_epoch"]),
        tuple(History.from_dict(h) for h in header["history"]),
        header["epoch"],
    )


def _save(stem, tree, header):
    tree = to_host(tree)
    if jax.process_index() == 0:
        save_checkpoint(stem, tree, header)


def save_progress(directory, progress: Progress, config: dict, *, improved: bool,
                  callback=None) -> None:  # fmt: skip
    """Checkpoint ``last`` and, if some seed ``improved``, ``best`` (written first), by
    process 0; every process returns once they are on disk. ``callback(event, epoch)`` runs
    after each save (``"best"``, ``"last"``)."""
    last, best = _paths(directory)
    head = {"config": config, "epoch": progress.epoch}
    if improved:
        _save(best, progress.best_state, head | {"best_val": progress.best_val.tolist(),
                                                 "best_epoch": list(progress.best_epoch)})  # fmt: skip
        if callback is not None:
            callback("best", progress.epoch)
    _save(last, progress.state, head | {"history": [h.to_dict() for h in progress.histories]})
    barrier("jaxmeta checkpoint")
    if callback is not None:
        callback("last", progress.epoch)


def last_good(directory, epoch: int) -> str:
    """Where the last good checkpoint is, for an error message."""
    if directory is None:
        return "none (no checkpoint_dir)"
    if checkpoint_exists(_paths(directory)[0]):
        return f"epoch {epoch} in {directory}"
    return f"none yet in {directory}"


def check_losses(losses, epoch, name, checkpoint_dir) -> None:
    """The NaN guard: raise at the first non-finite loss of ``(S, epochs, steps)``."""
    bad = np.argwhere(~np.isfinite(losses))
    if bad.size:
        s, e, step = bad[0]
        seed = f" (seed {s})" if losses.shape[0] > 1 else ""
        raise FloatingPointError(
            f"Non-finite training loss at epoch {epoch + e}, meta-step {step}{seed} of {name}; "
            f"stopped. Last good checkpoint: {last_good(checkpoint_dir, epoch)}."
        )


def check_validation(vals, epoch, name) -> None:
    """Raise if a validation error of ``(S,)`` is not finite."""
    if not np.isfinite(vals).all():
        seed = f" (seed {np.argwhere(~np.isfinite(vals))[0, 0]})" if vals.shape[0] > 1 else ""
        raise FloatingPointError(
            f"Non-finite validation error after epoch {epoch}{seed} of {name}."
        )
