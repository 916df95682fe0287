"""Meta-training of a `MetaConCerNet` by auto-decoding across a parametric family (DeepSDF-style:
the shared networks and one persistent latent per training system, learned jointly by one
optimiser step per minibatch), in ConCerNet's two stages."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._contrastive import LOSSES
from ._fit import ConCerNetFit, fit_minibatches
from ._meta_model import (
    MetaConCerNet,
    check_family_data,
    check_latents,
    dynamics_loss,
    invariant_loss,
)


class _Stage1(eqx.Module):
    model: MetaConCerNet
    z_inv: Array


class _Stage2(eqx.Module):
    model: MetaConCerNet
    z_inv: Array
    z_dyn: Array


class _MetaContrastive(eqx.Module):
    """Stage-1 objective: the mean over systems of `invariant_loss` (vmapped)."""

    normalise: bool = eqx.field(static=True)
    loss: str = eqx.field(static=True)

    def __call__(self, params: _Stage1, xs):  # xs: (traj, systems, time, dim)
        one = lambda z, x: invariant_loss(params.model, z, x, self.normalise, self.loss)
        return jnp.mean(jax.vmap(one)(params.z_inv, jnp.swapaxes(xs, 0, 1)))


def _meta_mse(params: _Stage2, batch):
    """Stage-2 objective: the mean over systems of `dynamics_loss` (vmapped)."""
    xs, dxs = (jnp.swapaxes(a, 0, 1) for a in batch)  # (systems, traj, time, dim)
    one = lambda zi, zd, x, dx: dynamics_loss(params.model, zi, zd, x, dx)
    return jnp.mean(jax.vmap(one)(params.z_inv, params.z_dyn, xs, dxs))


def _trainable(params, network, latents):
    """The filter spec training ``network(params)``'s arrays and ``latents(params)`` only."""
    spec = jax.tree.map(lambda _: False, params)
    mask = jax.tree.map(eqx.is_inexact_array, network(params))
    return eqx.tree_at(lambda p: (network(p), latents(p)), spec, replace=(mask, True))


def _initial_latents(model, latents, xs):
    if latents is None:
        latents = jnp.zeros((xs.shape[0], model.latent_dim), xs.dtype)
    check_latents("latents", latents, xs.shape[0], model.latent_dim)
    return latents


def train_meta_invariant(
    model: MetaConCerNet,
    xs: Float[Array, "systems traj time dim"],
    *,
    optimiser: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    normalise: bool = True,
    loss: str = "nce",
    latents: Float[Array, "systems latent"] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> ConCerNetFit:
    """Stage 1 by auto-decoding: the modulated invariant and one latent ``z_inv`` per training
    system, jointly, by the contrastive loss (eq. 4, batch-normalised per system by default)
    of each system's trajectories, vmapped over systems and averaged (plus the modulation's
    latent penalty). A minibatch is the same ``batch_trajectories`` trajectory indices of every
    system; the dynamics network stays untouched.

    **Arguments:**

    - `model`: the `MetaConCerNet` to train.
    - `xs`: training trajectories, shape ``(systems, traj, time, dim)``.
    - `optimiser`, `epochs`, `batch_trajectories`, `progress`, `chunk`, `key`: as in
      `train_invariant` (its loop and key scheme).
    - `normalise`, `loss`: the contrastive loss's options (as in `train_invariant`).
    - `latents`: initial latents ``(systems, latent_dim)``, persistent across epochs (default
      zeros: the base network at start for `Shift` and `RankOne`).

    **Returns:** a `ConCerNetFit` of the `MetaConCerNet` whose `latents` are the ``z_inv`` and
    whose `history` is averaged over systems.
    """
    check_family_data("xs", xs)
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {loss!r}.")
    params = _Stage1(model=model, z_inv=_initial_latents(model, latents, xs))
    spec = _trainable(params, lambda p: p.model.invariant, lambda p: p.z_inv)
    fit = fit_minibatches(
        params, _MetaContrastive(normalise=normalise, loss=loss), jnp.swapaxes(xs, 0, 1),
        optimiser=optimiser, epochs=epochs, batch_trajectories=batch_trajectories,
        trainable=spec, progress=progress, chunk=chunk, key=key,
    )  # fmt: skip
    return ConCerNetFit(model=fit.model.model, history=fit.history, latents=fit.model.z_inv)


def train_meta_dynamics(
    model: MetaConCerNet,
    z_inv: Float[Array, "systems latent"],
    xs: Float[Array, "systems traj time dim"],
    dxs: Float[Array, "systems traj time dim"],
    *,
    optimiser: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    latents: Float[Array, "systems latent"] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> ConCerNetFit:
    """Stage 2 by auto-decoding: the modulated dynamics and one latent ``z_dyn`` per training
    system, jointly, by the MSE on ``ẋ`` (eq. 7) of each system's projected field
    ``Projected(dynamics(z_dyn), invariant(z_inv))``, vmapped over systems and averaged. The
    invariant network and its latents `z_inv` (from `train_meta_invariant`) stay frozen.

    Arguments as `train_meta_invariant`'s, with ``dxs`` (the shape of ``xs``) and the frozen
    ``z_inv`` (``(systems, latent_dim)``). **Returns:** a `ConCerNetFit` whose `latents` are
    the ``z_dyn``.
    """
    check_family_data("xs", xs)
    if dxs.shape != xs.shape:
        raise ValueError(f"`dxs` must have the shape of `xs` {xs.shape}, got {dxs.shape}.")
    check_latents("z_inv", z_inv, xs.shape[0], model.latent_dim)
    params = _Stage2(model=model, z_inv=z_inv, z_dyn=_initial_latents(model, latents, xs))
    spec = _trainable(params, lambda p: p.model.dynamics, lambda p: p.z_dyn)
    fit = fit_minibatches(
        params, _meta_mse, (jnp.swapaxes(xs, 0, 1), jnp.swapaxes(dxs, 0, 1)),
        optimiser=optimiser, epochs=epochs, batch_trajectories=batch_trajectories,
        trainable=spec, progress=progress, chunk=chunk, key=key,
    )  # fmt: skip
    return ConCerNetFit(model=fit.model.model, history=fit.history, latents=fit.model.z_dyn)
