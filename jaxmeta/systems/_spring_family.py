"""The parametric family of Meta-ConCerNet: spring-mass systems of varying mass and stiffness,
indexed by a parameter vector ``μ = (m, k)`` as `MassSpring`."""

import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from .._checks import check_int
from ._conserved import AbstractConservedSystem, ring_state

Range = tuple[float, float]


class SpringFamily(AbstractConservedSystem):
    """Spring-mass systems ``H = k q²/2 + p²/(2m)``, ``(q̇, ṗ) = (p/m, −k q)``, indexed by
    ``μ = (m, k)`` (the order of `MassSpring`): stiffness ``k ~ U[stiffness]`` and mass
    ``m ~ U[mass]``, independently. ``μ = (1/2, 2)`` gives `SpringMass` exactly
    (``H = q² + p²``, ``(2p, −2q)``), with the same initial states (a circle of radius
    ``U[0.3, 1.2]`` at a uniform angle, the same for every ``μ``).

    **Why this family.** Among the ConCerNet systems, the spring-mass is the cheapest to
    simulate (RK4 on the save grid, no adaptive solve) and its rollouts are stable for every
    parameter, while a varying ``k`` and ``m`` changes the invariant itself (ellipses of aspect
    ratio ``√(k m)`` ∈ [0.5, 1.5] with the defaults) and the speed (``ω = √(k/m)`` ∈ [1.15, 3.46]),
    so a shared unmodulated network cannot fit the family. Kepler with varying ``G M`` needs
    adaptive solves of fast tight orbits, too slow for a few-minute CPU budget. The defaults
    are centred on `SpringMass` (``k = 2``, ``m = 1/2``).

    **Fields:** `stiffness`, `mass`: ``(low, high)`` ranges with ``0 < low <= high``; `t1`,
    `num_times`: the save grid ``[0, t1]``; `num_trajectories`, `num_invariants`, `rtol` as in
    `AbstractConservedSystem` (one invariant, the energy; RK4 on the save grid).
    """

    stiffness: Range = (1.0, 3.0)
    mass: Range = (0.25, 0.75)
    t1: float = 3.0
    num_times: int = 30
    num_trajectories: int = 10
    num_invariants: int = 1
    rtol: float | None = None
    name: ClassVar[str] = "spring_family"
    state_dim: ClassVar[int] = 2
    param_names: ClassVar[tuple[str, ...]] = ("m", "k")

    def __check_init__(self):
        for name in ("stiffness", "mass"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise ValueError(
                    f"`{name}` must be a range (low, high) with 0 < low <= high, got "
                    f"{name}={getattr(self, name)!r}."
                )

    @property
    def param_ranges(self) -> tuple[Range, Range]:
        """The ranges of ``μ = (m, k)``, in that order."""
        return (self.mass, self.stiffness)

    def sample_params(self, key, n, dtype=None):
        """``n`` parameter vectors ``μ = (m, k)``, shape ``(n, 2)``: ``k`` from the first half
        of ``jax.random.split(key)``, ``m`` from the second."""
        check_int("n", n)
        dtype = jnp.zeros(0, dtype).dtype  # None: JAX's default float
        k_k, k_m = jax.random.split(key)
        k = jax.random.uniform(k_k, (n,), dtype, *self.stiffness)
        m = jax.random.uniform(k_m, (n,), dtype, *self.mass)
        return jnp.stack([m, k], axis=-1)

    def vector_field(self, x, mu):
        """``(q̇, ṗ) = (p/m, −k q)``."""
        m, k = mu[0], mu[1]
        return jnp.stack([x[1] / m, -k * x[0]])

    def invariant(self, x, mu):
        """The conserved energy ``k q²/2 + p²/(2m)``, shape ``(1,)``."""
        m, k = mu[0], mu[1]
        return jnp.stack([0.5 * k * x[0] ** 2 + 0.5 * x[1] ** 2 / m])

    def sample_initial_state(self, key, mu):
        """One initial state (the same for every ``μ``): a circle of radius ``U[0.3, 1.2]``."""
        return ring_state(key, mu.dtype)
