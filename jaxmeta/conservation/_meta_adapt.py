"""Test-time adaptation of a meta-trained `MetaConCerNet` to new systems (the meta-learning
paper's Algorithm 2): the base networks and hypernetworks frozen, only the latents fitted."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from .._checks import check_int
from ..meta import optimise
from ._contrastive import LOSSES
from ._meta_model import (
    MetaConCerNet,
    check_family_data,
    check_latents,
    dynamics_loss,
    invariant_loss,
)
from ._projection import Projected


class MetaAdapted(eqx.Module):
    """Latents fitted to new systems with the base frozen.

    **Fields:** `meta_model` (the meta-trained `MetaConCerNet`, returned unchanged), `z_inv`,
    `z_dyn` (``(systems, latent_dim)``), `losses_inv`, `losses_dyn` (``(systems, steps)``: the
    loss before each step).
    """

    meta_model: MetaConCerNet
    z_inv: Float[Array, "systems latent"]
    z_dyn: Float[Array, "systems latent"]
    losses_inv: Float[Array, "systems steps"]
    losses_dyn: Float[Array, "systems steps"]

    def model(self, i: int) -> Projected:
        """The adapted model (projected field) of system ``i``, as `jaxmeta.meta.Adapted.model`."""
        num = self.z_inv.shape[0]
        if isinstance(i, bool) or not isinstance(i, int) or not -num <= i < num:
            raise IndexError(f"`i` must be an int in [{-num}, {num}), got i={i!r}.")
        return self.meta_model(self.z_inv[i], self.z_dyn[i])


@eqx.filter_jit
def _adapt(model, z0_inv, z0_dyn, xs, dxs, optimiser, steps, normalise, loss):
    def fit_inv(z0, x):
        objective = lambda z: invariant_loss(model, z, x, normalise, loss)
        return optimise(objective, z0, optimiser, steps)

    def fit_dyn(z0, zi, x, dx):
        return optimise(lambda z: dynamics_loss(model, zi, z, x, dx), z0, optimiser, steps)

    z_inv, losses_inv = jax.vmap(fit_inv)(z0_inv, xs)
    z_dyn, losses_dyn = jax.vmap(fit_dyn)(z0_dyn, z_inv, xs, dxs)
    return z_inv, z_dyn, losses_inv, losses_dyn


def adapt_meta_concernet(
    model: MetaConCerNet,
    train_z_inv: Float[Array, "systems latent"],
    train_z_dyn: Float[Array, "systems latent"],
    xs: Float[Array, "tasks traj time dim"],
    dxs: Float[Array, "tasks traj time dim"],
    *,
    optimiser: optax.GradientTransformation,
    steps: int = 100,
    num_support: int | None = None,
    normalise: bool = True,
    loss: str = "nce",
) -> MetaAdapted:
    """Test-time adaptation (Algorithm 2) of a `MetaConCerNet` to new systems, all at once
    (vmapped, jitted, each inner loop one `jax.lax.scan` of `jaxmeta.meta.optimise`).

    The base networks and hypernetworks stay frozen. For each new system, ``z_inv`` starts at
    the mean of the training invariant latents and takes `steps` steps of `optimiser` on the
    contrastive loss of its support trajectories; then ``z_dyn`` starts at the mean of the
    training dynamics latents and takes `steps` steps on the MSE of the projected field
    ``Projected(dynamics(z_dyn), invariant(z_inv))`` on the same support (``z_inv`` fixed):
    the two stages of training, replayed on the latents alone.

    **Arguments:**

    - `model`: the meta-trained `MetaConCerNet`.
    - `train_z_inv`, `train_z_dyn`: the training latents (their means start adaptation).
    - `xs`, `dxs`: trajectories of the new systems, shape ``(tasks, traj, time, dim)``.
    - `optimiser`: the optax transformation of the latents, fresh state per system and stage
      (no default; `experiments.concernet_meta` uses ``optax.adam(1e-2)``). Reusing one
      object reuses the compiled program.
    - `steps`: optimiser steps per stage (default 100).
    - `num_support`: use the first ``K`` trajectories of each system (default: all);
      ``2 <= K <= traj`` (the contrastive loss needs two trajectories).
    - `normalise`, `loss`: the contrastive loss's options (as in training).
    """
    check_family_data("xs", xs)
    if dxs.shape != xs.shape:
        raise ValueError(f"`dxs` must have the shape of `xs` {xs.shape}, got {dxs.shape}.")
    available = xs.shape[1]
    k = available if num_support is None else num_support
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= available:
        raise ValueError(
            f"`num_support` must be an int in [2, {available}] (the trajectories available), "
            f"got num_support={num_support!r}."
        )
    if not isinstance(optimiser, optax.GradientTransformation):
        raise TypeError(
            "`optimiser` must be an optax.GradientTransformation (e.g. optax.adam(1e-2)), got "
            f"optimiser={optimiser!r}."
        )
    check_int("steps", steps)
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {loss!r}.")
    check_latents("train_z_inv", train_z_inv, None, model.latent_dim)
    check_latents("train_z_dyn", train_z_dyn, None, model.latent_dim)
    tasks = xs.shape[0]
    z0_inv = jnp.broadcast_to(jnp.mean(train_z_inv, axis=0), (tasks, model.latent_dim))
    z0_dyn = jnp.broadcast_to(jnp.mean(train_z_dyn, axis=0), (tasks, model.latent_dim))
    sx, sdx = xs[:, :k], dxs[:, :k]
    out = _adapt(model, z0_inv, z0_dyn, sx, sdx, optimiser, steps, normalise, loss)
    return MetaAdapted(model, *out)
