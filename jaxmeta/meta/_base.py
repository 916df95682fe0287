"""The interface every meta-learner implements: init and adapt; meta_step if it meta-trains."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .._checks import check_int, check_positive

ModelFactory = Callable[[PRNGKeyArray], PyTree]


class MetaState(eqx.Module):
    """Everything a meta-learner carries between meta-steps (and into a checkpoint).

    - `params`: the meta-learned model (a plain model, or a `Modulated` one).
    - `opt_state`: the outer optimiser's state.
    - `latents`: ``(num_train, latent_dim)`` per-function latent codes (auto-decoding only).
    - `step`: meta-steps taken so far.
    """

    params: PyTree
    opt_state: PyTree
    latents: Float[Array, "tasks latent"] | None
    step: Int[Array, ""]


class Adapted(eqx.Module):
    """Result of test-time adaptation of ``F`` functions.

    - `models`: a batched model: every array leaf has a leading axis of size ``F``; evaluate
      with ``eqx.filter_vmap(lambda m, x: m(x))``.
    - `losses`: ``(F, steps)`` training loss before each adaptation step.
    - `latents`: ``(F, latent_dim)`` adapted codes (auto-decoding), else None.
    """

    models: PyTree
    losses: Float[Array, "F steps"]
    latents: Float[Array, "F latent"] | None = None


class AbstractMetaLearner(eqx.Module):
    """A meta-learning method as pure functions.

    - `init(make_model, num_train, *, key)` builds the meta-parameters and optimiser state;
    - `adapt(state, xs, dxs, *, key)` adapts to new functions from their support data with
      the meta-parameters frozen (``adapt_steps`` Adam steps, Algorithm 2 for auto-decoding;
      a meta-trained learner may take 0, which leaves the meta-learned model as it is).

    A method that meta-trains is an `AbstractMetaTrained`, which adds `meta_step`; one that
    does not (`Scratch`) has no `meta_step`, and `jaxmeta.meta.fit` only initialises it.
    Hyper-parameters are static fields; the trainer (`jaxmeta.meta.fit`) jits and scans.
    """

    outer_lr: eqx.AbstractVar[float]
    inner_lr: eqx.AbstractVar[float]
    inner_steps: eqx.AbstractVar[int]
    adapt_steps: eqx.AbstractVar[int]
    tasks_per_step: eqx.AbstractVar[int]

    def __check_init__(self):
        check_positive("outer_lr", self.outer_lr)
        check_positive("inner_lr", self.inner_lr)
        check_int("inner_steps", self.inner_steps)
        check_int("adapt_steps", self.adapt_steps, minimum=0)
        check_int("tasks_per_step", self.tasks_per_step)

    @property
    def meta_trains(self) -> bool:
        """Whether this method has a meta-training loop (an `AbstractMetaTrained`)."""
        return isinstance(self, AbstractMetaTrained)

    @abc.abstractmethod
    def init(self, make_model: ModelFactory, num_train: int, *, key: PRNGKeyArray) -> MetaState:
        """Initial meta-parameters for ``num_train`` training functions."""

    @abc.abstractmethod
    def adapt(
        self,
        state: MetaState,
        xs: Float[Array, "F n dim"],
        dxs: Float[Array, "F n dim"],
        *,
        key: PRNGKeyArray,
    ) -> Adapted:
        """Adapt to ``F`` new functions from their support states and velocities."""


class AbstractMetaTrained(AbstractMetaLearner):
    """A meta-learner with an outer loop: `meta_step(state, xs, dxs, idx)` takes one outer
    step on a batch of training functions (``xs``, ``dxs`` of shape ``(tasks, states, dim)``;
    ``idx`` their indices), which `jaxmeta.meta.fit` scans over every epoch."""

    @abc.abstractmethod
    def meta_step(
        self,
        state: MetaState,
        xs: Float[Array, "tasks n dim"],
        dxs: Float[Array, "tasks n dim"],
        idx: Int[Array, " tasks"],
    ) -> tuple[MetaState, Float[Array, ""]]:
        """One outer (meta) step; returns the new state and the batch's training loss."""


def zeros_step() -> Int[Array, ""]:
    return jnp.zeros((), jnp.int32)
