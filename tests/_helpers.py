"""Shared test helpers (imported by the test modules; pytest puts ``tests/`` on sys.path)."""

import equinox as eqx
import jax


class SystemModel(eqx.Module):
    """A benchmark system at fixed ``μ`` as a model: the exact field and energy (``mu`` may
    carry a leading batch axis for `eqx.filter_vmap`)."""

    system: eqx.Module
    mu: jax.Array

    def __call__(self, x):
        return self.system.vector_field(x, self.mu)

    def energy(self, x):
        return self.system.energy(x, self.mu)
