"""Parameter identification: an affine map from auto-decoding latents to physical parameters
(beyond the paper)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def _check_pair(latents, mu, latent_dim: int | None = None):
    latents, mu = jnp.asarray(latents), jnp.asarray(mu)
    if latents.ndim != 2 or mu.ndim != 2 or latents.shape[0] != mu.shape[0]:
        raise ValueError(
            f"`latents` and `mu` must have shapes (n, latent_dim) and (n, params) with one row "
            f"per function, got {latents.shape} and {mu.shape}."
        )
    if latent_dim is not None and latents.shape[1] != latent_dim:
        raise ValueError(
            f"`latents` must have {latent_dim} columns (the map's latent_dim), got shape "
            f"{latents.shape}."
        )
    if latents.dtype != mu.dtype:
        mu = mu.astype(latents.dtype)
    return latents, mu


class LatentMap(eqx.Module):
    """The affine map ``μ ≈ W z + b`` from a function's latent code to its parameters.

    Act on one latent (``map(z)``); batch with ``jax.vmap``. Fitted by `fit_latent_map`.

    - `weight`: ``(latent_dim, params)``.
    - `bias`: ``(params,)``.
    """

    weight: Float[Array, "latent params"]
    bias: Float[Array, " params"]

    def __call__(self, z: Float[Array, " latent"]) -> Float[Array, " params"]:
        return z @ self.weight + self.bias

    def _predict(self, latents, mu):
        latents, mu = _check_pair(latents, mu, self.weight.shape[0])
        if mu.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"`mu` must have {self.weight.shape[1]} columns (the map's parameters), got "
                f"shape {mu.shape}."
            )
        return jax.vmap(self)(latents), mu

    def r2(
        self, latents: Float[ArrayLike, "n latent"], mu: Float[ArrayLike, "n params"]
    ) -> Float[Array, " params"]:
        """Coefficient of determination per parameter on held-out functions:
        ``1 − Σ(μ − μ̂)² / Σ(μ − mean μ)²``; 1 for a perfect map, about 0 (or below) for one
        that knows nothing, NaN where ``mu`` is constant."""
        pred, mu = self._predict(latents, mu)
        ss_res = jnp.sum((mu - pred) ** 2, axis=0)
        ss_tot = jnp.sum((mu - jnp.mean(mu, axis=0, keepdims=True)) ** 2, axis=0)
        return jnp.where(ss_tot > 0, 1 - ss_res / jnp.where(ss_tot > 0, ss_tot, 1), jnp.nan)

    def rmse(
        self, latents: Float[ArrayLike, "n latent"], mu: Float[ArrayLike, "n params"]
    ) -> Float[Array, " params"]:
        """Root-mean-square error of the predicted parameters, per parameter."""
        pred, mu = self._predict(latents, mu)
        return jnp.sqrt(jnp.mean((mu - pred) ** 2, axis=0))


def fit_latent_map(
    latents: Float[ArrayLike, "n latent"], mu: Float[ArrayLike, "n params"]
) -> LatentMap:
    """Least-squares affine map (with intercept) from latents to parameters.

    Typically fitted on the training functions' latents (``state.latents`` of an
    `AutoDecoding` learner) and their known ``dataset.train.mu``, then applied to the latent
    Algorithm 2 finds for a new function to read off its parameters; `LatentMap.r2` on the
    test functions says how far to trust it. The fit centres both sides and solves
    ``(Z − z̄) W = μ − μ̄`` with `jnp.linalg.lstsq` (minimum norm if ``Z`` is rank deficient),
    then ``b = μ̄ − z̄ W``.

    **Arguments:**

    - `latents`: ``(n, latent_dim)``, one latent per function; ``n >= latent_dim + 1``.
    - `mu`: ``(n, params)``, their parameters.

    **Returns:** a `LatentMap`.
    """
    latents, mu = _check_pair(latents, mu)
    n, d = latents.shape
    if n < d + 1:
        raise ValueError(
            f"`latents` needs at least latent_dim + 1 = {d + 1} functions to fit an affine map, "
            f"got {n}."
        )
    z_mean = jnp.mean(latents, axis=0, keepdims=True)
    mu_mean = jnp.mean(mu, axis=0, keepdims=True)
    weight, *_ = jnp.linalg.lstsq(latents - z_mean, mu - mu_mean)
    return LatentMap(weight=weight, bias=(mu_mean - z_mean @ weight)[0])
