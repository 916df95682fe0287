"""The no-meta-learning baseline: a fresh model per function."""

import equinox as eqx
import jax
import optax

from .._checks import check_int
from ..losses import field_mse
from ._base import AbstractMetaLearner, Adapted, MetaState, zeros_step
from ._inner import optimise


class Scratch(AbstractMetaLearner):
    """Train a freshly initialised HNN/GNN per new function from its support data alone
    (paper's "Scratch"), all functions at once with `eqx.filter_vmap`: `adapt_steps` Adam
    steps at `inner_lr`, the same budget every other method gets at test time.

    Nothing is meta-learned: Scratch is not an `AbstractMetaTrained`, has no `meta_step`,
    and `jaxmeta.meta.fit` only initialises it.
    """

    outer_lr: float = 1e-3
    inner_lr: float = 2e-3
    inner_steps: int = 1
    adapt_steps: int = 100
    tasks_per_step: int = 5

    def __check_init__(self):
        check_int("adapt_steps", self.adapt_steps)  # a fresh model needs at least one step

    def init(self, make_model, num_train, *, key):
        del num_train, key
        # The "meta-parameters" are just the architecture: a (static) model factory.
        return MetaState(params=make_model, opt_state=None, latents=None, step=zeros_step())

    def adapt(self, state, xs, dxs, *, key):
        make_model = state.params
        keys = jax.random.split(key, xs.shape[0])

        def train(k, x, y):
            loss = lambda m: field_mse(m, x, y)
            return optimise(loss, make_model(k), optax.adam(self.inner_lr), self.adapt_steps)

        models, losses = eqx.filter_vmap(train)(keys, xs, dxs)
        return Adapted(models=models, losses=losses)
