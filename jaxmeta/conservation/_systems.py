"""The four benchmark systems of ConCerNet (their Table 1), each with its known invariants,
and trajectory data with exact derivatives."""

import abc
import math
from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..data import simulate


def float_dtype(dtype):
    """``dtype``, or JAX's default float when ``None`` (shared by the subpackage's samplers)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)


class AbstractConservedSystem(eqx.Module):
    """An autonomous system ``dx/dt = f(x)`` with known conserved quantities.

    Carries what a ConCerNet experiment needs: the field, the true invariants (for the
    conservation-violation metric), an initial-state sampler, the time grid, the number of
    training trajectories and the number ``m`` of invariants the invariant network learns
    (`num_invariants`).
    Methods act on one state; batch with ``jax.vmap``.
    """

    name: eqx.AbstractClassVar[str]
    state_dim: eqx.AbstractClassVar[int]
    t1: eqx.AbstractVar[float]
    num_times: eqx.AbstractVar[int]
    num_trajectories: eqx.AbstractVar[int]
    num_invariants: eqx.AbstractVar[int]
    # Tolerance of an adaptive reference solve; None: RK4 stepping exactly on the time grid.
    rtol: eqx.AbstractVar[float | None]

    def __check_init__(self):
        if not (self.t1 > 0 and math.isfinite(self.t1)):
            raise ValueError(f"`t1` must be positive and finite, got t1={self.t1!r}.")
        if self.num_times < 3:
            raise ValueError(f"`num_times` must be >= 3, got {self.num_times!r}.")
        if self.num_trajectories < 2:
            raise ValueError(f"`num_trajectories` must be >= 2, got {self.num_trajectories!r}.")
        if not 1 <= self.num_invariants <= self.state_dim:
            raise ValueError(
                f"`num_invariants` must lie in [1, state_dim={self.state_dim}], "
                f"got num_invariants={self.num_invariants!r}."
            )

    @abc.abstractmethod
    def field(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """The true vector field ``dx/dt``."""

    @abc.abstractmethod
    def invariant(self, x: Float[Array, " dim"]) -> Float[Array, " k"]:
        """The known conserved quantities, shape ``(k,)``."""

    @abc.abstractmethod
    def sample_initial_state(self, key: PRNGKeyArray, dtype=None) -> Float[Array, " dim"]:
        """One initial state from the system's distribution ``D``."""

    def times(self, dtype=None) -> Float[Array, " time"]:
        """``num_times`` equally spaced save times on ``[0, t1]``."""
        return jnp.linspace(0.0, self.t1, self.num_times, dtype=dtype)


def ring_state(key: PRNGKeyArray, dtype, r_min: float = 0.3, r_max: float = 1.2):
    """A 2-d state on a circle of radius ``U[r_min, r_max]`` at a uniform angle."""
    k_r, k_a = jax.random.split(key)
    r = jax.random.uniform(k_r, (), dtype, minval=r_min, maxval=r_max)
    a = jax.random.uniform(k_a, (), dtype, minval=0.0, maxval=2 * math.pi)
    return jnp.stack([r * jnp.cos(a), r * jnp.sin(a)])


class SpringMass(AbstractConservedSystem):
    """Ideal spring-mass ``H = q² + p²``, ``(q̇, ṗ) = (2p, −2q)``; ICs on a circle of radius
    ``U[0.3, 1.2]`` at a uniform angle; ``t ∈ [0, 3]``, 30 points, 50 trajectories."""

    t1: float = 3.0
    num_times: int = 30
    num_trajectories: int = 50
    num_invariants: int = 1
    rtol: float | None = None
    name: ClassVar[str] = "spring"
    state_dim: ClassVar[int] = 2

    def field(self, x):
        return jnp.stack([2 * x[1], -2 * x[0]])

    def invariant(self, x):
        return jnp.stack([x[0] ** 2 + x[1] ** 2])

    def sample_initial_state(self, key, dtype=None):
        return ring_state(key, float_dtype(dtype))


class ChemicalKinetics(AbstractConservedSystem):
    """Reversible reaction ``ẋ = [[−k1, k2], [k1, −k2]] x``, ``k1 = 0.6311, k2 = 0.2744``;
    mass ``x1 + x2`` is conserved. ICs ``U[0, 1]²`` and ``t ∈ [0, 3]``, 30 points [our
    choice: not stated in the paper; the authors' code draws training ICs of radius
    ``U[0.1, 100.1]`` and test ICs of radius ``U[0, 200]`` (extrapolation), with ReLU MLPs]."""

    k1: float = 0.6311
    k2: float = 0.2744
    t1: float = 3.0
    num_times: int = 30
    num_trajectories: int = 50
    num_invariants: int = 1
    rtol: float | None = None
    name: ClassVar[str] = "chemical"
    state_dim: ClassVar[int] = 2

    def field(self, x):
        rate = self.k1 * x[0] - self.k2 * x[1]
        return jnp.stack([-rate, rate])

    def invariant(self, x):
        return jnp.stack([x[0] + x[1]])

    def sample_initial_state(self, key, dtype=None):
        dtype = float_dtype(dtype)
        return jax.random.uniform(key, (2,), dtype)


