"""The rollout metrics of ConCerNet's Table 1: RK4 rollouts (`jaxmeta.rollout`) of a learned
field from the test initial states, scored against the truth with the true invariants; for a
model learned in an autoencoder's latent space (§4.3), decoded and scored in the original
space."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_int
from .._rollout import rollout
from ._autoencoder import Autoencoder, check_states
from ._trajectories import Trajectories

Field = Callable[[Float[Array, " dim"]], Float[Array, " dim"]]
Invariant = Callable[[Float[Array, " dim"]], Float[Array, " k"]]


@eqx.filter_jit
def _rollouts(
    field: Field, x0s: Float[Array, "traj dim"], ts: Float[Array, " time"], substeps: int
) -> Float[Array, "traj time dim"]:
    """Classical RK4 (`jaxmeta.rollout`'s default) from each of ``x0s``: ``substeps`` equal
    steps per interval of the uniform grid ``ts``, every step end saved, then ``ts`` kept
    (no interpolation)."""
    fine = jnp.linspace(ts[0], ts[-1], (ts.shape[0] - 1) * substeps + 1)
    return jax.vmap(lambda x0: rollout(field, x0, fine)[::substeps])(x0s)


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


def _check_invariant(invariant) -> None:
    if not callable(invariant):
        raise TypeError(
            "`invariant` must be the true invariant x -> I(x) of one state (e.g. "
            "`functools.partial(system.invariant, mu=mu)`), got "
            f"{type(invariant).__name__}."
        )


def evaluate(
    field: Field,
    invariant: Invariant,
    truth: Trajectories,
    *,
    substeps: int = 1,
    autoencoder: Autoencoder | None = None,
) -> RolloutMetrics:
    """Roll ``field`` out from the initial states of ``truth`` and score it (Table 1) with the
    true invariant.

    **Arguments:**

    - `field`: the learned (or true) vector field of one state, ``x -> dx/dt``.
    - `invariant`: the TRUE invariant of one state, ``x -> I(x)``, shape ``(k,)``: for a
      system ``functools.partial(system.invariant, mu=mu)`` (the system itself is refused).
    - `truth`: one system's `Trajectories`; rollouts start at ``truth.xs[:, 0]`` and are saved
      on ``truth.ts`` (uniform).
    - `substeps`: RK4 steps (`jaxmeta.rollout`) per save interval.
    - `autoencoder`: for a ``field`` of codes (§4.3, as the authors' ``eval_ae``): roll out
      from ``z_0 = E(x_0)``, decode ``x̂_t = D(ẑ_t)`` and score ``x̂`` in the original space;
      the reconstruction error enters both metrics from ``t = 0`` on (the paper's "initial
      conservation violation").
    """
    _check_invariant(invariant)
    check_int("substeps", substeps)
    if autoencoder is None:
        pred = _rollouts(field, truth.xs[:, 0], truth.ts, substeps)
    else:
        check_states(autoencoder, "truth.xs", truth.xs, arg="autoencoder")
        z0 = jax.vmap(autoencoder.encode)(truth.xs[:, 0])
        codes = _rollouts(field, z0, truth.ts, substeps)
        pred = jax.vmap(jax.vmap(autoencoder.decode))(codes)
    return _score(pred, invariant, truth)


def _score(
    pred: Float[Array, "traj time dim"], invariant: Invariant, truth: Trajectories
) -> RolloutMetrics:
    """Table-1 metrics of predicted trajectories ``pred`` against ``truth`` (same initial
    states, same times)."""
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
