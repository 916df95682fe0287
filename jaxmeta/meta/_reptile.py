"""Reptile (Nichol et al. 2018): first-order meta-learning by moving towards adapted weights."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ._base import MetaState
from ._inner import optax_update
from ._optimisation import AbstractOptimisationBased, all_weights_spec, inner_adam

# The paper's optimisers (App. E-F): Adam in both loops, outer lr 1e-2, inner 2e-2.
_OUTER = optax.adam(1e-2)
_INNER = inner_adam(2e-2)


class Reptile(AbstractOptimisationBased):
    """Reptile with Adam in both loops (paper App. E–F: outer lr 1e-2, inner lr 2e-2).

    Each task is fine-tuned for `inner_steps` steps of `inner_optimiser`; `outer_optimiser`
    is fed the pseudo-gradient ``θ − mean_tasks(φ_task)``. Test time: `adapt_steps` steps of
    `adapt_optimiser` (the inner loop's Adam).
    """

    outer_optimiser: optax.GradientTransformation = _OUTER
    inner_optimiser: optax.GradientTransformation = _INNER
    adapt_optimiser: optax.GradientTransformation = _INNER
    inner_steps: int = 3
    adapt_steps: int = 100
    tasks_per_step: int = 5

    def _inner_spec(self, params):
        return all_weights_spec(params)

    def meta_step(self, state, xs, dxs, idx):
        del idx
        tune = lambda x, y: self._fine_tune(state.params, x, y, self.inner_steps)
        adapted, losses = eqx.filter_vmap(tune)(xs, dxs)
        theta = eqx.filter(state.params, eqx.is_inexact_array)
        phi = eqx.filter(adapted, eqx.is_inexact_array)
        pseudo_grad = jax.tree.map(lambda t, p: t - jnp.mean(p, axis=0), theta, phi)
        params, opt_state = optax_update(
            self.outer_optimiser, pseudo_grad, state.opt_state, state.params
        )
        new = MetaState(params, opt_state, None, state.step + 1)
        return new, jnp.mean(losses[:, 0])
