"""Energy-conserving benchmark systems defined by their Hamiltonians (paper App. D.1).

Parameter and initial-condition ranges are jaxmeta's choice (the paper's Table 3, App. D, does
not state them in a form we could use); the documentation's Systems page gives them with the
reasons.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp

from ._base import AbstractHamiltonianSystem, Range


class MassSpring(AbstractHamiltonianSystem):
    """Mass-spring ``H = p²/(2m) + k q²/2``, ``μ = (m, k)``.

    Initial states lie on circles of radius ``r ~ U(ic_bounds[0])`` in ``(q, p)`` with a
    uniform angle (the HNN generator of Greydanus et al. 2019).
    """

    param_ranges: tuple[Range, ...] = ((0.5, 2.0), (0.5, 2.0))
    ic_bounds: tuple[Range, ...] = ((0.2, 1.0),)
    dt: float = 0.1
    t1: float = 3.0
    mesh_bounds: tuple[Range, ...] | None = ((-2.0, 2.0), (-2.0, 2.0))
    mesh_points: int = 100

    name: ClassVar[str] = "mass-spring"
    default_num_trajectories: ClassVar[int] = 20
    state_names: ClassVar[tuple[str, ...]] = ("q", "p")
    param_names: ClassVar[tuple[str, ...]] = ("m", "k")

    def hamiltonian(self, x, mu):
        q, p = x
        m, k = mu
        return p**2 / (2 * m) + k * q**2 / 2

    def analytic_field(self, x, mu):
        q, p = x
        m, k = mu
        return jnp.stack([p / m, -k * q])

    def sample_initial_state(self, key, mu):
        ((r_lo, r_hi),) = self.ic_bounds
        k_r, k_a = jax.random.split(key)
        r = jax.random.uniform(k_r, (), dtype=mu.dtype, minval=r_lo, maxval=r_hi)
        angle = jax.random.uniform(k_a, (), minval=0.0, maxval=2 * jnp.pi, dtype=r.dtype)
        return r * jnp.stack([jnp.cos(angle), jnp.sin(angle)])


class Pendulum(AbstractHamiltonianSystem):
    """Pendulum ``H = p²/(2 m l²) + m g l (1 − cos q)``, ``μ = (m, l)``.

    ``g = 3`` as in the HNN paper's pendulum (Greydanus et al. 2019): about one oscillation
    over the 3 s horizon, and RK4 at the paper's step 0.1 keeps ``|ΔH|/H < 1e-4`` (with
    ``g = 9.81`` it drifts by 3e-3).
    """

    param_ranges: tuple[Range, ...] = ((0.5, 1.5), (0.75, 1.5))
    ic_bounds: tuple[Range, ...] = ((-1.0, 1.0), (-1.0, 1.0))
    dt: float = 0.1
    t1: float = 3.0
    mesh_bounds: tuple[Range, ...] | None = ((-2.0, 2.0), (-3.0, 3.0))
    mesh_points: int = 100
    g: float = 3.0

    name: ClassVar[str] = "pendulum"
    state_names: ClassVar[tuple[str, ...]] = ("q", "p")
    param_names: ClassVar[tuple[str, ...]] = ("m", "l")

    def hamiltonian(self, x, mu):
        q, p = x
        m, length = mu
        return p**2 / (2 * m * length**2) + m * self.g * length * (1 - jnp.cos(q))

    def analytic_field(self, x, mu):
        q, p = x
        m, length = mu
        return jnp.stack([p / (m * length**2), -m * self.g * length * jnp.sin(q)])


class Duffing(AbstractHamiltonianSystem):
    """Duffing oscillator ``H = p²/2 + α q²/2 + β q⁴/4``, ``μ = (α, β)`` (hardening, β > 0)."""

    param_ranges: tuple[Range, ...] = ((0.5, 2.0), (0.1, 1.0))
    ic_bounds: tuple[Range, ...] = ((-1.0, 1.0), (-1.0, 1.0))
    dt: float = 0.1
    t1: float = 3.0
    mesh_bounds: tuple[Range, ...] | None = ((-1.5, 1.5), (-2.0, 2.0))
    mesh_points: int = 100

    name: ClassVar[str] = "duffing"
    state_names: ClassVar[tuple[str, ...]] = ("q", "p")
    param_names: ClassVar[tuple[str, ...]] = ("alpha", "beta")

    def hamiltonian(self, x, mu):
        q, p = x
        alpha, beta = mu
        return p**2 / 2 + alpha * q**2 / 2 + beta * q**4 / 4

    def analytic_field(self, x, mu):
        q, p = x
        alpha, beta = mu
        return jnp.stack([p, -alpha * q - beta * q**3])


class Kepler(AbstractHamiltonianSystem):
    """Two bodies in the plane, ``G = 1``, ``μ = (m1, m2)``, state ``(q1, q2, p1, p2) ∈ R⁸``.

    ``H = |p1|²/(2 m1) + |p2|²/(2 m2) − m1 m2 / |q1 − q2|``. Initial states (HNN two-body
    generator, generalised to unequal masses): separation ``d ~ U(ic_bounds[0])`` at a uniform
    angle, bodies placed about the centre of mass, velocities perpendicular to the separation
    with relative speed ``(1 + ε) √((m1 + m2) / d)``, ``ε ~ U(ic_bounds[1])``, zero total
    momentum.
    """

    param_ranges: tuple[Range, ...] = ((0.5, 1.5), (0.5, 1.5))
    ic_bounds: tuple[Range, ...] = ((0.8, 1.5), (-0.05, 0.1))
    dt: float = 0.05
    t1: float = 5.0
    mesh_bounds: tuple[Range, ...] | None = None
    mesh_points: int = 2

    name: ClassVar[str] = "kepler"
    state_names: ClassVar[tuple[str, ...]] = (
        "q1x", "q1y", "q2x", "q2y", "p1x", "p1y", "p2x", "p2y",
    )  # fmt: skip
    param_names: ClassVar[tuple[str, ...]] = ("m1", "m2")

    def hamiltonian(self, x, mu):
        q1, q2, p1, p2 = x[0:2], x[2:4], x[4:6], x[6:8]
        m1, m2 = mu
        r = jnp.sqrt(jnp.sum((q1 - q2) ** 2))
        return jnp.sum(p1**2) / (2 * m1) + jnp.sum(p2**2) / (2 * m2) - m1 * m2 / r

    def analytic_field(self, x, mu):
        q1, q2, p1, p2 = x[0:2], x[2:4], x[4:6], x[6:8]
        m1, m2 = mu
        d = q1 - q2
        force = -m1 * m2 * d / jnp.sum(d**2) ** 1.5  # force on body 1
        return jnp.concatenate([p1 / m1, p2 / m2, force, -force])

    def sample_initial_state(self, key, mu):
        (d_lo, d_hi), (e_lo, e_hi) = self.ic_bounds
        m1, m2 = mu[0], mu[1]
        total = m1 + m2
        k_d, k_a, k_e = jax.random.split(key, 3)
        d = jax.random.uniform(k_d, (), dtype=mu.dtype, minval=d_lo, maxval=d_hi)
        angle = jax.random.uniform(k_a, (), dtype=mu.dtype, minval=0.0, maxval=2 * jnp.pi)
        eps = jax.random.uniform(k_e, (), dtype=mu.dtype, minval=e_lo, maxval=e_hi)
        u = jnp.stack([jnp.cos(angle), jnp.sin(angle)])
        v_hat = jnp.stack([-jnp.sin(angle), jnp.cos(angle)])
        speed = (1 + eps) * jnp.sqrt(total / d)
        q1 = (m2 / total) * d * u
        q2 = -(m1 / total) * d * u
        p1 = (m1 * m2 / total) * speed * v_hat  # reduced mass times relative velocity
        return jnp.concatenate([q1, q2, p1, -p1])
