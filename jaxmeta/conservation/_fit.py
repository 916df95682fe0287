"""The one training primitive of every ConCerNet trainer: minibatch epochs of an optax
optimiser, in the package's one minibatch loop (`jaxmeta._minibatch.minibatch_epochs`, shared
with the meta-trainer), with one key scheme.

`train_invariant`, `train_dynamics`, `train_autoencoder`, `train_meta_invariant` and
`train_meta_dynamics` each check their data, build an objective and call `fit_minibatches`;
shared within the subpackage (not exported).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .._checks import check_int
from .._minibatch import minibatch_epochs


class ConCerNetFit(eqx.Module):
    """A model trained by a ConCerNet trainer and its loss history.

    **Fields:** `model` (the trained pytree: frozen parts unchanged), `history` (the mean
    minibatch loss of each epoch, shape ``(epochs,)``; for the meta-trainers averaged over
    systems too), `latents` (the meta-trainers' per-system latents ``(systems, latent_dim)``:
    ``z_inv`` after `train_meta_invariant`, ``z_dyn`` after `train_meta_dynamics`; ``None``
    for the per-system trainers).
    """

    model: PyTree
    history: Float[Array, " epochs"]
    latents: Float[Array, "systems latent"] | None = None


@eqx.filter_jit
def _run_chunk(params, opt_state, keys, data, static, objective, optimiser, batch):
    """``len(keys)`` epochs of minibatch steps, all inside `jax.lax.scan` (one compile per
    model structure, objective and optimiser: reused across seeds and chunks)."""

    def step(carry, idx):
        params, opt_state = carry
        minibatch = jax.tree.map(lambda a: a[idx], data)
        loss, grads = eqx.filter_value_and_grad(
            lambda p: objective(eqx.combine(p, static), minibatch)
        )(params)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts and floats
            updates, opt_state = optimiser.update(grads, opt_state, params)
        return (eqx.apply_updates(params, updates), opt_state), loss

    num = jax.tree.leaves(data)[0].shape[0]
    (params, opt_state), losses = minibatch_epochs(step, (params, opt_state), keys, num, batch)
    # One epoch's mean at a time: XLA reduces many rows at once in another order, which would
    # change the last bits of the history recorded by earlier results.
    return params, opt_state, jax.lax.map(jnp.mean, losses)


def fit_minibatches(
    model: PyTree,
    objective: Callable[[PyTree, PyTree], Float[Array, ""]],
    data: PyTree[Array],
    *,
    optimiser: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int,
    trainable: PyTree[bool] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> ConCerNetFit:
    """Minimise ``objective(model, minibatch)`` by ``optimiser`` over minibatches of ``data``.

    Each epoch shuffles the leading axis of ``data`` (trajectories; every leaf shares it) and
    takes ``num // batch_trajectories`` steps, each on ``batch_trajectories`` of them (the
    remainder is dropped that epoch). Epochs run inside `jax.lax.scan`, ``chunk`` epochs per
    jitted call; ``progress(n)`` is called after each chunk with the epochs it ran (e.g.
    ``tqdm.update``).

    **Key scheme.** ``key`` is split into one key per epoch, ``jax.random.split(key, epochs)``;
    epoch ``e`` permutes the trajectories with the ``e``-th. Nothing else is random, so two
    fits with the same key and the same number of trajectories see the same minibatches
    (ConCerNet's baseline and projected model are trained on one key for that reason).

    **Arguments:**

    - `model`: the pytree to train.
    - `objective`: ``objective(model, minibatch) -> scalar loss``; hashable (it is a static
      argument of the jitted epochs: a module-level function or an `eqx.Module`).
    - `data`: a pytree of arrays with a common leading axis of trajectories.
    - `optimiser`: an optax transformation (one object reused across calls reuses the compile).
    - `epochs`, `batch_trajectories`, `chunk`: positive ints, ``batch_trajectories`` at most
      the number of trajectories.
    - `trainable`: a filter spec of ``model`` (default: every inexact array); the rest stays
      frozen.
    - `progress`: optional callback, see above.
    - `key`: PRNG key of the minibatch order.
    """
    num = jax.tree.leaves(data)[0].shape[0]
    check_int("epochs", epochs)
    check_int("chunk", chunk)
    if isinstance(batch_trajectories, bool) or not (
        isinstance(batch_trajectories, int) and 1 <= batch_trajectories <= num
    ):
        raise ValueError(
            f"`batch_trajectories` must be an int in [1, {num}] (the trajectories available), "
            f"got batch_trajectories={batch_trajectories!r}."
        )
    if not isinstance(optimiser, optax.GradientTransformation):
        raise TypeError(
            "`optimiser` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)), got "
            f"optimiser={optimiser!r}."
        )
    spec = jax.tree.map(eqx.is_inexact_array, model) if trainable is None else trainable
    params, static = eqx.partition(model, spec)
    opt_state = optimiser.init(params)
    keys = jax.random.split(key, epochs)
    history = []
    for start in range(0, epochs, chunk):
        params, opt_state, hist = _run_chunk(
            params, opt_state, keys[start : start + chunk], data, static, objective, optimiser,
            batch_trajectories,
        )  # fmt: skip
        history.append(hist)
        if progress is not None:
            progress(int(hist.shape[0]))
    return ConCerNetFit(model=eqx.combine(params, static), history=jnp.concatenate(history))


def derivative_mse(
    field: Callable[[Float[Array, " dim"]], Float[Array, " dim"]],
    batch: tuple[Float[Array, "*batch dim"], Float[Array, "*batch dim"]],
) -> Float[Array, ""]:
    """The objective of stage 2 (eq. 7): mean over points of ``‖field(x) − ẋ‖²`` on a batch
    ``(xs, dxs)`` of any leading shape."""
    x, dx = batch
    pred = jax.vmap(field)(x.reshape(-1, x.shape[-1]))
    return jnp.mean(jnp.sum((pred - dx.reshape(pred.shape)) ** 2, axis=-1))
