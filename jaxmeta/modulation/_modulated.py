"""A base model, a modulation and a hypernetwork: the meta-learned object."""

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .._checks import check_int
from ._base import AbstractModulation, linear_layers
from ._hypernet import Hypernet


class Modulated(eqx.Module):
    """A base model corrected per task by ``modulation.apply(base, hypernet(z))``.

    All shared (meta) parameters — the base weights, the hypernetwork and the `MultiRank`
    bases — are inexact-array leaves, so ``eqx.partition(m, eqx.is_inexact_array)`` selects
    them; the per-task latents ``z`` live outside, in a ``(tasks, latent_dim)`` array.
    Build with `modulate`.
    """

    base: PyTree
    modulation: AbstractModulation
    hypernet: Hypernet

    def __check_init__(self):
        if not isinstance(self.modulation, AbstractModulation):
            raise TypeError(f"`modulation` must be an AbstractModulation, got {self.modulation!r}.")
        expected = self.modulation.num_codes(self.base)
        if self.hypernet.num_codes != expected:
            raise ValueError(
                f"`hypernet` must output {expected} codes for {type(self.modulation).__name__}"
                f" on this base model, got num_codes={self.hypernet.num_codes}."
            )

    @property
    def latent_dim(self) -> int:
        return self.hypernet.latent_dim

    def __call__(self, z: Float[Array, " latent"]) -> PyTree:
        """The task model (same type as `base`, e.g. an `HNN`) of one latent ``z``."""
        return self.modulation.apply(self.base, self.hypernet(z))

    def penalty(self, z: Float[Array, " latent"]) -> Float[Array, ""]:
        """The modulation's regulariser at ``z`` (zero except for `MultiRank`)."""
        return self.modulation.penalty(self.base, self.hypernet(z))


def modulate(
    model: PyTree,
    modulation: AbstractModulation,
    *,
    latent_dim: int = 10,
    weight_scale: float = 1e-2,
    key: PRNGKeyArray,
) -> Modulated:
    """Wrap `model` with `modulation` and a fresh linear hypernetwork.

    **Arguments:**

    - `model`: any pytree with ``eqx.nn.Linear`` layers (an `HNN`, a `GNN`, an MLP).
    - `modulation`: e.g. ``Shift()``, ``RankOne()``, ``MultiRank(rank=5)``.
    - `latent_dim`: size of the task latent (paper: 10).
    - `weight_scale`: scale of the hypernetwork's initial weights (see `Hypernet`).
    - `key`: PRNG key (modulation bases, hypernetwork bias and weights).

    **Returns:** a `Modulated`; ``modulated(z)`` is the task model.
    """
    if not isinstance(modulation, AbstractModulation):
        raise TypeError(f"`modulation` must be an AbstractModulation, got {modulation!r}.")
    check_int("latent_dim", latent_dim)
    dtype = linear_layers(model)[0].weight.dtype
    k_init, k_bias, k_hyper = jax.random.split(key, 3)
    modulation = modulation.init(model, key=k_init)
    bias = modulation.code_bias(model, key=k_bias)
    hypernet = Hypernet(
        latent_dim,
        modulation.num_codes(model),
        weight_scale=weight_scale,
        bias=bias,
        dtype=dtype,
        key=k_hyper,
    )
    return Modulated(model, modulation, hypernet)
