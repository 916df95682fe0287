"""MAML (second or first order) and ANIL: the same outer step, different inner parameters."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..losses import field_mse
from ._base import MetaState
from ._inner import optax_update
from ._optimisation import AbstractOptimisationBased, all_weights_spec, inner_adam, last_layer_spec

# The paper's optimisers (App. E-F): Adam everywhere, outer lr 1e-3, inner (and test-time) 2e-3.
_OUTER = optax.adam(1e-3)
_INNER = inner_adam(2e-3)


class AbstractMAML(AbstractOptimisationBased):
    """The MAML outer step (final): the adapted model's loss on the same task's trajectories,
    differentiated through the inner loop (second order), or with the inner loop's Jacobian
    replaced by the identity (``first_order=True``). `MAML` and `ANIL` differ only in the
    parameters the inner loop adapts (`_inner_spec`)."""

    first_order: eqx.AbstractVar[bool]

    def meta_step(self, state, xs, dxs, idx):
        del idx

        def task_loss(params, x, y):
            adapted, _ = self._fine_tune(params, x, y, self.inner_steps)
            if self.first_order:
                shift = jax.tree.map(
                    lambda a, p: jax.lax.stop_gradient(a - p),
                    eqx.filter(adapted, eqx.is_inexact_array),
                    eqx.filter(params, eqx.is_inexact_array),
                )
                adapted = eqx.apply_updates(params, shift)
            return field_mse(adapted, x, y)

        def outer(params):
            return jnp.mean(jax.vmap(task_loss, (None, 0, 0))(params, xs, dxs))

        loss, grads = eqx.filter_value_and_grad(outer)(state.params)
        params, opt_state = optax_update(self.outer_optimiser, grads, state.opt_state, state.params)
        new = MetaState(params, opt_state, None, state.step + 1)
        return new, loss


class MAML(AbstractMAML):
    """Model-agnostic meta-learning (Finn et al. 2017; paper App. E).

    Inner loop: `inner_steps` steps of `inner_optimiser` on all weights per task (paper: Adam
    everywhere, inner lr 2e-3; here with ``eps_root=1e-12``, see `inner_adam`); outer:
    `outer_optimiser` (Adam at 1e-3). Outer loss: the adapted model's loss on the same task's
    trajectories, differentiated through the inner loop (second order), or with the inner
    loop's Jacobian replaced by the identity (``first_order=True``). Test time:
    `adapt_steps` steps of `adapt_optimiser` (the inner loop's Adam).
    """

    outer_optimiser: optax.GradientTransformation = _OUTER
    inner_optimiser: optax.GradientTransformation = _INNER
    adapt_optimiser: optax.GradientTransformation = _INNER
    inner_steps: int = 3
    adapt_steps: int = 100
    tasks_per_step: int = 5
    first_order: bool = False

    def _inner_spec(self, params):
        return all_weights_spec(params)


class ANIL(AbstractMAML):
    """Almost no inner loop (Raghu et al. 2020): MAML whose inner loop (training and test time)
    updates only the last linear layer of every MLP in the model; the outer loop updates all.
    Same hyper-parameters, optimisers and defaults as `MAML`."""

    outer_optimiser: optax.GradientTransformation = _OUTER
    inner_optimiser: optax.GradientTransformation = _INNER
    adapt_optimiser: optax.GradientTransformation = _INNER
    inner_steps: int = 3
    adapt_steps: int = 100
    tasks_per_step: int = 5
    first_order: bool = False

    def _inner_spec(self, params):
        return last_layer_spec(params)
