"""Systems with known conserved quantities: the four benchmarks of ConCerNet (Zhang et al.
2023, §4 and Table 1), with their invariants, initial-state samplers and time grids."""

import abc
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int, check_positive


class AbstractConservedSystem(eqx.Module):
    """A family of autonomous systems ``dx/dt = f(x; μ)`` with known conserved quantities
    ``I(x; μ)``: the ground truth of ConCerNet's experiments.

    The sibling of `AbstractSystem`, sharing its vocabulary (`vector_field` ``(x, mu)``,
    `sample_params`, `sample_initial_state` ``(key, mu)``, `times`, `check_params`,
    `param_names`, `state_dim`); methods act on one state and one parameter vector, batch
    with ``jax.vmap``. It is not an `AbstractSystem`: two of these systems have no energy
    (chemical kinetics, the heat equation), the known invariants take its place; the save
    grid is ``num_times`` points on ``[0, t1]`` (``jnp.linspace``), not multiples of a step;
    and a stiff or fast system is solved adaptively (`rtol`).

    **Parameters.** A single system (`SpringMass`, `ChemicalKinetics`, `KeplerOrbit`,
    `HeatEquation`) has none: ``param_names = ()``, its constants are fields (e.g.
    ``ChemicalKinetics.k1``) and its methods take an **empty** ``mu``, ``jnp.zeros(0)``,
    which only carries the dtype of sampled states. A family (`SpringFamily`) reads its
    parameters from ``mu``.

    **Fields:** `t1` and `num_times` (the save grid), `num_trajectories` (training
    trajectories of ConCerNet's experiments), `num_invariants` (the number ``m`` of invariants
    the invariant network learns, in ``[1, state_dim]``), `rtol` (tolerance of an adaptive
    reference solve; ``None``: RK4 stepping exactly on the save grid).
    """

    name: eqx.AbstractClassVar[str]
    state_dim: eqx.AbstractClassVar[int]
    param_names: eqx.AbstractClassVar[tuple[str, ...]]
    t1: eqx.AbstractVar[float]
    num_times: eqx.AbstractVar[int]
    num_trajectories: eqx.AbstractVar[int]
    num_invariants: eqx.AbstractVar[int]
    rtol: eqx.AbstractVar[float | None]

    def __check_init__(self):
        check_positive("t1", self.t1)
        check_int("num_times", self.num_times, minimum=3)
        check_int("num_trajectories", self.num_trajectories, minimum=2)
        if not 1 <= self.num_invariants <= self.state_dim:
            raise ValueError(
                f"`num_invariants` must lie in [1, state_dim={self.state_dim}], "
                f"got num_invariants={self.num_invariants!r}."
            )
        if self.rtol is not None:
            check_positive("rtol", self.rtol)

    @property
    def param_dim(self) -> int:
        return len(self.param_names)

    @abc.abstractmethod
    def vector_field(
        self, x: Float[Array, " dim"], mu: Float[Array, " params"]
    ) -> Float[Array, " dim"]:
        """The true vector field ``dx/dt = f(x; μ)``."""

    @abc.abstractmethod
    def invariant(self, x: Float[Array, " dim"], mu: Float[Array, " params"]) -> Float[Array, " k"]:
        """The known conserved quantities ``I(x; μ)``, shape ``(k,)``."""

    @abc.abstractmethod
    def sample_initial_state(
        self, key: PRNGKeyArray, mu: Float[Array, " params"]
    ) -> Float[Array, " dim"]:
        """One initial state, in the dtype of ``mu``."""

    def sample_params(self, key: PRNGKeyArray, n: int, dtype=None) -> Float[Array, "n params"]:
        """``n`` parameter vectors, shape ``(n, param_dim)``: ``n`` empty rows for a single
        system (a family overrides this)."""
        check_int("n", n)
        return jnp.zeros((n, self.param_dim), dtype)

    def times(self, dtype=None) -> Float[Array, " time"]:
        """``num_times`` equally spaced save times on ``[0, t1]``."""
        return jnp.linspace(0.0, self.t1, self.num_times, dtype=dtype)

    def check_params(self, mu) -> None:
        """Raise `ValueError` unless ``mu`` has shape ``(params,)`` or ``(systems, params)``
        with finite positive entries (traced values: the shape only)."""
        shape = jnp.shape(mu)
        if len(shape) not in (1, 2) or shape[-1] != self.param_dim or 0 in shape[:-1]:
            names = ", ".join(self.param_names) or "empty: no parameters"
            raise ValueError(
                f"`mu` for {self.name} must have shape ({self.param_dim},) or (systems, "
                f"{self.param_dim}) ({names}), got shape {shape}."
            )
        try:
            arr = np.asarray(mu)
        except jax.errors.TracerArrayConversionError:
            return
        if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
            raise ValueError(
                f"`mu` for {self.name} ({', '.join(self.param_names)}) must be positive and "
                f"finite, got mu={arr!r}."
            )