class KeplerOrbit(AbstractConservedSystem):
    """Kepler problem in relative coordinates ``x = (q1, q2, v1, v2)``, ``m = k = 1``:
    ``q̇ = v``, ``v̇ = −q/|q|³``. Invariants: energy ``|v|²/2 − 1/|q|`` and angular momentum
    ``q1 v2 − q2 v1``. ICs: radius ``U[0.1, 1.0]`` at a uniform angle, velocity perpendicular
    with speed ``√((1 + U[0, 0.3]) / r)``; ``t ∈ [0, 10]``, 100 points; ``m = 2`` learned
    invariants. Tight orbits are much faster than the save step, so the data come from an
    adaptive solve (``rtol``)."""

    t1: float = 10.0
    num_times: int = 100
    num_trajectories: int = 50
    num_invariants: int = 2
    rtol: float | None = 1e-6
    name: ClassVar[str] = "kepler"
    state_dim: ClassVar[int] = 4

    def field(self, x):
        q, v = x[:2], x[2:]
        return jnp.concatenate([v, -q / jnp.sum(q**2) ** 1.5])

    def invariant(self, x):
        q, v = x[:2], x[2:]
        energy = jnp.sum(v**2) / 2 - 1 / jnp.sqrt(jnp.sum(q**2))
        return jnp.stack([energy, q[0] * v[1] - q[1] * v[0]])

    def sample_initial_state(self, key, dtype=None):
        dtype = float_dtype(dtype)
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
    total ``Σ u_i`` is conserved exactly. ConCerNet learns it in a 9-dim autoencoder latent
    (`Autoencoder`, `to_latent`).

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

    def __check_init__(self):
        if self.initial not in ("pulse", "bumps"):
            raise ValueError(f"`initial` must be 'pulse' or 'bumps', got initial={self.initial!r}.")

    def field(self, x):
        dy = 10.0 / (self.num_nodes - 1)
        flux = (x[1:] - x[:-1]) / dy**2
        zero = jnp.zeros((1,), x.dtype)
        return jnp.concatenate([flux, zero]) - jnp.concatenate([zero, flux])

    def invariant(self, x):
        return jnp.sum(x, keepdims=True)

    def sample_initial_state(self, key, dtype=None):
        dtype = float_dtype(dtype)
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


class Trajectories(eqx.Module):
    """Trajectories of a system: states ``xs``, exact derivatives ``dxs`` and times ``ts``."""

    xs: Float[Array, "traj time dim"]
    dxs: Float[Array, "traj time dim"]
    ts: Float[Array, " time"]


def make_trajectories(
    system: AbstractConservedSystem, num: int, *, dtype=None, key: PRNGKeyArray
) -> Trajectories:
    """Simulate ``num`` trajectories from sampled ICs with `jaxmeta.data.simulate` (vmapped)
    and evaluate the exact derivatives ``f(x)`` on them (ConCerNet trains on true
    derivatives; add observation noise outside)."""
    if not (isinstance(num, int) and num >= 1):
        raise ValueError(f"`num` must be a positive int, got num={num!r}.")
    x0 = jax.vmap(lambda k: system.sample_initial_state(k, dtype))(jax.random.split(key, num))
    return solve_trajectories(system.field, x0, system.times(x0.dtype), rtol=system.rtol)


def solve_trajectories(
    field: Callable[[Float[Array, " dim"]], Float[Array, " dim"]],
    x0s: Float[Array, "traj dim"],
    ts: Float[Array, " time"],
    *,
    rtol: float | None = None,
) -> Trajectories:
    """Trajectories of ``field`` from each of ``x0s`` saved on ``ts``, with their exact
    derivatives: RK4 stepping on the grid (``rtol=None``) or an adaptive Tsit5 solve
    (``atol = rtol / 100``). The one solve of `make_trajectories` and `family_trajectories`."""
    tol = {}
    if rtol is not None:  # RK4 has no error estimate: adaptive solves need Tsit5
        tol = {"solver": diffrax.Tsit5(), "rtol": rtol, "atol": rtol * 1e-2}
    xs = jax.vmap(lambda x: simulate(field, x, ts, **tol))(x0s)
    dxs = jax.vmap(jax.vmap(field))(xs)
    return Trajectories(xs=xs, dxs=dxs, ts=ts)
