"""Test-time adaptation run to convergence, for every method (beyond the paper).

The paper adapts with a fixed 100 Adam steps (Algorithm 2). `adapt_converged` takes those
same steps, then continues each function's fit until its support loss stops improving:
a latent (auto-decoding) with a least-squares solver (optimistix Levenberg–Marquardt: the
Jacobian has ``latent_dim`` columns), weights (MAML, ANIL, Reptile, Scratch) with the
method's own test-time optimiser to the same relative tolerance. Each function is fitted on
its own, so the steps and seconds it used are its own.
"""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from .._checks import check_int, check_positive
from ..data import TaskSet
from ._base import AbstractMetaLearner, MetaState
from ._inner import Until, optimise_from, optimise_until, optimiser_init


class Converged(eqx.Module):
    """The converged test-time protocol: the learner's own `adapt_steps` steps (the paper's
    protocol), then more until the support loss has converged.

    - `rtol`: the relative tolerance on the support loss. Weights: the learner's
      `adapt_optimiser` runs until the lowest loss improves by at most ``rtol`` (relative)
      over `window` steps. Latents: `least_squares` runs until its own relative change of the
      loss and of the latent per iteration fall below ``rtol`` (optimistix's Cauchy
      termination; `atol` is its absolute floor).
    - `window`: optimiser steps per convergence check (weights).
    - `max_steps`: optimiser steps after the paper's, at most (weights).
    - `solver_max_steps`: solver iterations at most (latents).
    - `least_squares`: the latent solver; ``None`` fits latents with the optimiser too.
      Default: `optimistix.LevenbergMarquardt` at (`rtol`, `atol`), keeping its best iterate.

    The result is never worse on the support loss than the paper's protocol: both fits
    start from its result and keep their lowest-loss iterate.
    """

    rtol: float = 1e-3
    atol: float = 1e-6
    window: int = 100
    max_steps: int = 5_000
    solver_max_steps: int = 256
    least_squares: optx.AbstractLeastSquaresSolver | None = None

    def __init__(self, rtol=1e-3, atol=1e-6, window=100, max_steps=5_000, solver_max_steps=256,
                 least_squares="levenberg-marquardt"):  # fmt: skip
        check_positive("rtol", rtol)
        check_positive("atol", atol)
        check_int("window", window)
        check_int("max_steps", max_steps)
        check_int("solver_max_steps", solver_max_steps)
        if least_squares == "levenberg-marquardt":
            least_squares = optx.BestSoFarLeastSquares(optx.LevenbergMarquardt(rtol, atol))
        elif least_squares is not None and not isinstance(
            least_squares, optx.AbstractLeastSquaresSolver
        ):
            raise TypeError(
                f"`least_squares` must be an optimistix least-squares solver or None, got "
                f"least_squares={least_squares!r}."
            )
        self.rtol, self.atol, self.window = rtol, atol, window
        self.max_steps, self.solver_max_steps = max_steps, solver_max_steps
        self.least_squares = least_squares


class ConvergedAdapted(eqx.Module):
    """What `adapt_converged` returns for ``F`` functions.

    - `models`, `latents`: as `Adapted`'s (latents: auto-decoding only).
    - `paper_loss`: ``(F,)`` support loss after the paper's protocol (`adapt_steps` steps).
    - `loss`: ``(F,)`` support loss at the converged result (never above `paper_loss`).
    - `steps`: ``(F,)`` steps taken after the paper's (optimiser steps or solver iterations).
    - `converged`: ``(F,)`` whether the tolerance was met before the cap.
    - `seconds`: ``(F,)`` wall time of each function's whole fit (host floats, compile
      excluded); `compile_seconds`: the one compilation.
    """

    models: PyTree
    latents: Float[Array, "F latent"] | None
    paper_loss: Float[Array, " F"]
    loss: Float[Array, " F"]
    steps: Int[Array, " F"]
    converged: Bool[Array, " F"]
    seconds: np.ndarray
    compile_seconds: float

    def model(self, i: int) -> PyTree:
        """The adapted model of function ``i``."""
        dynamic, static = eqx.partition(self.models, eqx.is_array)
        return eqx.combine(jax.tree.map(lambda x: x[i], dynamic), static)


