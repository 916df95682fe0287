"""The no-meta-learning baseline: a fresh model per function."""

import optax

from .._checks import check_int
from ..losses import field_mse
from ._base import AbstractMetaLearner, MetaState, zeros_step

# The paper's Scratch: Adam at 2e-3 (the other methods' test-time rate).
_ADAPT = optax.adam(2e-3)


class Scratch(AbstractMetaLearner):
    """Train a freshly initialised HNN/GNN per new function from its support data alone
    (paper's "Scratch"), all functions at once with `eqx.filter_vmap`: `adapt_steps` steps of
    `adapt_optimiser` (Adam at 2e-3), the same budget every other method gets at test time.

    Nothing is meta-learned: Scratch is not an `AbstractMetaTrained`, has no `meta_step`,
    and `jaxmeta.meta.fit` only initialises it.
    """

    adapt_optimiser: optax.GradientTransformation = _ADAPT
    adapt_steps: int = 100

    def __check_init__(self):
        check_int("adapt_steps", self.adapt_steps)  # a fresh model needs at least one step

    def init(self, make_model, num_train, *, key):
        del num_train, key
        # The "meta-parameters" are just the architecture: a (static) model factory.
        return MetaState(params=make_model, opt_state=None, latents=None, step=zeros_step())

    def adapt_start(self, state, *, key):
        return state.params(key)

    def adapt_loss(self, state, params, xs, dxs):
        return field_mse(params, xs, dxs)

    def adapt_model(self, state, params):
        return params

    def adapt_latent(self, params):
        del params
        return None