def ring_state(key: PRNGKeyArray, dtype, r_min: float = 0.3, r_max: float = 1.2):
    """A 2-d state on a circle of radius ``U[r_min, r_max]`` at a uniform angle."""
    k_r, k_a = jax.random.split(key)
    r = jax.random.uniform(k_r, (), dtype, minval=r_min, maxval=r_max)
    a = jax.random.uniform(k_a, (), dtype, minval=0.0, maxval=2 * math.pi)
    return jnp.stack([r * jnp.cos(a), r * jnp.sin(a)])


class SpringMass(AbstractConservedSystem):
    """Ideal spring-mass ``H = q² + p²``, ``(q̇, ṗ) = (2p, −2q)``; ICs on a circle of radius
    ``U[0.3, 1.2]`` at a uniform angle; ``t ∈ [0, 3]``, 30 points, 50 trajectories. No
    parameters (an empty ``mu``); `SpringFamily` at ``μ = (1/2, 2)`` is this system."""

    t1: float = 3.0
    num_times: int = 30
    num_trajectories: int = 50
    num_invariants: int = 1
    rtol: float | None = None
    name: ClassVar[str] = "spring"
    state_dim: ClassVar[int] = 2
    param_names: ClassVar[tuple[str, ...]] = ()

    def vector_field(self, x, mu):
        return jnp.stack([2 * x[1], -2 * x[0]])

    def invariant(self, x, mu):
        return jnp.stack([x[0] ** 2 + x[1] ** 2])

    def sample_initial_state(self, key, mu):
        return ring_state(key, mu.dtype)


class ChemicalKinetics(AbstractConservedSystem):
    """Reversible reaction ``ẋ = [[−k1, k2], [k1, −k2]] x``, ``k1 = 0.6311, k2 = 0.2744``
    (fields; no parameters, an empty ``mu``); mass ``x1 + x2`` is conserved. ICs ``U[0, 1]²``
    and ``t ∈ [0, 3]``, 30 points [our choice: not stated in the paper; the authors' code
    draws training ICs of radius ``U[0.1, 100.1]`` and test ICs of radius ``U[0, 200]``
    (extrapolation), with ReLU MLPs]."""

    k1: float = 0.6311
    k2: float = 0.2744
    t1: float = 3.0
    num_times: int = 30
    num_trajectories: int = 50
    num_invariants: int = 1
    rtol: float | None = None
    name: ClassVar[str] = "chemical"
    state_dim: ClassVar[int] = 2
    param_names: ClassVar[tuple[str, ...]] = ()

    def vector_field(self, x, mu):
        rate = self.k1 * x[0] - self.k2 * x[1]
        return jnp.stack([-rate, rate])

    def invariant(self, x, mu):
        return jnp.stack([x[0] + x[1]])

    def sample_initial_state(self, key, mu):
        return jax.random.uniform(key, (2,), mu.dtype)


class KeplerOrbit(AbstractConservedSystem):
    """Kepler problem in relative coordinates ``x = (q1, q2, v1, v2)``, ``m = k = 1`` (no
    parameters, an empty ``mu``): ``q̇ = v``, ``v̇ = −q/|q|³``. Invariants: energy
    ``|v|²/2 − 1/|q|`` and angular momentum ``q1 v2 − q2 v1``. ICs: radius ``U[0.1, 1.0]``
    at a uniform angle, velocity perpendicular with speed ``√((1 + U[0, 0.3]) / r)``;
    ``t ∈ [0, 10]``, 100 points; ``m = 2`` learned invariants. Tight orbits are much faster
    than the save step, so the data come from an adaptive solve (``rtol``)."""

    t1: float = 10.0
    num_times: int = 100
    num_trajectories: int = 50
    num_invariants: int = 2
    rtol: float | None = 1e-6
    name: ClassVar[str] = "kepler"
    state_dim: ClassVar[int] = 4
    param_names: ClassVar[tuple[str, ...]] = ()

    def vector_field(self, x, mu):
        q, v = x[:2], x[2:]
        return jnp.concatenate([v, -q / jnp.sum(q**2) ** 1.5])

    def invariant(self, x, mu):
        q, v = x[:2], x[2:]
        energy = jnp.sum(v**2) / 2 - 1 / jnp.sqrt(jnp.sum(q**2))
        return jnp.stack([energy, q[0] * v[1] - q[1] * v[0]])

    def sample_initial_state(self, key, mu):
        dtype = mu.dtype
        k_r, k_a, k_e = jax.random.split(key, 3)
        r = jax.random.uniform(k_r, (), dtype, minval=0.1, maxval=1.0)
        a = jax.random.uniform(k_a, (), dtype, minval=0.0, maxval=2 * math.pi)
        e = jax.random.uniform(k_e, (), dtype, minval=0.0, maxval=0.3)
        speed = jnp.sqrt((1 + e) / r)
        c, s = jnp.cos(a), jnp.sin(a)
        return jnp.stack([r * c, r * s, -speed * s, speed * c])