def _least_squares(learner, state, start, x, y, protocol: Converged) -> Until:
    """`protocol.least_squares` on one latent from ``start``; the better of its result and
    the start."""
    residuals = lambda q, _: learner.adapt_residuals(state, q, x, y)
    sol = optx.least_squares(residuals, protocol.least_squares, start, max_steps=protocol.solver_max_steps, throw=False)  # fmt: skip
    loss = lambda q: learner.adapt_loss(state, q, x, y)
    start_loss, end_loss = loss(start), loss(sol.value)
    better = end_loss < start_loss
    best = jnp.where(better, sol.value, start)
    ok = sol.result == optx.RESULTS.successful
    return Until(best, jnp.minimum(start_loss, end_loss), sol.stats["num_steps"], ok)


@eqx.filter_jit
def _fit_one(learner: AbstractMetaLearner, state: MetaState, x, y, key, protocol: Converged):
    start = learner.adapt_start(state, key=key)
    loss = lambda p: learner.adapt_loss(state, p, x, y)
    opt_state = optimiser_init(learner.adapt_optimiser, start)
    params, opt_state, _ = optimise_from(
        loss, start, learner.adapt_optimiser, opt_state, learner.adapt_steps
    )
    paper_loss = loss(params)
    latent = learner.adapt_latent(params) is not None
    if latent and protocol.least_squares is not None:
        fit = _least_squares(learner, state, params, x, y, protocol)
    else:
        fit = optimise_until(loss, params, learner.adapt_optimiser, opt_state,
                             rtol=protocol.rtol, window=protocol.window,
                             max_steps=protocol.max_steps)  # fmt: skip
    model = learner.adapt_model(state, fit.params)
    return model, learner.adapt_latent(fit.params), paper_loss, fit.loss, fit.steps, fit.converged


def adapt_converged(
    learner: AbstractMetaLearner,
    state: MetaState,
    tasks: TaskSet,
    protocol: Converged | None = None,
    *,
    key: PRNGKeyArray,
) -> ConvergedAdapted:
    """Adapt to every function of ``tasks`` under the converged protocol (``protocol``, a
    `Converged`; its defaults when None).

    Functions are fitted one at a time by one compiled program (compiled on the first, which
    is then fitted again for its timing), so `ConvergedAdapted.seconds` are each function's
    own. The keys per function are those `jaxmeta.meta.adapt` uses (Scratch's fresh models
    are the same).
    """
    if not isinstance(learner, AbstractMetaLearner):
        raise TypeError(f"`learner` must be an AbstractMetaLearner, got {type(learner).__name__}.")
    protocol = Converged() if protocol is None else protocol
    if not isinstance(protocol, Converged):
        raise TypeError(f"`protocol` must be a Converged, got {protocol!r}.")
    f, k, t, d = tasks.xs.shape
    xs, dxs = tasks.xs.reshape(f, k * t, d), tasks.dxs.reshape(f, k * t, d)
    keys = jax.random.split(key, f)
    tic = time.perf_counter()
    jax.block_until_ready(_fit_one(learner, state, xs[0], dxs[0], keys[0], protocol))
    compile_seconds = time.perf_counter() - tic
    outs, seconds = [], []
    for i in range(f):
        tic = time.perf_counter()
        outs.append(
            jax.block_until_ready(_fit_one(learner, state, xs[i], dxs[i], keys[i], protocol))
        )
        seconds.append(time.perf_counter() - tic)
    compile_seconds -= seconds[0]
    dynamic = [eqx.filter(o, eqx.is_array) for o in outs]
    static = eqx.filter(outs[0], eqx.is_array, inverse=True)
    stacked = eqx.combine(jax.tree.map(lambda *a: jnp.stack(a), *dynamic), static)
    models, latents, paper_loss, loss, steps, converged = stacked
    return ConvergedAdapted(models, latents, paper_loss, loss, steps, converged,
                            np.asarray(seconds), max(compile_seconds, 0.0))  # fmt: skip
