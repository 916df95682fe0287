"""The rollout metrics of ConCerNet's Table 1: RK4 rollouts of a learned field from the test
initial states, scored against the truth with the true invariants."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_int
from ..data import simulate
from ._systems import Trajectories

Field = Callable[[Float[Array, " dim"]], Float[Array, " dim"]]
Invariant = Callable[[Float[Array, " dim"]], Float[Array, " k"]]


def rk4_rollout(
    field: Field,
    x0: Float[Array, " dim"],
    ts: Float[Array, " time"],
    *,
    substeps: int = 1,
) -> Float[Array, "time dim"]:
    """Classical RK4 rollout of ``field`` from ``x0``, ``substeps`` equal steps per interval
    of the (uniform) grid ``ts``, returned on ``ts`` (no interpolation).

    The rollout of ConCerNet's metrics (`evaluate`); for Diffrax rollouts with other solvers
    see `jaxmeta.rollout`.
    """
    check_int("substeps", substeps)
    fine = jnp.linspace(ts[0], ts[-1], (ts.shape[0] - 1) * substeps + 1)
    return simulate(field, x0, fine)[::substeps]


@eqx.filter_jit
def rk4_rollouts(
    field: Field, x0s: Float[Array, "traj dim"], ts: Float[Array, " time"], substeps: int
) -> Float[Array, "traj time dim"]:
    """`rk4_rollout` from each of ``x0s`` (vmapped, jitted); shared with `evaluate_latent`."""
    return jax.vmap(lambda x0: rk4_rollout(field, x0, ts, substeps=substeps))(x0s)


class RolloutMetrics(eqx.Module):
    """Table-1 metrics of learned rollouts against the truth from the same initial states.

    ``mse``: mean over trajectories, times and coordinates of ``(x̂ − x)²``; ``violation``:
    mean over trajectories, times and invariants of ``|I(x̂_t) − I(x_0)|``;
    ``violation_sq``: the same mean of ``(I(x̂_t) − I(x_t))²`` — the squared metric of the
    authors' evaluation code (``evaluate_dynamics.py``: "all conservation"), against the true
    trajectory's invariant; ``*_curve``: per time; ``rollouts``: the learned trajectories.
    """

    mse: Float[Array, ""]
    violation: Float[Array, ""]
    violation_sq: Float[Array, ""]
    mse_curve: Float[Array, " time"]
    violation_curve: Float[Array, " time"]
    rollouts: Float[Array, "traj time dim"]


def check_invariant(invariant) -> None:
    """Raise a `TypeError` unless ``invariant`` is callable (e.g. ``system.invariant``)."""
    if not callable(invariant):
        raise TypeError(
            "`invariant` must be the true invariant x -> I(x) of one state (e.g. "
            f"`system.invariant`), got {type(invariant).__name__}."
        )


def evaluate(
    field: Field,
    invariant: Invariant,
    truth: Trajectories,
    *,
    substeps: int = 1,
) -> RolloutMetrics:
    """Roll ``field`` out by `rk4_rollout` from the initial states of ``truth`` and score it
    (Table 1) with the true invariant ``invariant`` (``system.invariant``; for a member of a
    parametric family, ``lambda x: family.invariant(x, mu)``)."""
    check_invariant(invariant)
    return score(rk4_rollouts(field, truth.xs[:, 0], truth.ts, substeps), invariant, truth)


def score(
    pred: Float[Array, "traj time dim"], invariant: Invariant, truth: Trajectories
) -> RolloutMetrics:
    """Table-1 metrics of predicted trajectories ``pred`` against ``truth`` (same initial
    states, same times), with the true invariant ``invariant`` of one state."""
    check_invariant(invariant)
    inv = jax.vmap(jax.vmap(invariant))
    i0 = jax.vmap(invariant)(truth.xs[:, 0])[:, None, :]
    sq = jnp.mean((pred - truth.xs) ** 2, axis=-1)
    inv_pred = inv(pred)
    dev = jnp.mean(jnp.abs(inv_pred - i0), axis=-1)
    return RolloutMetrics(
        mse=jnp.mean(sq),
        violation=jnp.mean(dev),
        violation_sq=jnp.mean((inv_pred - inv(truth.xs)) ** 2),
        mse_curve=jnp.mean(sq, axis=0),
        violation_curve=jnp.mean(dev, axis=0),
        rollouts=pred,
    )
