"""Hamiltonian neural network (paper §2, eq. 1-2)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int
from ..systems import canonical_poisson, symplectic_gradient
from ._grad import check_grad_mode, energy_gradient

# jaxmeta/conservation/_meta.py still imports `check_size` from here; delete this alias once it
# imports `check_int` from jaxmeta._checks.
check_size = check_int


def check_state(x, size: int) -> None:
    """Raise a `ValueError` unless `x` is one state of shape ``(size,)``."""
    if jnp.shape(x) != (size,):
        raise ValueError(
            f"`x` must be one state of shape ({size},); batch with jax.vmap outside. "
            f"Got x with shape {jnp.shape(x)}."
        )


class HNN(eqx.Module):
    """Hamiltonian neural network: a scalar MLP ``H_θ(x)`` and the field ``dx/dt = J ∇H_θ(x)``.

    The state is ``x = (q, p)`` of even size and ``J = [[0, I], [-I, 0]]`` (paper eq. 1). The
    field is symplectic for every weight, so ``∇H · dx/dt = 0`` exactly: modulating the MLP's
    weights (``jaxmeta.modulation``) keeps the structure.

    The paper's "4 layers of 100 units, tanh" is read as ``eqx.nn.MLP(depth=4, width=100)``:
    4 hidden layers of width 100, i.e. 5 linear layers (2→100→100→100→100→1).
    """

    mlp: eqx.nn.MLP
    grad_mode: str = eqx.field(static=True, default="reverse")

    def __init__(
        self,
        state_dim: int,
        *,
        width: int = 100,
        depth: int = 4,
        activation: Callable = jax.nn.tanh,
        grad_mode: str = "reverse",
        dtype=None,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `state_dim`: size of the state ``(q, p)``; a positive even integer.
        - `width`: hidden width of the energy MLP.
        - `depth`: number of hidden layers (``eqx.nn.MLP``'s `depth`).
        - `activation`: hidden activation (smooth: the field differentiates it).
        - `grad_mode`: ``"reverse"`` or ``"forward"``, how ``∇H`` is computed.
        - `dtype`: parameter dtype; defaults to JAX's default float.
        - `key`: PRNG key for the weights.
        """
        check_int("state_dim", state_dim)
        if state_dim % 2 != 0:
            raise ValueError(f"`state_dim` must be even (q, p), got state_dim={state_dim!r}.")
        check_int("width", width)
        check_int("depth", depth, minimum=0)
        self.mlp = eqx.nn.MLP(state_dim, "scalar", width, depth, activation, dtype=dtype, key=key)
        self.grad_mode = grad_mode

    def __check_init__(self):
        check_grad_mode(self.grad_mode)

    @property
    def state_dim(self) -> int:
        return self.mlp.in_size

    def energy(self, x: Float[Array, " dim"]) -> Float[Array, ""]:
        """The learned Hamiltonian ``H_θ(x)`` of one state."""
        check_state(x, self.state_dim)
        return self.mlp(x)

    def poisson(self, x: Float[Array, " dim"]) -> Float[Array, "dim dim"]:
        """The constant canonical matrix ``J`` (for a common interface with `GNN`)."""
        check_state(x, self.state_dim)
        return canonical_poisson(self.state_dim, dtype=x.dtype)

    def __call__(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """The field ``dx/dt = J ∇H_θ(x)`` at one state ``x``."""
        check_state(x, self.state_dim)
        if self.grad_mode == "reverse":
            return symplectic_gradient(self.mlp, x)
        grad = energy_gradient(self.mlp, x, self.grad_mode)
        n = self.state_dim // 2
        return jnp.concatenate([grad[n:], -grad[:n]])
