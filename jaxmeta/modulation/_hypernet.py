"""The linear hypernetwork ``z -> codes`` (paper App. B)."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int


class Hypernet(eqx.Module):
    """Affine map ``codes = A z + c`` from a task latent to modulation codes (no nonlinearity).

    Initialisation (our choice): ``A`` is Equinox's default ``Linear`` init scaled by
    `weight_scale` (``1e-2``), so initial modulations are small; ``c`` is zero unless a
    `bias` is given (`modulate` passes the modulation's `code_bias`).
    """

    linear: eqx.nn.Linear

    def __init__(
        self,
        latent_dim: int,
        num_codes: int,
        *,
        weight_scale: float = 1e-2,
        bias: Float[Array, " codes"] | None = None,
        dtype=None,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `latent_dim`: size of the task latent ``z`` (paper: 10).
        - `num_codes`: number of codes, ``modulation.num_codes(model)``.
        - `weight_scale`: factor on the default init of ``A``.
        - `bias`: initial ``c`` of shape ``(num_codes,)``; zeros when `None`.
        - `dtype`: parameter dtype; defaults to JAX's default float.
        - `key`: PRNG key for ``A``.
        """
        check_int("latent_dim", latent_dim)
        check_int("num_codes", num_codes)
        linear = eqx.nn.Linear(latent_dim, num_codes, dtype=dtype, key=key)
        if bias is None:
            bias = jnp.zeros_like(linear.bias)
        elif jnp.shape(bias) != (num_codes,):
            raise ValueError(f"`bias` must have shape ({num_codes},), got shape {jnp.shape(bias)}.")
        weight = linear.weight * jnp.asarray(weight_scale, linear.weight.dtype)
        bias = jnp.asarray(bias, linear.bias.dtype)
        self.linear = eqx.tree_at(lambda lay: (lay.weight, lay.bias), linear, (weight, bias))

    @property
    def latent_dim(self) -> int:
        return self.linear.in_features

    @property
    def num_codes(self) -> int:
        return self.linear.out_features

    def __call__(self, z: Float[Array, " latent"]) -> Float[Array, " codes"]:
        """The codes of one latent ``z`` of shape ``(latent_dim,)``."""
        if jnp.shape(z) != (self.latent_dim,):
            raise ValueError(
                f"`z` must be one latent of shape ({self.latent_dim},), got shape "
                f"{jnp.shape(z)}; batch over tasks with jax.vmap."
            )
        return self.linear(z)
