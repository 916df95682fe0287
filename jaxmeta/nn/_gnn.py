"""GENERIC neural network (paper §2, App. C.2, eq. 3-5)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int
from ..systems import canonical_poisson
from ._grad import check_grad_mode, energy_gradient
from ._hnn import check_state


class GNN(eqx.Module):
    """GENERIC neural network ``dx/dt = L ∇E(x) + M(x) ∇S(x)`` (paper App. C.2).

    The state is ``x = (q, p, s)`` with ``q, p ∈ R^num_q`` and entropy variables
    ``s ∈ R^num_s``; ``n = 2 num_q + num_s``.

    - ``L`` is canonical on ``(q, p)`` and zero on ``s``; ``S(x) = Σ s``, so ``L ∇S = 0``.
    - ``E(x) = K(p) + U(q, s)``, two MLPs (`kinetic`, `potential`).
    - ``M = V D Vᵀ`` with columns ``v^α = Λ^α ∇E`` (``Λ^α`` skew, ``α = 1..n``) and
      ``D = D̃ D̃ᵀ``: ``M_ij = Σ_αβ Λ^α_ik D_αβ Λ^β_jl ∂_kE ∂_lE``. Since
      ``∇Eᵀ Λ^α ∇E = 0``, ``M ∇E = 0``; and ``M = (V D̃)(V D̃)ᵀ ⪰ 0``, for any weights.

    The core ``D̃`` is a bias-free ``eqx.nn.Linear(n, n)`` (its weight is ``D̃``) so that a
    modulation corrects it like any other linear layer; ``Λ`` is a raw ``(n, n, n)`` tensor
    skew-symmetrised in its last two indices and is shared (not modulated).
    """

    kinetic: eqx.nn.MLP
    potential: eqx.nn.MLP
    friction_core: eqx.nn.Linear
    skew_raw: Float[Array, "n n n"]
    num_q: int = eqx.field(static=True)
    num_s: int = eqx.field(static=True)
    grad_mode: str = eqx.field(static=True, default="reverse")

    def __init__(
        self,
        num_q: int,
        num_s: int,
        *,
        width: int = 100,
        depth: int = 4,
        activation: Callable = jax.nn.tanh,
        grad_mode: str = "reverse",
        dtype=None,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `num_q`: number of positions (and of momenta).
        - `num_s`: number of entropy variables (at least 1).
        - `width`, `depth`, `activation`: the two energy MLPs (as in `HNN`).
        - `grad_mode`: ``"reverse"`` or ``"forward"``, how ``∇E`` is computed.
        - `dtype`: parameter dtype; defaults to JAX's default float.
        - `key`: PRNG key for the weights.
        """
        check_int("num_q", num_q)
        check_int("num_s", num_s)
        check_int("width", width)
        check_int("depth", depth, minimum=0)
        dtype = jnp.result_type(float) if dtype is None else dtype
        n = 2 * num_q + num_s
        k_kin, k_pot, k_core, k_skew = jax.random.split(key, 4)
        self.kinetic = eqx.nn.MLP(num_q, "scalar", width, depth, activation, dtype=dtype, key=k_kin)
        self.potential = eqx.nn.MLP(
            num_q + num_s, "scalar", width, depth, activation, dtype=dtype, key=k_pot
        )
        self.friction_core = eqx.nn.Linear(n, n, use_bias=False, dtype=dtype, key=k_core)
        self.skew_raw = jax.random.normal(k_skew, (n, n, n), dtype) / jnp.sqrt(n).astype(dtype)
        self.num_q = num_q
        self.num_s = num_s
        self.grad_mode = grad_mode

    def __check_init__(self):
        check_grad_mode(self.grad_mode)

    @property
    def state_dim(self) -> int:
        return 2 * self.num_q + self.num_s

    def _split(self, x):
        nq = self.num_q
        return x[:nq], x[nq : 2 * nq], x[2 * nq :]

    def energy(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        """``E(x) = K(p) + U(q, s)``."""
        check_state(x, self.state_dim)
        q, p, s = self._split(x)
        return self.kinetic(p) + self.potential(jnp.concatenate([q, s]))

    def entropy(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        """``S(x) = Σ s``."""
        check_state(x, self.state_dim)
        return jnp.sum(self._split(x)[2])

    def poisson(self, x: Float[Array, " n"]) -> Float[Array, "n n"]:
        """``L``: canonical on ``(q, p)``, zero on ``s`` (constant, skew)."""
        check_state(x, self.state_dim)
        j = canonical_poisson(2 * self.num_q, dtype=x.dtype)
        return jnp.pad(j, ((0, self.num_s), (0, self.num_s)))

    def _skew(self):
        return 0.5 * (self.skew_raw - jnp.swapaxes(self.skew_raw, -1, -2))

    def _friction_factor(self, grad_e):
        # B = V D̃ with V[:, α] = Λ^α ∇E, so that M = B Bᵀ.
        v = jnp.einsum("aij,j->ia", self._skew(), grad_e)
        return v @ self.friction_core.weight

    def friction(self, x: Float[Array, " n"]) -> Float[Array, "n n"]:
        """``M(x) = V D Vᵀ``: symmetric, positive semi-definite, ``M ∇E = 0``."""
        check_state(x, self.state_dim)
        b = self._friction_factor(energy_gradient(self.energy, x, self.grad_mode))
        return b @ b.T

    def _grad_entropy(self, x):
        nq = self.num_q
        return jnp.concatenate([jnp.zeros(2 * nq, x.dtype), jnp.ones(self.num_s, x.dtype)])

    def __call__(self, x: Float[Array, " n"]) -> Float[Array, " n"]:
        """The field ``dx/dt = L ∇E + M ∇S`` at one state ``x``."""
        check_state(x, self.state_dim)
        grad_e = energy_gradient(self.energy, x, self.grad_mode)
        nq = self.num_q
        reversible = jnp.concatenate(
            [grad_e[nq : 2 * nq], -grad_e[:nq], jnp.zeros(self.num_s, x.dtype)]
        )
        b = self._friction_factor(grad_e)
        return reversible + b @ (b.T @ self._grad_entropy(x))
