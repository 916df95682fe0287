"""The parametric family of Meta-ConCerNet: spring-mass systems of varying mass and stiffness,
indexed by a parameter vector ``μ = (m, k)`` as every system of `jaxmeta.systems`."""

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int
from ._systems import Trajectories, float_dtype, ring_state, solve_trajectories

Range = tuple[float, float]


class SpringFamily(eqx.Module):
    """Spring-mass systems ``H = k q²/2 + p²/(2m)``, ``(q̇, ṗ) = (p/m, −k q)``, indexed by
    ``μ = (m, k)`` (the order of `jaxmeta.systems.MassSpring`): stiffness ``k ~ U[stiffness]``
    and mass ``m ~ U[mass]``, independently. ``μ = (1/2, 2)`` gives `SpringMass` exactly
    (``H = q² + p²``, ``(2p, −2q)``), with the same initial states (a circle of radius
    ``U[0.3, 1.2]`` at a uniform angle).

    As in `jaxmeta.systems`, the family samples the parameters (`sample_params`) and its
    methods take one state ``x`` and one parameter vector ``mu``; batch with ``jax.vmap``.

    **Why this family.** Among the ConCerNet systems, the spring-mass is the cheapest to
    simulate (RK4 on the save grid, no adaptive solve) and its rollouts are stable for every
    parameter, while a varying ``k`` and ``m`` changes the invariant itself (ellipses of aspect
    ratio ``√(k m)`` ∈ [0.5, 1.5] with the defaults) and the speed (``ω = √(k/m)`` ∈ [1.15, 3.46]),
    so a shared unmodulated network cannot fit the family. Kepler with varying ``G M`` (the
    issue's example) needs adaptive solves of fast tight orbits, too slow for a few-minute CPU
    budget. The defaults are centred on `SpringMass` (``k = 2``, ``m = 1/2``).

    **Fields:** `stiffness`, `mass`: ``(low, high)`` ranges with ``0 < low <= high``; `t1`,
    `num_times`: the time grid ``[0, t1]`` of the trajectories.
    """

    stiffness: Range = (1.0, 3.0)
    mass: Range = (0.25, 0.75)
    t1: float = 3.0
    num_times: int = 30
    name: ClassVar[str] = "spring_family"
    state_dim: ClassVar[int] = 2
    num_invariants: ClassVar[int] = 1
    param_names: ClassVar[tuple[str, ...]] = ("m", "k")

    def __check_init__(self):
        for name in ("stiffness", "mass"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise ValueError(
                    f"`{name}` must be a range (low, high) with 0 < low <= high, got "
                    f"{name}={getattr(self, name)!r}."
                )
        if not (self.t1 > 0 and math.isfinite(self.t1)):
            raise ValueError(f"`t1` must be positive and finite, got t1={self.t1!r}.")
        check_int("num_times", self.num_times, minimum=3)

    @property
    def param_ranges(self) -> tuple[Range, Range]:
        """The ranges of ``μ = (m, k)``, in that order."""
        return (self.mass, self.stiffness)

    def sample_params(self, key: PRNGKeyArray, n: int, dtype=None) -> Float[Array, "n 2"]:
        """``n`` parameter vectors ``μ = (m, k)``, shape ``(n, 2)``: ``k`` from the first half
        of ``jax.random.split(key)``, ``m`` from the second."""
        check_int("n", n)
        dtype = float_dtype(dtype)
        k_k, k_m = jax.random.split(key)
        k = jax.random.uniform(k_k, (n,), dtype, *self.stiffness)
        m = jax.random.uniform(k_m, (n,), dtype, *self.mass)
        return jnp.stack([m, k], axis=-1)

    def field(self, x: Float[Array, " 2"], mu: Float[Array, " 2"]) -> Float[Array, " 2"]:
        """``(q̇, ṗ) = (p/m, −k q)``."""
        m, k = mu[0], mu[1]
        return jnp.stack([x[1] / m, -k * x[0]])

    def invariant(self, x: Float[Array, " 2"], mu: Float[Array, " 2"]) -> Float[Array, " 1"]:
        """The conserved energy ``k q²/2 + p²/(2m)``, shape ``(1,)``."""
        m, k = mu[0], mu[1]
        return jnp.stack([0.5 * k * x[0] ** 2 + 0.5 * x[1] ** 2 / m])

    def sample_initial_state(self, key: PRNGKeyArray, dtype=None) -> Float[Array, " 2"]:
        """One initial state (the same for every ``μ``): a circle of radius ``U[0.3, 1.2]``."""
        return ring_state(key, float_dtype(dtype))

    def times(self, dtype=None) -> Float[Array, " time"]:
        """``num_times`` equally spaced save times on ``[0, t1]``."""
        return jnp.linspace(0.0, self.t1, self.num_times, dtype=dtype)

    def check_params(self, mu) -> None:
        """Raise `ValueError` unless ``mu`` has shape ``(systems, 2)`` with finite positive
        entries (traced values are not checked)."""
        if jnp.ndim(mu) != 2 or jnp.shape(mu)[-1] != 2 or jnp.shape(mu)[0] < 1:
            raise ValueError(
                f"`mu` must have shape (systems, 2): rows (m, k), got shape {jnp.shape(mu)}."
            )
        try:
            arr = np.asarray(mu)
        except jax.errors.TracerArrayConversionError:
            return
        if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
            raise ValueError(f"`mu` (rows (m, k)) must be positive and finite, got mu={arr!r}.")


def family_trajectories(
    family: SpringFamily,
    mu: Float[Array, "systems 2"],
    num: int,
    *,
    dtype=None,
    key: PRNGKeyArray,
) -> Trajectories:
    """``num`` trajectories of each system ``mu[i]`` of ``family`` (vmapped over systems, one
    key of ``jax.random.split(key, systems)`` each), RK4 on the save grid as
    `make_trajectories`: ``xs``, ``dxs`` of shape ``(systems, num, time, 2)``, ``ts`` of
    shape ``(systems, time)``."""
    if not isinstance(family, SpringFamily):
        raise TypeError(f"`family` must be a SpringFamily, got {type(family).__name__}.")
    family.check_params(mu)
    if isinstance(num, bool) or not (isinstance(num, int) and num >= 1):
        raise ValueError(f"`num` must be a positive int, got num={num!r}.")
    keys = jax.random.split(key, jnp.shape(mu)[0])
    return _family_trajectories(family, mu, keys, num, dtype)


@eqx.filter_jit
def _family_trajectories(family, mu, keys, num, dtype):
    def one(mu, key):
        sample = lambda k: family.sample_initial_state(k, dtype)
        x0 = jax.vmap(sample)(jax.random.split(key, num))
        return solve_trajectories(lambda x: family.field(x, mu), x0, family.times(x0.dtype))

    return jax.vmap(one)(mu, keys)