class HeatEquation(AbstractConservedSystem):
    """1-D heat equation ``U_t = U_yy`` on 101 nodes over ``[−5, 5]`` with insulated ends,
    discretised as fluxes between neighbouring cells (zero flux through the ends), so the
    total ``Σ u_i`` is conserved exactly. No parameters (an empty ``mu``). ConCerNet learns
    it in a 9-dim autoencoder latent (§4.3, `jaxmeta.conservation.Autoencoder`).

    Initial states (`initial`):

    - ``"pulse"`` (default): the data of the authors' code (their ``heat_equation.py``): one
      Gaussian pulse ``exp(−(y − c)²/s)`` with ``c ~ U[−1, 1]``, ``s ~ U[0.125, 0.5]``, saved
      at 100 points of ``t ∈ [0, 10]`` (long enough for the heat to reach the insulated ends,
      so of the pulse's moments only ``Σ u`` stays constant), 100 training trajectories (their
      200 samples split in half).
    - ``"bumps"`` [our earlier choice]: sums of three Gaussian bumps, centres ``U[−3, 3]``,
      widths ``U[0.3, 1]``, heights ``U[0.2, 1]``; used with ``t1=1, num_times=50,
      num_trajectories=50``. Over that short window the heat barely reaches the
      ends, so the first moment ``Σ y u`` is nearly conserved as well, and a contrastive
      invariant may learn it instead of ``Σ u``.
    """

    num_nodes: int = 101
    initial: str = "pulse"
    t1: float = 10.0
    num_times: int = 100
    num_trajectories: int = 100
    num_invariants: int = 1
    rtol: float | None = 1e-5
    name: ClassVar[str] = "heat"
    state_dim: ClassVar[int] = 101
    param_names: ClassVar[tuple[str, ...]] = ()

    def __check_init__(self):
        if self.initial not in ("pulse", "bumps"):
            raise ValueError(f"`initial` must be 'pulse' or 'bumps', got initial={self.initial!r}.")

    def vector_field(self, x, mu):
        dy = 10.0 / (self.num_nodes - 1)
        flux = (x[1:] - x[:-1]) / dy**2
        zero = jnp.zeros((1,), x.dtype)
        return jnp.concatenate([flux, zero]) - jnp.concatenate([zero, flux])

    def invariant(self, x, mu):
        return jnp.sum(x, keepdims=True)

    def sample_initial_state(self, key, mu):
        dtype = mu.dtype
        y = jnp.linspace(-5.0, 5.0, self.num_nodes, dtype=dtype)
        if self.initial == "pulse":
            k_c, k_s = jax.random.split(key)
            centre = jax.random.uniform(k_c, (), dtype, minval=-1.0, maxval=1.0)
            scale = jax.random.uniform(k_s, (), dtype, minval=0.125, maxval=0.5)
            return jnp.exp(-((y - centre) ** 2) / scale)
        k_c, k_w, k_a = jax.random.split(key, 3)
        centre = jax.random.uniform(k_c, (3, 1), dtype, minval=-3.0, maxval=3.0)
        width = jax.random.uniform(k_w, (3, 1), dtype, minval=0.3, maxval=1.0)
        amp = jax.random.uniform(k_a, (3, 1), dtype, minval=0.2, maxval=1.0)
        return jnp.sum(amp * jnp.exp(-(((y[None, :] - centre) / width) ** 2)), axis=0)
