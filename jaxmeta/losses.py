"""Field-matching losses (paper eqs. 2 and 5) and their relative form."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Field = Callable[[Float[Array, " dim"]], Float[Array, " dim"]]


def field_mse(
    model: Field, xs: Float[Array, "n dim"], dxs: Float[Array, "n dim"]
) -> Float[Array, ""]:
    """Mean squared error between the model field and target velocities.

    The symplecticity loss of eq. 2 (HNN) and the GENERIC loss of eq. 5: the mean over states
    of ``|f_θ(x) − ẋ|²`` summed over state dimensions.
    """
    if xs.shape != dxs.shape or xs.ndim != 2:
        raise ValueError(
            f"`xs` and `dxs` must both have shape (n, dim), got {xs.shape} and {dxs.shape}."
        )
    pred = jax.vmap(model)(xs)
    return jnp.mean(jnp.sum((pred - dxs) ** 2, axis=-1))


def relative_field_error(
    model: Field, xs: Float[Array, "n dim"], dxs: Float[Array, "n dim"]
) -> Float[Array, ""]:
    """``|f_θ(X) − Ẋ| / |Ẋ|`` over all states at once (Frobenius norms)."""
    pred = jax.vmap(model)(xs)
    return jnp.linalg.norm(pred - dxs) / jnp.linalg.norm(dxs)
