"""Differentiable inner loops: a fixed number of optax steps as one `lax.scan`."""

from collections.abc import Callable

import equinox as eqx
import jax
import optax
from jaxtyping import PyTree

from ..io import OMIT_DEFAULT

#: What a learner's ``adapt_optimiser`` may name: its own Adam (the default) or plain SGD.
ADAPT_OPTIMISERS = ("adam", "sgd")


def adapt_optimiser_field():
    """The ``adapt_optimiser`` field of a learner: ``"adam"`` by default, and left out of the
    learner's `jaxmeta.io.fingerprint` while it is, so checkpoints written before the field
    existed still load."""
    return eqx.field(default="adam", metadata={OMIT_DEFAULT: True})


def check_adapt_optimiser(value) -> None:
    if value not in ADAPT_OPTIMISERS:
        raise ValueError(
            f"`adapt_optimiser` must be one of {ADAPT_OPTIMISERS}, got adapt_optimiser={value!r}."
        )


def adapt_optimiser(name: str, lr: float, adam: optax.GradientTransformation):
    """The test-time optimiser ``name``: ``adam`` (the learner's own Adam at ``lr``) for
    ``"adam"``, `optax.sgd` at the same ``lr`` for ``"sgd"``."""
    check_adapt_optimiser(name)
    return adam if name == "adam" else optax.sgd(lr)


def optax_update(optimiser, grads, opt_state, params):
    """``optimiser.update`` then `optax.apply_updates`, under standard dtype promotion.

    optax mixes Python floats with its int32 step count, which JAX's strict promotion mode
    rejects; scoping the mode here keeps strict checking usable for everything else.
    """
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state


def optimise(
    loss: Callable[[PyTree], jax.Array],
    params: PyTree,
    optimiser: optax.GradientTransformation,
    steps: int,
) -> tuple[PyTree, jax.Array]:
    """Run ``steps`` optimiser steps on ``loss(params)`` from a fresh optimiser state.

    Differentiable end to end (second-order MAML differentiates through it). Only the
    inexact-array leaves of ``params`` are optimised; the rest is closed over.

    **Returns:** the final parameters and the loss before each step, shape ``(steps,)``.
    """
    trainable, static = eqx.partition(params, eqx.is_inexact_array)
    opt_state = optimiser.init(trainable)

    def body(carry, _):
        p, s = carry
        value, grads = jax.value_and_grad(lambda q: loss(eqx.combine(q, static)))(p)
        p, s = optax_update(optimiser, grads, s, p)
        return (p, s), value

    (trainable, _), losses = jax.lax.scan(body, (trainable, opt_state), None, length=steps)
    return eqx.combine(trainable, static), losses
