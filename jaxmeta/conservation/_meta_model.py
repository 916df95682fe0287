"""The modulated ConCerNet of Meta-ConCerNet: invariant and dynamics networks corrected per
system by latents, and the two per-system losses its training and adaptation minimise."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int
from ..modulation import AbstractModulation, Modulated, modulate
from ._contrastive import InvariantNet, contrastive_loss
from ._fit import derivative_mse
from ._projection import Projected


class MetaConCerNet(eqx.Module):
    """ConCerNet with both networks modulated by per-system latents.

    ``invariant(z_inv)`` is an `InvariantNet` and ``dynamics(z_dyn)`` an MLP field, each
    ``modulation.apply(base, hypernet(z))`` (see `jaxmeta.modulation.Modulated`); the system
    model is ``Projected(dynamics(z_dyn), invariant(z_inv))`` (calling the model with the two
    latents, as a `jaxmeta.modulation.Modulated` with one), so its flow conserves
    the learned invariant of that system exactly (eq. 6). The two latents are separate: stage 1
    learns ``z_inv`` with the invariant, stage 2 ``z_dyn`` with the dynamics.

    **Arguments:**

    - `dim`: state dimension.
    - `num_invariants`: number ``m`` of learned invariants (``1 <= m <= dim``).
    - `modulation`: an `AbstractModulation` (e.g. ``RankOne()``, ``LowRank(2)``), used for
      both networks.
    - `latent_dim`: size of each modulation latent (default 4), as in `jaxmeta.modulation`.
    - `width`, `depth`: hidden width and hidden layers of both networks (as the per-system
      ConCerNet: 100 and 2, tanh).
    - `weight_scale`: scale of the hypernetworks' initial weights (see `Hypernet`).
    - `dtype`: parameter dtype; ``None`` follows JAX's default float.
    - `key`: PRNG key.
    """

    invariant: Modulated
    dynamics: Modulated

    def __init__(
        self,
        dim: int,
        num_invariants: int,
        *,
        modulation: AbstractModulation,
        latent_dim: int = 4,
        width: int = 100,
        depth: int = 2,
        weight_scale: float = 1e-1,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if not isinstance(modulation, AbstractModulation):
            raise TypeError(
                "`modulation` must be an AbstractModulation (e.g. jaxmeta.modulation.RankOne()),"
                f" got modulation={modulation!r}."
            )
        check_int("latent_dim", latent_dim)
        k_inv, k_dyn, k_minv, k_mdyn = jax.random.split(key, 4)
        inv = InvariantNet(dim, num_invariants, width=width, depth=depth, dtype=dtype, key=k_inv)
        dyn = eqx.nn.MLP(dim, dim, width, depth, activation=jnp.tanh, dtype=dtype, key=k_dyn)
        common = dict(latent_dim=latent_dim, weight_scale=weight_scale)
        self.invariant = modulate(inv, modulation, key=k_minv, **common)
        self.dynamics = modulate(dyn, modulation, key=k_mdyn, **common)

    @property
    def latent_dim(self) -> int:
        """The size of each modulation latent."""
        return self.invariant.latent_dim

    def __call__(self, z_inv: Float[Array, " latent"], z_dyn: Float[Array, " latent"]) -> Projected:
        """The model of one system, its projected field
        ``Projected(dynamics(z_dyn), invariant(z_inv))``."""
        return Projected(self.dynamics(z_dyn), self.invariant(z_inv))


def invariant_loss(
    model: MetaConCerNet,
    z_inv: Float[Array, " latent"],
    xs: Float[Array, "traj time dim"],
    normalise: bool,
    loss: str,
) -> Float[Array, ""]:
    """One system's stage-1 loss: the contrastive loss (eq. 4) of ``invariant(z_inv)`` on its
    trajectories plus the modulation's penalty. Training and adaptation both minimise it."""
    inv = model.invariant
    return contrastive_loss(inv(z_inv), xs, normalise=normalise, loss=loss) + inv.penalty(z_inv)


def dynamics_loss(
    model: MetaConCerNet,
    z_inv: Float[Array, " latent"],
    z_dyn: Float[Array, " latent"],
    xs: Float[Array, "traj time dim"],
    dxs: Float[Array, "traj time dim"],
) -> Float[Array, ""]:
    """One system's stage-2 loss: the MSE on ``ẋ`` (eq. 7) of its projected field plus the
    modulation's penalty. Training and adaptation both minimise it."""
    return derivative_mse(model(z_inv, z_dyn), (xs, dxs)) + model.dynamics.penalty(z_dyn)


def check_latents(name: str, latents, num_systems: int | None, latent_dim: int) -> None:
    """Raise unless ``latents`` has shape ``(num_systems, latent_dim)`` (any number of systems
    when ``num_systems`` is None)."""
    shape = jnp.shape(latents)
    systems = shape[0] if num_systems is None and len(shape) == 2 else num_systems
    if shape != (systems, latent_dim):
        want = "systems" if num_systems is None else f"systems={num_systems}"
        raise ValueError(
            f"`{name}` must have shape ({want}, latent_dim={latent_dim}), got shape {shape}."
        )


def check_family_data(name: str, xs) -> None:
    """Raise unless ``xs`` has shape ``(systems, traj, time, dim)``."""
    if jnp.ndim(xs) != 4:
        raise ValueError(
            f"`{name}` must have shape (systems, traj, time, dim), got shape {jnp.shape(xs)}."
        )
