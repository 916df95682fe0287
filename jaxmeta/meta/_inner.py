"""Differentiable inner loops: a fixed number of optax steps as one `lax.scan`."""

from collections.abc import Callable

import equinox as eqx
import jax
import optax
from jaxtyping import PyTree


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
