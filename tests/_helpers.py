"""Shared test helpers (imported by the test modules; pytest puts ``tests/`` on sys.path)."""

import equinox as eqx
import jax
import numpy as np
import optax

from jaxmeta import data, meta, modulation, nn, systems


class SystemModel(eqx.Module):
    """A benchmark system at fixed ``μ`` as a model: the exact field and energy (``mu`` may
    carry a leading batch axis for `eqx.filter_vmap`)."""

    system: eqx.Module
    mu: jax.Array

    def __call__(self, x):
        return self.system.vector_field(x, self.mu)

    def energy(self, x):
        return self.system.energy(x, self.mu)


# The small learner, model and pendulum data of the seeds and devices tests (test_scale,
# test_distributed and the scripts they run in subprocesses, as ``tests._helpers``).
SMALL = dict(tasks_per_step=2, inner_steps=1, adapt_steps=5)
LEARNER = meta.AutoDecoding(modulation.RankOne(), outer_optimiser=optax.adam(1e-2), latent_dim=4,
                            **SMALL)  # fmt: skip
make_model = lambda k: nn.HNN(2, width=8, depth=1, key=k)


def small_dataset(num_functions=10, split=(0.6, 0.2, 0.2)):
    return data.generate_dataset(
        systems.Pendulum(), jax.random.key(0), num_functions=num_functions,
        split=split, num_trajectories=2, num_query=1,
    )  # fmt: skip


def leaves(state):
    """The array leaves of ``state`` as NumPy arrays."""
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state, eqx.is_array))]
