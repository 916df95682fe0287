"""Structure checks of learned models along states: energy drift, entropy production and
GENERIC degeneracy residuals (beyond the paper; the properties of its eqs. 1, 3 and 4)."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..systems import generic_degeneracy

State = Float[Array, " dim"]
Scalar = Float[Array, ""]


def _check_states(xs, name: str = "xs") -> Array:
    xs = jnp.asarray(xs)
    if xs.ndim != 2:
        raise ValueError(f"`{name}` must be states of shape (time, dim), got shape {xs.shape}.")
    return xs


def _require(model, names: tuple[str, ...], what: str) -> None:
    missing = [n for n in names if not callable(getattr(model, n, None))]
    if missing:
        raise TypeError(
            f"`model` must be a {what} model with methods {', '.join(names)}; "
            f"{model!r} lacks {', '.join(missing)}."
        )


def energy_drift(
    energy_fn: Callable[[State], Scalar],
    xs: Float[Array, "time dim"],
    *,
    floor: float = 1e-3,
) -> Float[Array, ""]:
    """Largest relative energy change along a trajectory.

    ``max_t |E(x_t) − E(x_0)| / max(|E(x_0)|, floor)``. The absolute ``floor`` keeps the
    ratio finite when ``E(x_0) ≈ 0`` (e.g. a pendulum started at rest at the bottom); then
    the value is an absolute drift divided by ``floor``. The benchmark energies are of order
    one, so the default ``1e-3`` only acts near such points.

    **Arguments:**

    - `energy_fn`: ``E(x)`` of one state (e.g. ``model.energy`` or
      ``lambda x: system.energy(x, mu)``).
    - `xs`: the states of a rollout, shape ``(time, dim)``; ``xs[0]`` is the reference.
    - `floor`: the absolute floor of the denominator (positive).

    **Returns:** a scalar, 0 for exact conservation.
    """
    xs = _check_states(xs)
    if not floor > 0:
        raise ValueError(f"`floor` must be positive, got floor={floor!r}.")
    energies = jax.vmap(energy_fn)(xs)
    if energies.shape != xs.shape[:1]:
        raise ValueError(
            f"`energy_fn(x)` must return a scalar, got shape {energies.shape[1:]} per state."
        )
    scale = jnp.maximum(jnp.abs(energies[0]), floor)
    return jnp.max(jnp.abs(energies - energies[0])) / scale


def entropy_production(
    model: Callable[[State], State], xs: Float[Array, "time dim"]
) -> Float[Array, " time"]:
    """Entropy production ``dS/dt = ∇S(x) · f(x)`` of a GENERIC model at each state.

    ``f = model(x)`` is the model's own field and ``S = model.entropy``; GENERIC structure
    makes this ``∇Sᵀ M ∇S ≥ 0`` (with ``L ∇S = 0``), so negative values flag a violation.

    **Arguments:**

    - `model`: a callable ``model(x) -> dx/dt`` with ``model.entropy(x) -> S``.
    - `xs`: states, shape ``(time, dim)``.

    **Returns:** ``dS/dt`` at each state, shape ``(time,)``.
    """
    xs = _check_states(xs)
    _require(model, ("entropy",), "GENERIC")
    return jax.vmap(lambda x: jnp.dot(jax.grad(model.entropy)(x), model(x)))(xs)


def degeneracy_residuals(
    model, xs: Float[Array, "time dim"]
) -> tuple[Float[Array, " time"], Float[Array, " time"]]:
    """GENERIC degeneracy residuals ``(|L ∇S|, |M ∇E|)`` of a model at each state.

    Both vanish for a thermodynamically consistent model (paper eqs. 3-5); the GENERIC NN
    of the paper makes them zero for any weights.

    **Arguments:**

    - `model`: a model with methods ``energy``, ``entropy``, ``poisson`` (``L(x)``) and
      ``friction`` (``M(x)``).
    - `xs`: states, shape ``(time, dim)``.

    **Returns:** the pair ``(|L ∇S|, |M ∇E|)``, each of shape ``(time,)``.
    """
    xs = _check_states(xs)
    names = ("energy", "entropy", "poisson", "friction")
    _require(model, names, "GENERIC")
    parts = tuple(getattr(model, n) for n in names)
    return jax.vmap(lambda x: generic_degeneracy(*parts, x))(xs)
