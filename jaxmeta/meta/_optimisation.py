"""Optimisation-based meta-learning: an inner loop of Adam steps on (some of) the model's
own weights, shared by MAML, ANIL and Reptile."""

import abc

import equinox as eqx
import jax
import optax
from jaxtyping import PyTree

from ..losses import field_mse
from ._base import AbstractMetaTrained, Adapted, MetaState, zeros_step
from ._inner import adapt_optimiser, check_adapt_optimiser, optimise


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


def all_weights_spec(model):
    """Filter spec selecting every inexact array of ``model``."""
    return jax.tree.map(eqx.is_inexact_array, model)


class AbstractOptimisationBased(AbstractMetaTrained):
    """A method whose meta-parameters are the model's own weights and whose inner loop is
    Adam on the part of them that `_inner_spec` selects (the rest frozen).

    `init`, `_fine_tune` and `adapt` are final; a method chooses `_inner_spec` (and, through
    `AbstractMetaTrained`, its `meta_step`). Test-time adaptation takes `adapt_steps` steps of
    the inner loop's Adam, or of plain SGD at the same `inner_lr` with
    ``adapt_optimiser="sgd"`` (training's inner loop is Adam either way).
    """

    adapt_optimiser: eqx.AbstractVar[str]

    def __check_init__(self):
        check_adapt_optimiser(self.adapt_optimiser)

    @abc.abstractmethod
    def _inner_spec(self, params: PyTree) -> PyTree[bool]:
        """Filter spec of the parameters the inner loop adapts (training and test time)."""

    def init(self, make_model, num_train, *, key):
        del num_train
        params = make_model(key)
        return MetaState(
            params=params,
            opt_state=optax.adam(self.outer_lr).init(eqx.filter(params, eqx.is_inexact_array)),
            latents=None,
            step=zeros_step(),
        )

    @staticmethod
    def _adam(lr):
        # eps_root keeps the second-order meta-gradient finite where a gradient is exactly 0
        # (d sqrt(v)/dv is infinite at v = 0), e.g. the GNN's projected-away skew entries.
        return optax.adam(lr, eps_root=1e-12)

    def _fine_tune(self, params, xs, dxs, lr, steps, optimiser=None):
        """``steps`` steps of ``optimiser`` (default: the inner loop's Adam at ``lr``) on the
        inner parameters of one task, the others frozen."""
        optimiser = self._adam(lr) if optimiser is None else optimiser
        inner, frozen = eqx.partition(params, self._inner_spec(params))
        loss = lambda p: field_mse(eqx.combine(p, frozen), xs, dxs)
        inner, losses = optimise(loss, inner, optimiser, steps)
        return eqx.combine(inner, frozen), losses

    def adapt(self, state, xs, dxs, *, key):
        del key
        lr = self.inner_lr
        optimiser = adapt_optimiser(self.adapt_optimiser, lr, self._adam(lr))
        tune = lambda x, y: self._fine_tune(state.params, x, y, lr, self.adapt_steps, optimiser)
        models, losses = eqx.filter_vmap(tune)(xs, dxs)
        return Adapted(models=models, losses=losses)
