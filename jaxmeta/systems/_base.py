"""Abstract parametric dynamical systems: the ground truth of every experiment."""

import abc
import dataclasses
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int, check_positive
from ._structure import generic_degeneracy, generic_field, symplectic_gradient

Range = tuple[float, float]


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_ranges(name: str, ranges, count: int, what: str) -> None:
    """``ranges``: a tuple of ``count`` pairs ``(low, high)`` of finite numbers, low < high."""
    pairs = isinstance(ranges, tuple) and all(
        isinstance(r, tuple) and len(r) == 2 and all(_is_number(v) for v in r) for r in ranges
    )
    if not pairs:
        raise TypeError(
            f"`{what}` of {name} must be a tuple of (low, high) pairs of numbers, "
            f"got {what}={ranges!r}."
        )
    if len(ranges) != count:
        raise ValueError(f"`{what}` of {name} needs {count} (low, high) pairs, got {ranges!r}.")
    for lo, hi in ranges:
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"`{what}` of {name} needs finite low < high, got {ranges!r}.")


class AbstractSystem(eqx.Module):
    """A family of dynamical systems ``dx/dt = f(x; μ)`` indexed by parameters ``μ``.

    Concrete systems carry everything an experiment needs: the vector field, its analytic
    form (for tests), samplers for ``μ`` and initial states, the integration step and
    horizon, and the mesh of the field-error metric. All methods act on one state and one
    parameter vector; batch with ``jax.vmap``.

    Construction checks every field and names the one at fault: `dt`, `t1` and any other
    ``float`` field are real numbers (not strings or bools), the ranges are tuples of
    ``(low, high)`` pairs of numbers, `mesh_points` is an int >= 2, and the time grid
    ``0, dt, ..., t1`` has at least 3 points (``t1 >= 2 dt``, as the finite-difference
    velocities need), ends at ``t1`` (``t1`` a multiple of ``dt``) and has at most
    `max_num_steps` = 100,000 steps (a finer grid is refused before any data is simulated).
    """

    name: eqx.AbstractClassVar[str]
    state_names: eqx.AbstractClassVar[tuple[str, ...]]
    param_names: eqx.AbstractClassVar[tuple[str, ...]]
    param_ranges: eqx.AbstractVar[tuple[Range, ...]]
    ic_bounds: eqx.AbstractVar[tuple[Range, ...]]
    dt: eqx.AbstractVar[float]
    t1: eqx.AbstractVar[float]
    mesh_bounds: eqx.AbstractVar[tuple[Range, ...] | None]
    mesh_points: eqx.AbstractVar[int]
    default_num_trajectories: ClassVar[int] = 10
    max_num_steps: ClassVar[int] = 100_000

    def __check_init__(self):
        # Types first, so that a string or a bool never reaches the arithmetic below.
        check_positive("dt", self.dt)
        check_positive("t1", self.t1)
        check_int("mesh_points", self.mesh_points, minimum=2)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type is float and not _is_number(value):
                raise TypeError(
                    f"`{field.name}` of {self.name} must be a number, got {field.name}={value!r}."
                )
            if field.type is float and not math.isfinite(value):
                raise ValueError(
                    f"`{field.name}` of {self.name} must be finite, got {field.name}={value!r}."
                )
        _check_ranges(self.name, self.param_ranges, len(self.param_names), "param_ranges")
        for (lo, _), pname in zip(self.param_ranges, self.param_names):
            if lo <= 0:
                raise ValueError(
                    f"`param_ranges` of {self.name}: parameter {pname!r} must be positive, "
                    f"got range {self.param_ranges!r}."
                )
        default_sampler = type(self).sample_initial_state is AbstractSystem.sample_initial_state
        ic_count = self.state_dim if default_sampler else len(self.ic_bounds)
        _check_ranges(self.name, self.ic_bounds, ic_count, "ic_bounds")
        if self.mesh_bounds is not None:
            _check_ranges(self.name, self.mesh_bounds, self.state_dim, "mesh_bounds")
        steps = self.t1 / self.dt
        if steps > self.max_num_steps + 0.5:  # round(steps) > max, without overflow
            raise ValueError(
                f"`dt`={self.dt!r} over the horizon `t1`={self.t1!r} of {self.name} is "
                f"{steps:.3g} steps, more than the {self.max_num_steps:,} allowed: raise `dt` "
                "or shorten `t1`."
            )
        if round(steps) < 2:
            raise ValueError(
                f"`t1`={self.t1!r} and `dt`={self.dt!r} of {self.name} give "
                f"{round(steps) + 1} saved time(s); at least 3 are needed (t1 >= 2 dt)."
            )
        if not math.isclose(round(steps) * self.dt, self.t1, rel_tol=1e-9):
            raise ValueError(
                f"`t1`={self.t1!r} of {self.name} is not a multiple of `dt`={self.dt!r} "
                f"(t1/dt = {steps:.6g}): the saved times 0, dt, 2 dt, ... would not end at t1."
            )

    # ----------------------------------------------------------------- properties
    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def param_dim(self) -> int:
        return len(self.param_names)

    @property
    def num_steps(self) -> int:
        """Number of integration steps ``round(t1 / dt)``."""
        return int(round(self.t1 / self.dt))

    def times(self, dtype=None) -> Float[Array, " time"]:
        """Save times ``0, dt, ..., t1`` (``num_steps + 1`` points; JAX's default float)."""
        dtype = jnp.zeros(0, dtype).dtype  # None: the default float, not arange's int
        return jnp.arange(self.num_steps + 1, dtype=dtype) * jnp.asarray(self.dt, dtype)

    # ------------------------------------------------------------------- physics
    @abc.abstractmethod
    def energy(self, x: Float[Array, " dim"], mu: Float[Array, " params"]) -> Float[Array, ""]:
        """Total energy (the Hamiltonian, or the GENERIC energy ``E``)."""

    @abc.abstractmethod
    def vector_field(
        self, x: Float[Array, " dim"], mu: Float[Array, " params"]
    ) -> Float[Array, " dim"]:
        """``dx/dt`` derived by autodiff from the structure (``J∇H`` or ``L∇E + M∇S``)."""

    @abc.abstractmethod
    def analytic_field(
        self, x: Float[Array, " dim"], mu: Float[Array, " params"]
    ) -> Float[Array, " dim"]:
        """The equations of motion written out by hand; equals `vector_field`."""

    # ------------------------------------------------------------------ sampling
    def sample_params(self, key: PRNGKeyArray, n: int, dtype=None) -> Float[Array, "n params"]:
        """``n`` parameter vectors drawn uniformly from `param_ranges`."""
        lo, hi = (jnp.asarray(v, dtype) for v in zip(*self.param_ranges))
        return jax.random.uniform(key, (n, self.param_dim), dtype=lo.dtype, minval=lo, maxval=hi)

    def sample_initial_state(
        self, key: PRNGKeyArray, mu: Float[Array, " params"]
    ) -> Float[Array, " dim"]:
        """One initial state, drawn uniformly from `ic_bounds` unless a system overrides it."""
        lo, hi = (jnp.asarray(v, mu.dtype) for v in zip(*self.ic_bounds))
        return jax.random.uniform(key, (self.state_dim,), dtype=lo.dtype, minval=lo, maxval=hi)

    def mesh(self, dtype=None) -> Float[Array, "points dim"]:
        """Uniform mesh of the field-error metric: ``mesh_points`` per axis over `mesh_bounds`."""
        if self.mesh_bounds is None:
            raise ValueError(f"{self.name} has no field-error mesh (mesh_bounds=None).")
        axes = [jnp.linspace(lo, hi, self.mesh_points, dtype=dtype) for lo, hi in self.mesh_bounds]
        grids = jnp.meshgrid(*axes, indexing="ij")
        return jnp.stack([g.reshape(-1) for g in grids], axis=-1)

    # -------------------------------------------------------------- validation
    def check_params(self, mu) -> None:
        """Raise `ValueError` unless ``mu`` has shape ``(..., params)`` and is physical."""
        arr = np.asarray(mu)
        if arr.ndim == 0 or arr.shape[-1] != self.param_dim:
            raise ValueError(
                f"`mu` for {self.name} must have trailing dimension {self.param_dim} "
                f"({', '.join(self.param_names)}), got shape {arr.shape}."
            )
        bad = ~np.isfinite(arr) | (arr <= 0)
        if bad.any():
            idx = np.argwhere(bad)[0]
            raise ValueError(
                f"`mu` for {self.name}: parameter {self.param_names[idx[-1]]!r} must be finite "
                f"and positive, got {float(arr[tuple(idx)])!r} in mu with shape {arr.shape}."
            )

    def check_state(self, x) -> None:
        """Raise `ValueError` unless ``x`` has shape ``(..., dim)`` with finite entries."""
        arr = np.asarray(x)
        if arr.ndim == 0 or arr.shape[-1] != self.state_dim:
            raise ValueError(
                f"`x` for {self.name} must have trailing dimension {self.state_dim} "
                f"({', '.join(self.state_names)}), got shape {arr.shape}."
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"`x` for {self.name} has non-finite entries.")


