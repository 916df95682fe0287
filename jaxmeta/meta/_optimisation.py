"""Optimisation-based meta-learning: an inner loop of optimiser steps on (some of) the model's
own weights, shared by MAML, ANIL and Reptile."""

import abc

import equinox as eqx
import jax
import optax
from jaxtyping import PyTree

from ..losses import field_mse
from ._base import AbstractMetaTrained, MetaState, zeros_step
from ._inner import optimise


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


def inner_adam(learning_rate: float) -> optax.GradientTransformation:
    """The inner-loop Adam of the optimisation-based methods: `optax.adam` with
    ``eps_root=1e-12``, which keeps the second-order meta-gradient finite where a gradient is
    exactly 0 (d sqrt(v)/dv is infinite at v = 0; e.g. the GNN's projected-away skew
    entries)."""
    return optax.adam(learning_rate, eps_root=1e-12)


class AbstractOptimisationBased(AbstractMetaTrained):
    """A method whose meta-parameters are the model's own weights and whose inner loop is
    `inner_optimiser` on the part of them that `_inner_spec` selects (the rest frozen).

    `init`, `_fine_tune` and the test-time hooks are final; a method chooses `_inner_spec`
    (and, through `AbstractMetaTrained`, its `meta_step`). Test-time adaptation takes
    `adapt_steps` steps of `adapt_optimiser` on the same parameters (the paper: the inner
    loop's Adam).
    """

    @abc.abstractmethod
    def _inner_spec(self, params: PyTree) -> PyTree[bool]:
        """Filter spec of the parameters the inner loop adapts (training and test time)."""

    def init(self, make_model, num_train, *, key):
        del num_train
        params = make_model(key)
        return MetaState(
            params=params,
            opt_state=self.outer_optimiser.init(eqx.filter(params, eqx.is_inexact_array)),
            latents=None,
            step=zeros_step(),
        )

    def _fine_tune(self, params, xs, dxs, steps):
        """``steps`` steps of `inner_optimiser` on the inner parameters of one task, the
        others frozen."""
        inner, frozen = eqx.partition(params, self._inner_spec(params))
        loss = lambda p: field_mse(eqx.combine(p, frozen), xs, dxs)
        inner, losses = optimise(loss, inner, self.inner_optimiser, steps)
        return eqx.combine(inner, frozen), losses

    def adapt_start(self, state, *, key):
        del key
        inner, _ = eqx.partition(state.params, self._inner_spec(state.params))
        return inner

    def adapt_loss(self, state, params, xs, dxs):
        return field_mse(self.adapt_model(state, params), xs, dxs)

    def adapt_model(self, state, params):
        _, frozen = eqx.partition(state.params, self._inner_spec(state.params))
        return eqx.combine(params, frozen)

    def adapt_latent(self, params):
        del params
        return None
