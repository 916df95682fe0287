"""Differentiable inner loops: a fixed number of optax steps as one `lax.scan`, and the same
steps continued until the loss stops improving (a `lax.while_loop`)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float, Int, PyTree


def check_optimiser(name: str, value) -> None:
    """Raise a `TypeError` naming ``name`` unless ``value`` is an `optax.GradientTransformation`
    (``optax.adam(1e-3)``, not the string ``"adam"`` or a learning rate)."""
    if not isinstance(value, optax.GradientTransformation):
        raise TypeError(
            f"`{name}` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"{name}={value!r}."
        )


def optax_update(optimiser, grads, opt_state, params):
    """``optimiser.update`` then `optax.apply_updates`, under standard dtype promotion.

    optax mixes Python floats with its int32 step count, which JAX's strict promotion mode
    rejects; scoping the mode here keeps strict checking usable for everything else.
    """
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return eqx.apply_updates(params, updates), opt_state


def optimiser_init(optimiser: optax.GradientTransformation, params: PyTree) -> PyTree:
    """``optimiser.init`` of the inexact-array leaves of ``params`` (the state `optimise_from`
    continues)."""
    with jax.numpy_dtype_promotion("standard"):
        return optimiser.init(eqx.filter(params, eqx.is_inexact_array))


def optimise_from(
    loss: Callable[[PyTree], Array],
    params: PyTree,
    optimiser: optax.GradientTransformation,
    opt_state: PyTree,
    steps: int,
) -> tuple[PyTree, PyTree, Float[Array, " steps"]]:
    """Run ``steps`` optimiser steps on ``loss(params)`` from the optimiser state
    ``opt_state`` (of the inexact-array leaves of ``params``, e.g. `optimiser_init`'s).

    Differentiable end to end. **Returns:** the final parameters, the final optimiser state
    and the loss before each step, shape ``(steps,)``.
    """
    trainable, static = eqx.partition(params, eqx.is_inexact_array)

    def body(carry, _):
        p, s = carry
        value, grads = jax.value_and_grad(lambda q: loss(eqx.combine(q, static)))(p)
        p, s = optax_update(optimiser, grads, s, p)
        return (p, s), value

    (trainable, opt_state), losses = jax.lax.scan(body, (trainable, opt_state), None, length=steps)
    return eqx.combine(trainable, static), opt_state, losses


def optimise(
    loss: Callable[[PyTree], Array],
    params: PyTree,
    optimiser: optax.GradientTransformation,
    steps: int,
) -> tuple[PyTree, Float[Array, " steps"]]:
    """Run ``steps`` optimiser steps on ``loss(params)`` from a fresh optimiser state.

    Differentiable end to end (second-order MAML differentiates through it). Only the
    inexact-array leaves of ``params`` are optimised; the rest is closed over.

    **Returns:** the final parameters and the loss before each step, shape ``(steps,)``.
    """
    opt_state = optimiser_init(optimiser, params)
    params, _, losses = optimise_from(loss, params, optimiser, opt_state, steps)
    return params, losses


def optimise_path(
    loss: Callable[[PyTree], Array],
    params: PyTree,
    optimiser: optax.GradientTransformation,
    steps: int,
) -> tuple[PyTree, Float[Array, " steps"]]:
    """The iterates of `optimise`: ``steps`` optimiser steps from a fresh optimiser state,
    recording the parameters after each.

    **Returns:** the iterates, every inexact-array leaf of ``params`` with a leading axis of
    size ``steps`` (row ``n - 1`` is what `optimise` returns with ``n`` steps), and the loss
    before each step. One scan, so every step count shares one compiled program.
    """
    trainable, static = eqx.partition(params, eqx.is_inexact_array)

    def one(carry, _):
        p, s = carry
        p, s, losses = optimise_from(loss, eqx.combine(p, static), optimiser, s, 1)
        p = eqx.filter(p, eqx.is_inexact_array)
        return (p, s), (p, losses[0])

    start = (trainable, optimiser_init(optimiser, params))
    _, (path, losses) = jax.lax.scan(one, start, None, length=steps)
    return eqx.combine(path, static), losses


class Until(eqx.Module):
    """What `optimise_until` returns for one problem.

    - `params`: the iterate with the lowest loss seen (the start included);
    - `loss`: that loss;
    - `steps`: optimiser steps taken;
    - `converged`: whether the stopping rule fired before the step cap.
    """

    params: PyTree
    loss: Float[Array, ""]
    steps: Int[Array, ""]
    converged: Bool[Array, ""]


def optimise_until(
    loss: Callable[[PyTree], Array],
    params: PyTree,
    optimiser: optax.GradientTransformation,
    opt_state: PyTree,
    *,
    rtol: float,
    window: int,
    max_steps: int,
) -> Until:
    """Optimiser steps on ``loss(params)`` from ``opt_state`` until the lowest loss seen
    improves by no more than ``rtol`` (relative) over ``window`` steps, or ``max_steps``.

    The lowest loss is checked every ``window`` steps against its value one window earlier:
    the run stops at the first check where ``best_before − best ≤ rtol · |best|``. The
    iterate returned is the one with the lowest loss evaluated (the start included), so its
    loss is never above ``loss(params)``. One `lax.while_loop`: not reverse-differentiable.
    """
    trainable, static = eqx.partition(params, eqx.is_inexact_array)
    value_and_grad = jax.value_and_grad(lambda q: loss(eqx.combine(q, static)))
    inf = jnp.asarray(jnp.inf, loss(params).dtype)

    def cond(carry):
        *_, step, _, done = carry
        return (step < max_steps) & ~done

    def body(carry):
        p, s, best_p, best, step, anchor, _ = carry
        value, grads = value_and_grad(p)
        better = value < best
        best_p = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best_p)
        best = jnp.where(better, value, best)
        p, s = optax_update(optimiser, grads, s, p)
        step = step + 1
        check = step % window == 0
        done = check & (anchor - best <= rtol * jnp.abs(best))
        anchor = jnp.where(check, best, anchor)
        return p, s, best_p, best, step, anchor, done

    start = (trainable, opt_state, trainable, inf, jnp.zeros((), jnp.int32), inf,
             jnp.zeros((), bool))  # fmt: skip
    p, _, best_p, best, step, _, done = jax.lax.while_loop(cond, body, start)
    # The last iterate has not been evaluated yet: it may be the best.
    last = loss(eqx.combine(p, static))
    better = last < best
    best_p = jax.tree.map(lambda a, b: jnp.where(better, a, b), p, best_p)
    return Until(eqx.combine(best_p, static), jnp.minimum(last, best), step, done)
