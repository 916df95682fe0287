"""ConCerNet training: stage 1 (contrastive invariant, eq. 4/8) and stage 2 (projected
dynamics by MSE on ``ẋ``, eq. 7), both in the loop of `fit_minibatches`."""

from collections.abc import Callable

import equinox as eqx
import jax
import optax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._contrastive import contrastive_loss
from ._fit import ConCerNetFit, derivative_mse, fit_minibatches
from ._projection import Projected


class _ContrastiveObjective(eqx.Module):
    """A hashable loss callable (the jitted epoch loop takes it as a static argument)."""

    normalise: bool = eqx.field(static=True)
    loss: str = eqx.field(static=True)

    def __call__(self, net, xs):
        return contrastive_loss(net, xs, normalise=self.normalise, loss=self.loss)


def train_invariant(
    invariant: PyTree,
    xs: Float[Array, "traj time dim"],
    *,
    optimiser: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    normalise: bool = True,
    loss: str = "nce",
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> ConCerNetFit:
    """Stage 1: fit an invariant network with the contrastive loss (eq. 4) on minibatches of
    ``batch_trajectories`` whole trajectories, batch-normalised latents (eq. 8) by default;
    ``loss="square_ratio"`` trains with the authors' code's scale-free ratio instead.

    **The loop of every ConCerNet trainer.** Each epoch shuffles the trajectories and takes
    ``traj // batch_trajectories`` steps of ``optimiser`` (the remainder is dropped that
    epoch), inside `jax.lax.scan` (the package's one minibatch loop, shared with
    `jaxmeta.meta.fit`), ``chunk`` epochs per jitted call; ``progress(n)`` is called after
    each chunk with the epochs it ran (e.g. ``tqdm.update``). ``key`` is split into one key
    per epoch, and nothing else is random: two fits with the same key and the same number of
    trajectories see the same minibatches (ConCerNet's baseline and projected model are
    trained on one key for that reason).

    **Returns:** a `ConCerNetFit`: the trained network and the mean minibatch loss of each
    epoch.
    """
    if xs.ndim != 3:
        raise ValueError(f"`xs` must have shape (traj, time, dim), got shape {xs.shape}.")
    objective = _ContrastiveObjective(normalise=normalise, loss=loss)
    return fit_minibatches(
        invariant, objective, xs, optimiser=optimiser, epochs=epochs,
        batch_trajectories=batch_trajectories, progress=progress, chunk=chunk, key=key,
    )  # fmt: skip


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
    optimiser: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    trainable: PyTree[bool] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> ConCerNetFit:
    """Stage 2: fit a vector field (a plain MLP for the baseline, a `Projected` one for
    ConCerNet) by the mean squared error on ``ẋ`` (eq. 7).

    ``trainable`` is a filter spec (default: every inexact array); pass `field_only(model)`
    to keep a learned invariant frozen. The loop and the key scheme are `train_invariant`'s.
    """
    if xs.ndim != 3 or dxs.shape != xs.shape:
        raise ValueError(
            f"`xs` and `dxs` must both have shape (traj, time, dim), got {xs.shape} and "
            f"{dxs.shape}."
        )
    return fit_minibatches(
        model, derivative_mse, (xs, dxs), optimiser=optimiser, epochs=epochs,
        batch_trajectories=batch_trajectories, trainable=trainable, progress=progress,
        chunk=chunk, key=key,
    )  # fmt: skip
