"""Several seeds of one method trained as one compiled program (seeds as a batch axis)."""

import os
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from ..data import Dataset
from ._base import AbstractMetaLearner, ModelFactory
from ._trainer import TrainResult, _check, _config, _empty_history, _train


def _stack_keys(keys) -> PRNGKeyArray:
    if isinstance(keys, jax.Array) and jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        stacked = keys
    elif isinstance(keys, Sequence) and not isinstance(keys, str) and len(keys) > 0:
        if not all(
            isinstance(k, jax.Array) and jnp.issubdtype(k.dtype, jax.dtypes.prng_key) for k in keys
        ):
            raise TypeError(
                f"`keys` must hold typed PRNG keys (`jax.random.key(seed)`), got keys={keys!r}."
            )
        stacked = jnp.stack(list(keys))
    else:
        raise TypeError(
            f"`keys` must be a non-empty sequence of `jax.random.key`s or a stacked key "
            f"array, got keys={keys!r}."
        )
    if stacked.ndim != 1 or stacked.shape[0] == 0:
        raise ValueError(
            f"`keys` must be one key per seed (shape (S,)), got shape {stacked.shape}."
        )
    return stacked


def _unstack(tree, i: int):
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[i], dynamic), static)


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
) -> list[TrainResult]:
    """`fit` for several seeds at once: one compiled program with a leading seed axis.

    ``fit_seeds(..., keys=[k0, k1, k2])`` returns what ``[fit(..., key=k) for k in keys]``
    returns (to float tolerance: XLA may order batched sums differently), but initialises,
    trains and validates the seeds together: `learner.init` under `eqx.filter_vmap`, every
    chunk of ``val_every`` epochs one `eqx.filter_vmap` of the same scanned chunk `fit`
    compiles, validation vmapped too. On an accelerator this fills the device that one small
    seed leaves idle; on a CPU it mostly saves compile time and host calls.

    Checkpoints hold the stacked state of all seeds (``last``, and ``best``: each seed's own
    best-on-validation state), so a run resumes like `fit`'s; the NaN guard stops all seeds
    and names the one that failed.

    **Arguments:** as `fit`, except

    - `keys`: one PRNG key per seed: a sequence of `jax.random.key`s or a stacked ``(S,)``
      key array (e.g. ``jax.vmap(jax.random.key)(jnp.arange(3))``).
    - `devices`: shard the training functions over this many devices (see `fit`); the seed
      axis is kept whole on every device.

    **Returns:** a list of ``S`` `TrainResult`s, one per key, in order.
    """
    dataset, mesh = _check(learner, dataset, epochs, val_every, shots, devices)
    keys = _stack_keys(keys)
    num_train = dataset.train.num_functions
    if not learner.meta_trains:
        states = [learner.init(make_model, num_train, key=k) for k in keys]
        return [TrainResult(s, s, 0, _empty_history()) for s in states]
    split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
    k_init, k_train, k_val = split[:, 0], split[:, 1], split[:, 2]
    state = eqx.filter_vmap(lambda k: learner.init(make_model, num_train, key=k))(k_init)
    config = _config(learner, state, dataset, val_every, keys)
    state, best_state, best_epochs, histories = _train(
        learner, dataset, state, (k_train, k_val), config, seeds=True, epochs=epochs,
        val_every=val_every, checkpoint_dir=checkpoint_dir, progress=progress, mesh=mesh,
    )  # fmt: skip
    return [
        TrainResult(_unstack(state, i), _unstack(best_state, i), best_epochs[i], histories[i])
        for i in range(len(histories))
    ]
