"""Shared Hamiltonian and GENERIC (metriplectic) structure.

Pure functions of a single state ``x``; batch with ``jax.vmap`` outside.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Scalar = Float[Array, ""]
State = Float[Array, " dim"]


def canonical_poisson(dim: int, dtype=None) -> Float[Array, "dim dim"]:
    """The canonical symplectic matrix ``J = [[0, I], [-I, 0]]`` for a state ``(q, p)``.

    **Arguments:**

    - `dim`: the (even) dimension of the state ``(q, p)``.
    - `dtype`: floating dtype; defaults to JAX's default float.

    **Returns:** the ``(dim, dim)`` matrix ``J`` with ``J^T = -J``.
    """
    if not isinstance(dim, int) or dim <= 0 or dim % 2 != 0:
        raise ValueError(f"`dim` must be a positive even integer, got dim={dim!r}.")
    n = dim // 2
    eye = jnp.eye(n, dtype=dtype)
    zero = jnp.zeros((n, n), dtype=dtype)
    return jnp.block([[zero, eye], [-eye, zero]])


def symplectic_gradient(hamiltonian: Callable[[State], Scalar], x: State) -> State:
    """Hamilton's equations ``dx/dt = J ∇H(x)`` (paper eq. 1) for a state ``x = (q, p)``.

    Uses the block structure of ``J`` instead of a matrix product: ``(∂H/∂p, -∂H/∂q)``.
    """
    if x.ndim != 1 or x.shape[0] % 2 != 0:
        raise ValueError(
            f"`x` must be a single state of even dimension (q, p), got shape {x.shape}."
        )
    grad = jax.grad(hamiltonian)(x)
    n = x.shape[0] // 2
    return jnp.concatenate([grad[n:], -grad[:n]])


def generic_field(
    energy: Callable[[State], Scalar],
    entropy: Callable[[State], Scalar],
    poisson: Callable[[State], Float[Array, "dim dim"]],
    friction: Callable[[State], Float[Array, "dim dim"]],
    x: State,
) -> State:
    """The GENERIC vector field ``dx/dt = L(x) ∇E(x) + M(x) ∇S(x)`` (paper eqs. 3-5)."""
    if x.ndim != 1:
        raise ValueError(f"`x` must be a single state (1-D), got shape {x.shape}.")
    return poisson(x) @ jax.grad(energy)(x) + friction(x) @ jax.grad(entropy)(x)


def generic_degeneracy(
    energy: Callable[[State], Scalar],
    entropy: Callable[[State], Scalar],
    poisson: Callable[[State], Float[Array, "dim dim"]],
    friction: Callable[[State], Float[Array, "dim dim"]],
    x: State,
) -> tuple[Scalar, Scalar]:
    """Norms of the GENERIC degeneracy residuals ``(|L ∇S|, |M ∇E|)`` at ``x``.

    Both vanish for a thermodynamically consistent system, which gives ``dE/dt = 0`` and
    ``dS/dt = ∇S^T M ∇S ≥ 0``.
    """
    grad_e = jax.grad(energy)(x)
    grad_s = jax.grad(entropy)(x)
    return jnp.linalg.norm(poisson(x) @ grad_s), jnp.linalg.norm(friction(x) @ grad_e)


def energy_rate(
    energy: Callable[[State], Scalar], field: Callable[[State], State], x: State
) -> Scalar:
    """``dE/dt = ∇E(x) · f(x)`` along the field ``f``."""
    return jnp.dot(jax.grad(energy)(x), field(x))
