"""The interface every meta-learner implements: init and the test-time fit; meta_step if it
meta-trains."""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from .._checks import check_int
from ._inner import check_optimiser, optimise

ModelFactory = Callable[[PRNGKeyArray], PyTree]


class MetaState(eqx.Module):
    """Everything a meta-learner carries between meta-steps (and into a checkpoint).

    - `params`: the meta-learned model (a plain model, or a `Modulated` one).
    - `opt_state`: the outer optimiser's state.
    - `latents`: ``(num_train, latent_dim)`` per-function latent codes (auto-decoding only).
    - `step`: meta-steps taken so far.
    - `latent_opt_state`: the inner optimiser's state of every training latent (leading axis
      ``num_train``), kept across meta-steps (auto-decoding with ``latent_state=
      "persistent"``); None otherwise.
    """

    params: PyTree
    opt_state: PyTree
    latents: Float[Array, "tasks latent"] | None
    step: Int[Array, ""]
    latent_opt_state: PyTree = None


class Adapted(eqx.Module):
    """Result of test-time adaptation of ``F`` functions.

    - `models`: a batched model: every array leaf has a leading axis of size ``F``; evaluate
      with ``eqx.filter_vmap(lambda m, x: m(x))``, or take one function's with `model`.
    - `losses`: ``(F, steps)`` training loss before each adaptation step.
    - `latents`: ``(F, latent_dim)`` adapted codes (auto-decoding), else None.
    """

    models: PyTree
    losses: Float[Array, "F steps"]
    latents: Float[Array, "F latent"] | None = None

    def model(self, i: int) -> PyTree:
        """The adapted model of function ``i`` (its slice of `models`)."""
        dynamic, static = eqx.partition(self.models, eqx.is_array)
        num = jax.tree.leaves(dynamic)[0].shape[0]
        if isinstance(i, bool) or not isinstance(i, int) or not -num <= i < num:
            raise IndexError(f"`i` must be an int in [{-num}, {num}), got i={i!r}.")
        return eqx.combine(jax.tree.map(lambda x: x[i], dynamic), static)


class AbstractMetaLearner(eqx.Module):
    """A meta-learning method as pure functions.

    - `init(make_model, num_train, *, key)` builds the meta-parameters and optimiser state;
    - `adapt(state, xs, dxs, *, key)` adapts to new functions from their support data with
      the meta-parameters frozen: `adapt_steps` steps of `adapt_optimiser` (an
      `optax.GradientTransformation`; the paper's is Adam at the inner learning rate) on the
      method's test-time parameters (Algorithm 2 for auto-decoding; a meta-trained learner
      may take 0 steps, which leaves the meta-learned model as it is).

    `adapt` is final: a method says what it fits at test time through four hooks, which
    `jaxmeta.meta.adapt_converged` uses too: `adapt_start` (one function's starting
    parameters), `adapt_loss` (its support loss), `adapt_model` (the model they give) and
    `adapt_latent` (the latent among them, if any).

    A method that meta-trains is an `AbstractMetaTrained`, which adds `meta_step`; one that
    does not (`Scratch`) has no `meta_step`, and `jaxmeta.meta.fit` only initialises it.
    Hyper-parameters and optimisers are fields; the trainer (`jaxmeta.meta.fit`) jits and scans.
    """

    adapt_optimiser: eqx.AbstractVar[optax.GradientTransformation]
    adapt_steps: eqx.AbstractVar[int]

    def __check_init__(self):
        check_optimiser("adapt_optimiser", self.adapt_optimiser)
        check_int("adapt_steps", self.adapt_steps, minimum=0)

    @property
    def meta_trains(self) -> bool:
        """Whether this method has a meta-training loop (an `AbstractMetaTrained`)."""
        return isinstance(self, AbstractMetaTrained)

    @abc.abstractmethod
    def init(self, make_model: ModelFactory, num_train: int, *, key: PRNGKeyArray) -> MetaState:
        """Initial meta-parameters for ``num_train`` training functions."""

    @abc.abstractmethod
    def adapt_start(self, state: MetaState, *, key: PRNGKeyArray) -> PyTree:
        """The parameters one new function's fit starts from (its inexact-array leaves are
        optimised; the rest is closed over)."""

    @abc.abstractmethod
    def adapt_loss(
        self,
        state: MetaState,
        params: PyTree,
        xs: Float[Array, "n dim"],
        dxs: Float[Array, "n dim"],
    ) -> Float[Array, ""]:
        """One function's support loss at ``params``."""

    @abc.abstractmethod
    def adapt_model(self, state: MetaState, params: PyTree) -> PyTree:
        """The model (a field ``x -> dx/dt``) of one function's ``params``."""

    @abc.abstractmethod
    def adapt_latent(self, params: PyTree) -> Float[Array, " latent"] | None:
        """The latent code among ``params`` (auto-decoding), else None. A method with a
        latent also gives `adapt_residuals(state, params, xs, dxs)`: residuals whose sum of
        squares is `adapt_loss`, for the least-squares solver of
        `jaxmeta.meta.adapt_converged`."""

    def adapt(
        self,
        state: MetaState,
        xs: Float[Array, "F n dim"],
        dxs: Float[Array, "F n dim"],
        *,
        key: PRNGKeyArray,
    ) -> Adapted:
        """Adapt to ``F`` new functions from their support states and velocities: for each,
        `adapt_steps` steps of `adapt_optimiser` from `adapt_start` (functions vmapped; one
        key per function, used by methods that draw a fresh model)."""
        keys = jax.random.split(key, xs.shape[0])

        def one(k, x, y):
            start = self.adapt_start(state, key=k)
            loss = lambda p: self.adapt_loss(state, p, x, y)
            params, losses = optimise(loss, start, self.adapt_optimiser, self.adapt_steps)
            return self.adapt_model(state, params), losses, self.adapt_latent(params)

        models, losses, latents = eqx.filter_vmap(one)(keys, xs, dxs)
        return Adapted(models=models, losses=losses, latents=latents)


class AbstractMetaTrained(AbstractMetaLearner):
    """A meta-learner with an outer loop: `meta_step(state, xs, dxs, idx)` takes one outer
    step on a batch of training functions (``xs``, ``dxs`` of shape ``(tasks, states, dim)``;
    ``idx`` their indices), which `jaxmeta.meta.fit` scans over every epoch.

    Its optimisers are fields: `outer_optimiser` (the meta-parameters' update) and
    `inner_optimiser` (the inner loop's `inner_steps` steps per task); `tasks_per_step`
    functions make one meta-batch."""

    outer_optimiser: eqx.AbstractVar[optax.GradientTransformation]
    inner_optimiser: eqx.AbstractVar[optax.GradientTransformation]
    inner_steps: eqx.AbstractVar[int]
    tasks_per_step: eqx.AbstractVar[int]

    def __check_init__(self):
        check_optimiser("outer_optimiser", self.outer_optimiser)
        check_optimiser("inner_optimiser", self.inner_optimiser)
        check_int("inner_steps", self.inner_steps)
        check_int("tasks_per_step", self.tasks_per_step)

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
