"""Auto-decoding with modulations: paper Algorithms 1 and 2."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from .._checks import check_int, check_non_negative
from ..losses import field_mse
from ..modulation import AbstractModulation, modulate
from ._base import AbstractMetaTrained, MetaState, zeros_step
from ._inner import optax_update, optimise, optimise_from, optimiser_init

# The paper's optimisers (App. F): Adam everywhere, outer lr 1e-3, inner (and test-time) 2e-3.
_OUTER = optax.adam(1e-3)
_INNER = optax.adam(2e-3)


class AutoDecoding(AbstractMetaTrained):
    """Modulation-based meta-learning by auto-decoding (paper §3.2, Algorithms 1–2).

    Every training function ``k`` owns a latent ``z_k`` that persists across epochs (never
    reset). A meta-step on a batch of functions first takes `inner_steps` steps of
    `inner_optimiser` on the batch's latents only (base frozen), then one `outer_optimiser`
    step on the base parameters (MLP weights, hypernetwork, MR bases) with those latents held
    fixed: no second-order terms. Test-time adaptation (Algorithm 2) starts every new latent
    at the mean of the training latents (``latent_init="mean"``) or at zero (``"zero"``, the
    ablation of the paper's Tables 9–10) and takes `adapt_steps` steps of `adapt_optimiser`
    on it alone (0 steps keep the initial latent). The paper's optimisers are the defaults.

    Two choices the paper's text leaves open, both off by default:

    - `latent_state`: ``"fresh"`` (default) starts every inner loop from a fresh
      `inner_optimiser` state, so each visit's first Adam step moves every coordinate by
      about its learning rate; ``"persistent"`` keeps each training latent's optimiser state
      across meta-steps (in `MetaState.latent_opt_state`, and so in checkpoints).
    - the locality regulariser of the paper's later version: `latent_penalty` ``λ_z`` adds
      ``λ_z ‖z‖²`` to every latent's loss (inner loop and test time), `hypernet_penalty`
      ``λ_φ`` adds ``λ_φ ‖A‖²`` to the outer loss, ``A`` the hypernetwork's linear map
      (its bias, the base codes, is not penalised). Squared Euclidean norms (smooth at 0,
      as the auto-decoder's Gaussian prior on latents); the weights are absolute, on the
      scale of the field MSE.
    """

    modulation: AbstractModulation
    latent_dim: int = 10
    outer_optimiser: optax.GradientTransformation = _OUTER
    inner_optimiser: optax.GradientTransformation = _INNER
    adapt_optimiser: optax.GradientTransformation = _INNER
    inner_steps: int = 3
    adapt_steps: int = 100
    tasks_per_step: int = 5
    latent_init: Literal["mean", "zero"] = "mean"
    latent_state: Literal["fresh", "persistent"] = "fresh"
    latent_penalty: float = 0.0
    hypernet_penalty: float = 0.0

    def __check_init__(self):
        check_int("latent_dim", self.latent_dim)
        if not isinstance(self.modulation, AbstractModulation):
            raise TypeError(
                f"`modulation` must be an AbstractModulation, got {type(self.modulation).__name__}."
            )
        if self.latent_init not in ("mean", "zero"):
            raise ValueError(
                f"`latent_init` must be 'mean' or 'zero', got latent_init={self.latent_init!r}."
            )
        if self.latent_state not in ("fresh", "persistent"):
            raise ValueError(
                f"`latent_state` must be 'fresh' or 'persistent', got "
                f"latent_state={self.latent_state!r}."
            )
        check_non_negative("latent_penalty", self.latent_penalty)
        check_non_negative("hypernet_penalty", self.hypernet_penalty)

    def init(self, make_model, num_train, *, key):
        check_int("num_train", num_train)
        k_model, k_mod = jax.random.split(key)
        modulated = modulate(
            make_model(k_model), self.modulation, latent_dim=self.latent_dim, key=k_mod
        )
        trainable = eqx.filter(modulated, eqx.is_inexact_array)
        dtype = jax.tree.leaves(trainable)[0].dtype
        latents = jnp.zeros((num_train, self.latent_dim), dtype)
        latent_opt_state = None
        if self.latent_state == "persistent":
            latent_opt_state = jax.vmap(lambda z: optimiser_init(self.inner_optimiser, z))(latents)
        return MetaState(
            params=modulated,
            opt_state=self.outer_optimiser.init(trainable),
            latents=latents,
            step=zeros_step(),
            latent_opt_state=latent_opt_state,
        )

    def _loss(self, modulated, z, xs, dxs):
        """One function's loss at latent ``z``: the field MSE, the modulation's penalty and,
        with `latent_penalty`, ``λ_z ‖z‖²``."""
        loss = field_mse(modulated(z), xs, dxs) + modulated.penalty(z)
        if self.latent_penalty:
            loss = loss + self.latent_penalty * jnp.sum(z**2)
        return loss

    def _outer_loss(self, modulated, z, xs, dxs):
        loss = jnp.mean(jax.vmap(lambda q, x, y: self._loss(modulated, q, x, y))(z, xs, dxs))
        if self.hypernet_penalty:
            loss = loss + self.hypernet_penalty * jnp.sum(modulated.hypernet.linear.weight**2)
        return loss

    def _inner_loop(self, state, xs, dxs, idx):
        """The batch's latents after `inner_steps` steps, and their optimiser states (None
        unless persistent)."""
        modulated, z0 = state.params, state.latents[idx]
        if self.latent_state == "fresh":

            def fresh(z, x, y):
                loss = lambda q: self._loss(modulated, q, x, y)
                return optimise(loss, z, self.inner_optimiser, self.inner_steps)[0]

            return jax.vmap(fresh)(z0, xs, dxs), None

        def kept(z, s, x, y):
            loss = lambda q: self._loss(modulated, q, x, y)
            z, s, _ = optimise_from(loss, z, self.inner_optimiser, s, self.inner_steps)
            return z, s

        s0 = jax.tree.map(lambda a: a[idx], state.latent_opt_state)
        return jax.vmap(kept)(z0, s0, xs, dxs)

    def meta_step(self, state, xs, dxs, idx):
        z, latent_opt = self._inner_loop(state, xs, dxs, idx)
        z = jax.lax.stop_gradient(z)
        modulated = state.params
        outer = lambda m: self._outer_loss(m, z, xs, dxs)
        loss, grads = eqx.filter_value_and_grad(outer)(modulated)
        params, opt_state = optax_update(self.outer_optimiser, grads, state.opt_state, modulated)
        if latent_opt is not None:
            latent_opt = jax.tree.map(
                lambda all_, new: all_.at[idx].set(new), state.latent_opt_state, latent_opt
            )
        return (
            MetaState(
                params=params,
                opt_state=opt_state,
                latents=state.latents.at[idx].set(z),
                step=state.step + 1,
                latent_opt_state=latent_opt,
            ),
            loss,
        )

    def adapt_start(self, state, *, key):
        del key
        if self.latent_init == "mean":
            return jnp.mean(state.latents, axis=0)
        return jnp.zeros_like(state.latents[0])

    def adapt_loss(self, state, params, xs, dxs):
        return self._loss(state.params, params, xs, dxs)

    def adapt_model(self, state, params):
        return state.params(params)

    def adapt_residuals(self, state, params, xs, dxs):
        """Residuals whose sum of squares is `_loss`: the field residuals over ``sqrt(n)``,
        the square root of the modulation's penalty (non-negative) and ``sqrt(λ_z) z``."""
        modulated = state.params
        pred = jax.vmap(modulated(params))(xs)
        tiny = jnp.finfo(pred.dtype).tiny
        out = {
            "field": (pred - dxs) / jnp.sqrt(jnp.asarray(xs.shape[0], pred.dtype)),
            "penalty": jnp.sqrt(jnp.maximum(modulated.penalty(params), tiny)),
        }
        if self.latent_penalty:
            out["latent"] = jnp.sqrt(jnp.asarray(self.latent_penalty, pred.dtype)) * params
        return out

    def adapt_latent(self, params):
        return params
