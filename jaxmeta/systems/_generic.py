"""Dissipative benchmark systems in GENERIC form ``dx/dt = L∇E + M∇S`` (paper App. D.2).

Both follow Shang & Öttinger (2020). Parameter and initial-condition ranges are jaxmeta's
choice; the documentation's Systems page gives them with the reasons.
"""

from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from ._base import AbstractGenericSystem, Range


class DampedNonlinearOscillator(AbstractGenericSystem):
    """Damped nonlinear oscillator in a heat bath, state ``(q, p, S)``, ``μ = (m, γ)``.

    ``E = p²/(2m) − k cos q + T S``; ``q̇ = p/m``, ``ṗ = −k sin q − γ p``,
    ``Ṡ = γ p² / (m T)``. ``L`` is canonical on ``(q, p)``; ``M = γ m T a aᵀ`` with
    ``a = (0, 1, −p/(m T))``. The spring constant ``k`` and bath temperature ``T`` are fixed.
    """

    param_ranges: tuple[Range, ...] = ((0.5, 1.5), (0.2, 1.0))
    ic_bounds: tuple[Range, ...] = ((-1.0, 1.0), (-1.0, 1.0), (0.0, 1.0))
    dt: float = 0.01
    t1: float = 1.0
    mesh_bounds: tuple[Range, ...] | None = ((-1.5, 1.5), (-1.5, 1.5), (0.0, 1.5))
    mesh_points: int = 30
    k: float = 1.0
    temperature: float = 1.0

    name: ClassVar[str] = "dno"
    state_names: ClassVar[tuple[str, ...]] = ("q", "p", "S")
    param_names: ClassVar[tuple[str, ...]] = ("m", "gamma")

    def energy(self, x, mu):
        q, p, s = x
        m, _ = mu
        return p**2 / (2 * m) - self.k * jnp.cos(q) + self.temperature * s

    def entropy(self, x, mu):
        del mu
        return x[2]

    def poisson(self, x, mu):
        del mu
        return jnp.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=x.dtype)

    def friction(self, x, mu):
        _, p, _ = x
        m, gamma = mu
        t = self.temperature
        a = jnp.stack([jnp.zeros_like(p), jnp.ones_like(p), -p / (m * t)])
        return gamma * m * t * jnp.outer(a, a)

    def analytic_field(self, x, mu):
        q, p, _ = x
        m, gamma = mu
        return jnp.stack(
            [p / m, -self.k * jnp.sin(q) - gamma * p, gamma * p**2 / (m * self.temperature)]
        )


class TwoGasContainers(AbstractGenericSystem):
    """Two gas containers exchanging heat and volume, state ``(q, p, S1, S2)``, ``μ = (α, m)``.

    Wall position ``q ∈ (0, 2)``, volumes ``V1 = q``, ``V2 = 2 − q``; Sackur–Tetrode energies
    ``E_i = (exp(S_i) / V_i)^{2/3}`` (``N k_B = ĉ = 1``), ``E = p²/(2m) + E1 + E2``,
    ``S = S1 + S2``, temperatures ``T_i = 2 E_i / 3``. ``L`` is canonical on ``(q, p)``;
    ``M = α a aᵀ`` with ``a = (0, 0, 1/T1, −1/T2)``.
    """

    param_ranges: tuple[Range, ...] = ((0.5, 2.0), (0.5, 2.0))
    ic_bounds: tuple[Range, ...] = ((0.6, 1.4), (-1.0, 1.0), (1.0, 3.0), (1.0, 3.0))
    dt: float = 0.02
    t1: float = 2.0
    mesh_bounds: tuple[Range, ...] | None = ((0.5, 1.5), (-1.5, 1.5), (1.0, 3.0), (1.0, 3.0))
    mesh_points: int = 30

    name: ClassVar[str] = "tgc"
    state_names: ClassVar[tuple[str, ...]] = ("q", "p", "S1", "S2")
    param_names: ClassVar[tuple[str, ...]] = ("alpha", "m")

    @staticmethod
    def _internal_energies(x):
        q, _, s1, s2 = x
        e1 = (jnp.exp(s1) / q) ** (2.0 / 3.0)
        e2 = (jnp.exp(s2) / (2.0 - q)) ** (2.0 / 3.0)
        return e1, e2

    def energy(self, x, mu):
        _, m = mu
        e1, e2 = self._internal_energies(x)
        return x[1] ** 2 / (2 * m) + e1 + e2

    def entropy(self, x, mu):
        del mu
        return x[2] + x[3]

    def poisson(self, x, mu):
        del mu
        z, o = 0.0, 1.0
        return jnp.array([[z, o, z, z], [-o, z, z, z], [z, z, z, z], [z, z, z, z]], dtype=x.dtype)

    def friction(self, x, mu):
        alpha, _ = mu
        e1, e2 = self._internal_energies(x)
        zero = jnp.zeros_like(e1)
        a = jnp.stack([zero, zero, 1.5 / e1, -1.5 / e2])  # (0, 0, 1/T1, -1/T2)
        return alpha * jnp.outer(a, a)

    def analytic_field(self, x, mu):
        q, p, _, _ = x
        alpha, m = mu
        e1, e2 = self._internal_energies(x)
        rate = 9.0 * alpha / 4.0 * (1.0 / e1 - 1.0 / e2)
        return jnp.stack([p / m, 2.0 / 3.0 * (e1 / q - e2 / (2.0 - q)), rate / e1, -rate / e2])

    def check_state(self, x) -> None:
        super().check_state(x)
        q = np.asarray(x)[..., 0]
        if not ((q > 0) & (q < 2)).all():
            bad = q[~((q > 0) & (q < 2))].ravel()[0]
            raise ValueError(
                f"`x` for {self.name}: the wall position q must lie in (0, 2), got q={float(bad)!r}."
            )
