"""ConCerNet training: stage 1 (contrastive invariant, eq. 4/8), stage 2 (projected dynamics
by MSE on ``ẋ``, eq. 7), and the rollout metrics of their Table 1."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ..data import simulate
from ._contrastive import contrastive_loss
from ._projection import Projected
from ._systems import AbstractConservedSystem, Trajectories


class TrainResult(eqx.Module):
    """A trained model and its loss history (mean minibatch loss of each epoch)."""

    model: PyTree
    history: Float[Array, " epochs"]


@eqx.filter_jit
def _run_chunk(params, opt_state, keys, data, static, loss_fn, optimizer, batch):
    """``len(keys)`` epochs of minibatch Adam steps, all inside `jax.lax.scan` (one compile per
    model structure, loss and optimizer: reused across seeds and chunks)."""
    num = jax.tree.leaves(data)[0].shape[0]
    steps = num // batch

    def step(carry, idx):
        params, opt_state = carry
        minibatch = jax.tree.map(lambda a: a[idx], data)
        loss, grads = eqx.filter_value_and_grad(
            lambda p: loss_fn(eqx.combine(p, static), minibatch)
        )(params)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts and floats
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return (eqx.apply_updates(params, updates), opt_state), loss

    def epoch(carry, k):
        idx = jax.random.permutation(k, num)[: steps * batch].reshape(steps, batch)
        carry, losses = jax.lax.scan(step, carry, idx)
        return carry, jnp.mean(losses)

    (params, opt_state), hist = jax.lax.scan(epoch, (params, opt_state), keys)
    return params, opt_state, hist


def _fit(model, loss_fn, data, *, optimizer, epochs, batch, trainable, progress, chunk, key):
    num = jax.tree.leaves(data)[0].shape[0]
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"`epochs` must be a positive int, got epochs={epochs!r}.")
    if not (isinstance(batch, int) and 1 <= batch <= num):
        raise ValueError(f"`batch_trajectories` must be an int in [1, {num}], got {batch!r}.")
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"`chunk` must be a positive int, got chunk={chunk!r}.")
    spec = jax.tree.map(eqx.is_inexact_array, model) if trainable is None else trainable
    params, static = eqx.partition(model, spec)
    opt_state = optimizer.init(params)
    keys = jax.random.split(key, epochs)
    history = []
    for start in range(0, epochs, chunk):
        params, opt_state, hist = _run_chunk(
            params, opt_state, keys[start : start + chunk], data, static, loss_fn, optimizer, batch
        )
        history.append(hist)
        if progress is not None:
            progress(int(hist.shape[0]))
    return TrainResult(model=eqx.combine(params, static), history=jnp.concatenate(history))


class _ContrastiveObjective(eqx.Module):
    """A hashable loss callable (the jitted epoch loop takes it as a static argument)."""

    normalise: bool = eqx.field(static=True)
    loss: str = eqx.field(static=True)

    def __call__(self, net, xs):
        return contrastive_loss(net, xs, normalise=self.normalise, loss=self.loss)


def _mse_objective(field, batch):
    x, dx = batch
    pred = jax.vmap(field)(x.reshape(-1, x.shape[-1]))
    return jnp.mean(jnp.sum((pred - dx.reshape(pred.shape)) ** 2, axis=-1))


def train_invariant(
    invariant: PyTree,
    xs: Float[Array, "traj time dim"],
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    normalise: bool = True,
    loss: str = "nce",
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> TrainResult:
    """Stage 1: fit an invariant network with the contrastive loss (eq. 4) on minibatches of
    ``batch_trajectories`` whole trajectories, batch-normalised latents (eq. 8) by default;
    ``loss="square_ratio"`` trains with the authors' code's scale-free ratio instead.

    Epochs run inside `jax.lax.scan`, ``chunk`` epochs per jitted call; ``progress(n)`` is
    called after each chunk with the number of epochs done (e.g. ``tqdm.update``).
    """
    if xs.ndim != 3:
        raise ValueError(f"`xs` must have shape (traj, time, dim), got shape {xs.shape}.")
    return _fit(
        invariant,
        _ContrastiveObjective(normalise=normalise, loss=loss),
        xs,
        optimizer=optimizer,
        epochs=epochs,
        batch=batch_trajectories,
        trainable=None,
        progress=progress,
        chunk=chunk,
        key=key,
    )


def field_only(model: Projected) -> PyTree[bool]:
    """Filter spec of a `Projected` model that trains its field and freezes its invariant."""
    if not isinstance(model, Projected):
        raise TypeError(f"`model` must be a Projected, got {type(model).__name__}.")
    spec = jax.tree.map(lambda _: False, model)
    return eqx.tree_at(
        lambda m: m.field, spec, replace=jax.tree.map(eqx.is_inexact_array, model.field)
    )


def train_dynamics(
    model: PyTree,
    xs: Float[Array, "traj time dim"],
    dxs: Float[Array, "traj time dim"],
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    trainable: PyTree[bool] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> TrainResult:
    """Stage 2: fit a vector field (a plain MLP for the baseline, a `Projected` one for
    ConCerNet) by the mean squared error on ``ẋ`` (eq. 7).

    ``trainable`` is a filter spec (default: every inexact array); pass `field_only(model)`
    to keep a learned invariant frozen.
    """
    if xs.ndim != 3 or dxs.shape != xs.shape:
        raise ValueError(
            f"`xs` and `dxs` must both have shape (traj, time, dim), got {xs.shape} and "
            f"{dxs.shape}."
        )

    return _fit(
        model,
        _mse_objective,
        (xs, dxs),
        optimizer=optimizer,
        epochs=epochs,
        batch=batch_trajectories,
        trainable=trainable,
        progress=progress,
        chunk=chunk,
        key=key,
    )


def rollout(
    field: Callable[[Float[Array, " dim"]], Float[Array, " dim"]],
    x0: Float[Array, " dim"],
    ts: Float[Array, " time"],
    *,
    substeps: int = 1,
) -> Float[Array, "time dim"]:
    """RK4 rollout of ``field`` from ``x0``, ``substeps`` steps per interval of the (uniform)
    grid ``ts``, returned on ``ts``."""
    if not (isinstance(substeps, int) and substeps >= 1):
        raise ValueError(f"`substeps` must be a positive int, got substeps={substeps!r}.")
    fine = jnp.linspace(ts[0], ts[-1], (ts.shape[0] - 1) * substeps + 1)
    return simulate(field, x0, fine)[::substeps]


@eqx.filter_jit
def _rollouts(field, x0s, ts, substeps):
    return jax.vmap(lambda x0: rollout(field, x0, ts, substeps=substeps))(x0s)


class RolloutMetrics(eqx.Module):
    """Table-1 metrics of learned rollouts against the truth from the same initial states.

    ``mse``: mean over trajectories, times and coordinates of ``(x̂ − x)²``; ``violation``:
    mean over trajectories, times and invariants of ``|I(x̂_t) − I(x_0)|``;
    ``violation_sq``: the same mean of ``(I(x̂_t) − I(x_t))²`` — the squared metric of the
    authors' evaluation code (``evaluate_dynamics.py``: "all conservation"), against the true
    trajectory's invariant; ``*_curve``: per time; ``rollouts``: the learned trajectories.
    """

    mse: Float[Array, ""]
    violation: Float[Array, ""]
    violation_sq: Float[Array, ""]
    mse_curve: Float[Array, " time"]
    violation_curve: Float[Array, " time"]
    rollouts: Float[Array, "traj time dim"]


def evaluate(
    field: Callable[[Float[Array, " dim"]], Float[Array, " dim"]],
    system: AbstractConservedSystem,
    truth: Trajectories,
    *,
    substeps: int = 1,
) -> RolloutMetrics:
    """Roll ``field`` out from the initial states of ``truth`` and score it (Table 1)."""
    return score(_rollouts(field, truth.xs[:, 0], truth.ts, substeps), system, truth)


def score(
    pred: Float[Array, "traj time dim"], system: AbstractConservedSystem, truth: Trajectories
) -> RolloutMetrics:
    """Table-1 metrics of predicted trajectories ``pred`` against ``truth`` (same initial
    states, same times), with the system's true invariants."""
    inv = jax.vmap(jax.vmap(system.invariant))
    i0 = jax.vmap(system.invariant)(truth.xs[:, 0])[:, None, :]
    sq = jnp.mean((pred - truth.xs) ** 2, axis=-1)
    inv_pred = inv(pred)
    dev = jnp.mean(jnp.abs(inv_pred - i0), axis=-1)
    return RolloutMetrics(
        mse=jnp.mean(sq),
        violation=jnp.mean(dev),
        violation_sq=jnp.mean((inv_pred - inv(truth.xs)) ** 2),
        mse_curve=jnp.mean(sq, axis=0),
        violation_curve=jnp.mean(dev, axis=0),
        rollouts=pred,
    )
