"""Seeds as a leading batch axis: the keys, and functions mapped over that axis."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def stack_keys(keys) -> PRNGKeyArray:
    """``keys`` (a sequence of typed keys, or a stacked ``(S,)`` key array) as ``(S,)``;
    a `ValueError` names the first repeated key (equal `jax.random.key_data`)."""
    if _is_key(keys):
        stacked = keys
    elif isinstance(keys, Sequence) and not isinstance(keys, str) and len(keys) > 0:
        if not all(_is_key(k) for k in keys):
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
    raw = np.asarray(jax.random.key_data(stacked)).reshape(stacked.shape[0], -1)
    first: dict[bytes, int] = {}
    for i, row in enumerate(raw):
        j = first.setdefault(row.tobytes(), i)
        if j != i:
            raise ValueError(
                f"`keys` must be distinct, one per seed: keys[{i}] equals keys[{j}], so seed "
                f"{i} would repeat seed {j}."
            )
    return stacked


def one_key(key) -> PRNGKeyArray:
    """``key`` as a typed key of shape ``()``; a legacy ``uint32[2]`` key is wrapped."""
    if isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,):
        key = jax.random.wrap_key_data(key)
    if not _is_key(key):
        raise TypeError(f"`key` must be a PRNG key (`jax.random.key(seed)`), got key={key!r}.")
    if key.shape != ():
        raise ValueError(
            f"`key` must be one key (shape ()), got shape {key.shape}; use `fit_seeds` for several."
        )
    return key


def index_seed(tree, i: int):
    """Seed ``i`` of a pytree whose array leaves all carry a leading seed axis."""
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[i], dynamic), static)


def add_seed_axis(tree):
    """Every array leaf of ``tree`` with a leading seed axis of size 1."""
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda x: x[None], dynamic), static)


def per_seed(single: Callable, batched: Callable, seeded: tuple[int, ...], *args):
    """``batched(*args)``, where the arguments at positions ``seeded`` carry a leading seed
    axis (``batched`` maps ``single`` over it, e.g. with `eqx.filter_vmap`).

    With one seed this calls ``single`` on those arguments without the axis and puts the
    axis back on every array of its output: the same values, but from the program a run
    without seeds compiles (`fit`'s), since a batch of one may round differently.
    """
    num_seeds = jax.tree.leaves(eqx.filter(args[seeded[0]], eqx.is_array))[0].shape[0]
    if num_seeds > 1:
        return batched(*args)
    args = [index_seed(a, 0) if i in seeded else a for i, a in enumerate(args)]
    return add_seed_axis(single(*args))
