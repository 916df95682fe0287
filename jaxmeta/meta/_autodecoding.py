"""Auto-decoding with modulations: paper Algorithms 1 and 2."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._checks import check_int
from ..losses import field_mse
from ..modulation import AbstractModulation, modulate
from ._base import AbstractMetaTrained, Adapted, MetaState, zeros_step
from ._inner import (
    adapt_optimiser,
    adapt_optimiser_field,
    check_adapt_optimiser,
    optax_update,
    optimise,
)


class AutoDecoding(AbstractMetaTrained):
    """Modulation-based meta-learning by auto-decoding (paper §3.2, Algorithms 1–2).

    Every training function ``k`` owns a latent ``z_k`` that persists across epochs (never
    reset). A meta-step on a batch of functions first takes `inner_steps` Adam steps on the
    batch's latents only (base frozen), then one outer Adam step on the base parameters
    (MLP weights, hypernetwork, MR bases) with those latents held fixed: no second-order
    terms. Test-time adaptation (Algorithm 2) starts every new latent at the mean of the
    training latents (``latent_init="mean"``) or at zero (``"zero"``, the ablation of the
    paper's Tables 9–10) and takes `adapt_steps` Adam steps on it alone (``adapt_optimiser=
    "sgd"``: plain SGD steps at the same `inner_lr` instead; 0 steps keep the initial latent).

    Each inner loop starts a fresh Adam state (our choice; the paper does not say).
    """

    modulation: AbstractModulation
    latent_dim: int = 10
    outer_lr: float = 1e-3
    inner_lr: float = 2e-3
    inner_steps: int = 3
    adapt_steps: int = 100
    tasks_per_step: int = 5
    latent_init: Literal["mean", "zero"] = "mean"
    adapt_optimiser: Literal["adam", "sgd"] = adapt_optimiser_field()

    def __check_init__(self):
        check_int("latent_dim", self.latent_dim)
        check_adapt_optimiser(self.adapt_optimiser)
        if not isinstance(self.modulation, AbstractModulation):
            raise TypeError(
                f"`modulation` must be an AbstractModulation, got {type(self.modulation).__name__}."
            )
        if self.latent_init not in ("mean", "zero"):
            raise ValueError(f"`latent_init` must be 'mean' or 'zero', got {self.latent_init!r}.")

    def init(self, make_model, num_train, *, key):
        check_int("num_train", num_train)
        k_model, k_mod = jax.random.split(key)
        modulated = modulate(
            make_model(k_model), self.modulation, latent_dim=self.latent_dim, key=k_mod
        )
        trainable = eqx.filter(modulated, eqx.is_inexact_array)
        dtype = jax.tree.leaves(trainable)[0].dtype
        return MetaState(
            params=modulated,
            opt_state=optax.adam(self.outer_lr).init(trainable),
            latents=jnp.zeros((num_train, self.latent_dim), dtype),
            step=zeros_step(),
        )

    @staticmethod
    def _loss(modulated, z, xs, dxs):
        return field_mse(modulated(z), xs, dxs) + modulated.penalty(z)

    def _fit_latents(self, modulated, z0, xs, dxs, lr, steps, optimiser=None):
        optimiser = optax.adam(lr) if optimiser is None else optimiser

        def one(z, x, y):
            return optimise(lambda q: self._loss(modulated, q, x, y), z, optimiser, steps)

        return jax.vmap(one)(z0, xs, dxs)

    def meta_step(self, state, xs, dxs, idx):
        modulated = state.params
        z, _ = self._fit_latents(
            modulated, state.latents[idx], xs, dxs, self.inner_lr, self.inner_steps
        )
        z = jax.lax.stop_gradient(z)

        def outer_loss(m):
            return jnp.mean(jax.vmap(lambda q, x, y: self._loss(m, q, x, y))(z, xs, dxs))

        loss, grads = eqx.filter_value_and_grad(outer_loss)(modulated)
        params, opt_state = optax_update(
            optax.adam(self.outer_lr), grads, state.opt_state, modulated
        )
        return (
            MetaState(
                params=params,
                opt_state=opt_state,
                latents=state.latents.at[idx].set(z),
                step=state.step + 1,
            ),
            loss,
        )

    def adapt(self, state, xs, dxs, *, key):
        del key
        modulated = state.params
        if self.latent_init == "mean":
            z0 = jnp.mean(state.latents, axis=0)
        else:
            z0 = jnp.zeros_like(state.latents[0])
        z0 = jnp.broadcast_to(z0, (xs.shape[0], z0.shape[0]))
        lr = self.inner_lr
        optimiser = adapt_optimiser(self.adapt_optimiser, lr, optax.adam(lr))
        z, losses = self._fit_latents(modulated, z0, xs, dxs, lr, self.adapt_steps, optimiser)
        return Adapted(models=eqx.filter_vmap(modulated)(z), losses=losses, latents=z)