class AbstractHamiltonianSystem(AbstractSystem):
    """A canonical Hamiltonian system: ``dx/dt = J ∇H(x; μ)`` with ``x = (q, p)``."""

    @abc.abstractmethod
    def hamiltonian(self, x: Float[Array, " dim"], mu: Float[Array, " params"]) -> Float[Array, ""]:
        """The Hamiltonian ``H(x; μ)``."""

    def energy(self, x, mu):
        return self.hamiltonian(x, mu)

    def vector_field(self, x, mu):
        return symplectic_gradient(lambda y: self.hamiltonian(y, mu), x)


class AbstractGenericSystem(AbstractSystem):
    """A GENERIC system: ``dx/dt = L∇E + M∇S`` with ``L∇S = 0`` and ``M∇E = 0``."""

    @abc.abstractmethod
    def entropy(self, x: Float[Array, " dim"], mu: Float[Array, " params"]) -> Float[Array, ""]:
        """The entropy ``S(x)``."""

    @abc.abstractmethod
    def poisson(
        self, x: Float[Array, " dim"], mu: Float[Array, " params"]
    ) -> Float[Array, "dim dim"]:
        """The skew-symmetric Poisson matrix ``L(x)``."""

    @abc.abstractmethod
    def friction(
        self, x: Float[Array, " dim"], mu: Float[Array, " params"]
    ) -> Float[Array, "dim dim"]:
        """The symmetric positive semi-definite friction matrix ``M(x)``."""

    def _parts(self, mu):
        return (
            lambda y: self.energy(y, mu),
            lambda y: self.entropy(y, mu),
            lambda y: self.poisson(y, mu),
            lambda y: self.friction(y, mu),
        )

    def vector_field(self, x, mu):
        return generic_field(*self._parts(mu), x)

    def degeneracy(self, x, mu):
        """``(|L∇S|, |M∇E|)`` at ``x``; both are zero for a consistent system."""
        return generic_degeneracy(*self._parts(mu), x)

    def entropy_rate(self, x, mu):
        """``dS/dt = ∇S · f(x)``, which GENERIC makes non-negative."""
        return jnp.dot(jax.grad(self.entropy)(x, mu), self.vector_field(x, mu))
