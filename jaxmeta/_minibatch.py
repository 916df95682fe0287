"""The one minibatch loop of the package (internal): epochs of shuffled minibatches inside
`jax.lax.scan`, shared by the meta-trainer (`jaxmeta.meta.fit`, minibatches of training
functions) and ConCerNet's trainers (minibatches of trajectories)."""

from collections.abc import Callable

import equinox as eqx
import jax
from jaxtyping import Array, PRNGKeyArray, PyTree


def filter_scan(f: Callable, carry: PyTree, xs: PyTree) -> tuple[PyTree, PyTree]:
    """`jax.lax.scan` over a carry that may hold non-array leaves (activations, factories),
    which are closed over unchanged."""
    dynamic, static = eqx.partition(carry, eqx.is_array)

    def body(c, x):
        new, out = f(eqx.combine(c, static), x)
        return eqx.filter(new, eqx.is_array), out

    dynamic, outs = jax.lax.scan(body, dynamic, xs)
    return eqx.combine(dynamic, static), outs


def minibatch_epochs(
    step: Callable[[PyTree, Array], tuple[PyTree, PyTree]],
    carry: PyTree,
    keys: PRNGKeyArray,
    num: int,
    batch: int,
) -> tuple[PyTree, PyTree]:
    """``len(keys)`` epochs: each shuffles ``num`` items with its key and calls
    ``step(carry, idx)`` on consecutive batches of ``batch`` indices (``num // batch`` steps;
    a remainder smaller than a batch is dropped that epoch). Returns the final carry and the
    outputs of ``step`` stacked as ``(epochs, steps, ...)``."""
    steps = num // batch

    def epoch(c, key):
        order = jax.random.permutation(key, num)[: steps * batch].reshape(steps, batch)
        return filter_scan(step, c, order)

    return filter_scan(epoch, carry, keys)
