"""Optimisation-based meta-learning: MAML (second or first order) and ANIL."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..losses import field_mse
from ._base import AbstractMetaLearner, Adapted, MetaState, zeros_step
from ._inner import optax_update, optimise


def _is_mlp(x) -> bool:
    return isinstance(x, eqx.nn.MLP)


def last_layer_spec(model):
    """Filter spec selecting the last linear layer of every `eqx.nn.MLP` in ``model``."""
    mlps = lambda m: tuple(x for x in jax.tree.leaves(m, is_leaf=_is_mlp) if _is_mlp(x))
    if not mlps(model):
        raise ValueError("ANIL needs a model containing at least one `eqx.nn.MLP`.")
    spec = jax.tree.map(lambda _: False, model)
    heads = tuple(jax.tree.map(eqx.is_inexact_array, m.layers[-1]) for m in mlps(model))
    return eqx.tree_at(lambda s: tuple(m.layers[-1] for m in mlps(s)), spec, heads)


def _everything(model):
    return jax.tree.map(eqx.is_inexact_array, model)


class _OptimisationBased(AbstractMetaLearner):
    """Shared machinery: an inner loop over (a subset of) the model's own weights."""

    def init(self, make_model, num_train, *, key):
        del num_train
        params = make_model(key)
        return MetaState(
            params=params,
            opt_state=optax.adam(self.outer_lr).init(eqx.filter(params, eqx.is_inexact_array)),
            latents=None,
            step=zeros_step(),
        )

    def _spec(self, params):
        return _everything(params)

    def _fine_tune(self, params, xs, dxs, lr, steps):
        """Adam on the inner parameters of one task, the others frozen."""
        inner, frozen = eqx.partition(params, self._spec(params))
        loss = lambda p: field_mse(eqx.combine(p, frozen), xs, dxs)
        # eps_root keeps the second-order meta-gradient finite where a gradient is exactly 0
        # (d sqrt(v)/dv is infinite at v = 0), e.g. the GNN's projected-away skew entries.
        inner, losses = optimise(loss, inner, optax.adam(lr, eps_root=1e-12), steps)
        return eqx.combine(inner, frozen), losses

    def adapt(self, state, xs, dxs, *, key):
        del key
        tune = lambda x, y: self._fine_tune(state.params, x, y, self.inner_lr, self.adapt_steps)
        models, losses = eqx.filter_vmap(tune)(xs, dxs)
        return Adapted(models=models, losses=losses)


class MAML(_OptimisationBased):
    """Model-agnostic meta-learning (Finn et al. 2017; paper App. E).

    Inner loop: `inner_steps` Adam steps on all weights per task (paper: Adam everywhere,
    inner lr 2e-3). Outer loss: the adapted model's loss on the same task's trajectories,
    differentiated through the inner loop (second order), or with the inner loop's Jacobian
    replaced by the identity (``first_order=True``).
    """

    outer_lr: float = 1e-3
    inner_lr: float = 2e-3
    inner_steps: int = 3
    adapt_steps: int = 100
    tasks_per_step: int = 5
    first_order: bool = False

    def meta_step(self, state, xs, dxs, idx):
        del idx

        def task_loss(params, x, y):
            adapted, _ = self._fine_tune(params, x, y, self.inner_lr, self.inner_steps)
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
        params, opt_state = optax_update(
            optax.adam(self.outer_lr), grads, state.opt_state, state.params
        )
        new = MetaState(params, opt_state, None, state.step + 1)
        return new, loss


class ANIL(MAML):
    """Almost no inner loop (Raghu et al. 2020): MAML whose inner loop (training and test time)
    updates only the last linear layer of every MLP in the model; the outer loop updates all."""

    def _spec(self, params):
        return last_layer_spec(params)
