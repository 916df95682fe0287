"""A modulated, meta-learned ConCerNet: invariant and dynamics networks corrected per system by
a latent, meta-learned by auto-decoding across a parametric family of conserved systems.

The family is a spring-mass with varying stiffness ``k`` and mass ``m`` (`ParametricSpring`,
`SpringFamily`): both the conserved energy (its level sets are ellipses of aspect ratio
``√(k m)``) and the dynamics (frequency ``√(k/m)``) change from system to system, so neither
network can be shared unmodulated. Training (`train_meta_invariant`, `train_meta_dynamics`)
learns the shared networks and one persistent latent per training system jointly (auto-decoding,
DeepSDF-style: a single Adam step on base and latents per minibatch); test-time adaptation
(`adapt`, the meta-learning paper's Algorithm 2) freezes the base and fits only new latents on a
few support trajectories.
"""

import math
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ..meta._inner import optimise
from ..modulation import (
    AbstractModulation,
    FullWeight,
    Modulated,
    RankOne,
    Shift,
    modulate,
)
from ..nn._hnn import check_size
from ._contrastive import LOSSES, InvariantNet, contrastive_loss
from ._projection import Projected
from ._systems import (
    AbstractConservedSystem,
    Trajectories,
    _float,
    make_trajectories,
    ring_state,
)
from ._train import _fit, _mse_objective

# ----------------------------------------------------------------------------------------------
# The parametric family.


def _check_positive_params(name, value):
    """Raise unless a concrete parameter is positive (traced values are not checked)."""
    try:
        arr = np.asarray(value)
    except jax.errors.TracerArrayConversionError:
        return
    if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise ValueError(f"`{name}` must be positive and finite, got {name}={value!r}.")


class ParametricSpring(AbstractConservedSystem):
    """Spring-mass of stiffness ``k`` and mass ``m``: ``H = k q²/2 + p²/(2m)``,
    ``(q̇, ṗ) = (p/m, −k q)``. The defaults ``k = 2``, ``m = 1/2`` give `SpringMass` exactly
    (``H = q² + p²``, ``(2p, −2q)``), with the same initial states (a circle of radius
    ``U[0.3, 1.2]`` at a uniform angle), ``t ∈ [0, 3]`` and 30 points.

    `stiffness` and `mass` may be arrays with a leading system axis (a batch of systems from
    `SpringFamily.sample`); vmap over it with ``eqx.filter_vmap`` and take one with
    `system_at`.
    """

    stiffness: Float[Array, "..."] | float = 2.0
    mass: Float[Array, "..."] | float = 0.5
    t1: float = 3.0
    num_times: int = 30
    num_trajectories: int = 50
    latent_dim: int = 1
    rtol: float | None = None
    name: ClassVar[str] = "parametric_spring"
    state_dim: ClassVar[int] = 2

    def __check_init__(self):
        _check_positive_params("stiffness", self.stiffness)
        _check_positive_params("mass", self.mass)

    def field(self, x):
        return jnp.stack([x[1] / self.mass, -self.stiffness * x[0]])

    def invariant(self, x):
        return jnp.stack([0.5 * self.stiffness * x[0] ** 2 + 0.5 * x[1] ** 2 / self.mass])

    def sample_initial_state(self, key, dtype=None):
        return ring_state(key, _float(dtype))


def system_at(systems: ParametricSpring, index: int) -> ParametricSpring:
    """The ``index``-th system of a batch of systems (every array leaf indexed)."""
    return jax.tree.map(lambda a: a[index] if eqx.is_array(a) else a, systems)


class SpringFamily(eqx.Module):
    """A parametric family of `ParametricSpring` systems: stiffness ``k ~ U[stiffness]`` and
    mass ``m ~ U[mass]``, independently.

    **Why this family.** Among the ConCerNet systems, the spring-mass is the cheapest to
    simulate (RK4 on the save grid, no adaptive solve) and its rollouts are stable for every
    parameter, while a varying ``k`` and ``m`` changes the invariant itself (ellipses of aspect
    ratio ``√(k m)`` ∈ [0.5, 1.5] with the defaults) and the speed (``ω = √(k/m)`` ∈ [1.15, 3.46]),
    so a shared unmodulated network cannot fit the family. Kepler with varying ``G M`` (the
    issue's example) needs adaptive solves of fast tight orbits, too slow for a few-minute CPU
    budget. The defaults are centred on `SpringMass` (``k = 2``, ``m = 1/2``).

    **Fields:** `stiffness`, `mass`: ``(low, high)`` ranges; `t1`, `num_times`: time grid of
    the generated trajectories.
    """

    stiffness: tuple[float, float] = (1.0, 3.0)
    mass: tuple[float, float] = (0.25, 0.75)
    t1: float = 3.0
    num_times: int = 30

    def __check_init__(self):
        for name in ("stiffness", "mass"):
            lo, hi = getattr(self, name)
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise ValueError(
                    f"`{name}` must be a range (low, high) with 0 < low <= high, got "
                    f"{name}={getattr(self, name)!r}."
                )

    def sample(self, num_systems: int, *, dtype=None, key: PRNGKeyArray) -> ParametricSpring:
        """``num_systems`` systems as one `ParametricSpring` with array parameters of shape
        ``(num_systems,)``."""
        if isinstance(num_systems, bool) or not isinstance(num_systems, int) or num_systems < 1:
            raise ValueError(
                f"`num_systems` must be a positive int, got num_systems={num_systems!r}."
            )
        dtype = _float(dtype)
        k_k, k_m = jax.random.split(key)
        k = jax.random.uniform(k_k, (num_systems,), dtype, *self.stiffness)
        m = jax.random.uniform(k_m, (num_systems,), dtype, *self.mass)
        return ParametricSpring(stiffness=k, mass=m, t1=self.t1, num_times=self.num_times)


def family_trajectories(
    systems: ParametricSpring, num: int, *, dtype=None, key: PRNGKeyArray
) -> Trajectories:
    """`make_trajectories` of every system of a batch (vmapped): ``xs``, ``dxs`` of shape
    ``(systems, num, time, dim)``, ``ts`` of shape ``(systems, time)``."""
    num_systems = jnp.shape(systems.stiffness)[0] if jnp.ndim(systems.stiffness) else 0
    if num_systems < 1:
        raise ValueError(
            "`systems` must be a batch of systems with parameters of shape (systems,), got "
            f"stiffness of shape {jnp.shape(systems.stiffness)}."
        )
    if not (isinstance(num, int) and num >= 1):
        raise ValueError(f"`num` must be a positive int, got num={num!r}.")
    return _family_trajectories(systems, jax.random.split(key, num_systems), num, dtype)


@eqx.filter_jit
def _family_trajectories(systems, keys, num, dtype):
    return eqx.filter_vmap(lambda s, k: make_trajectories(s, num, dtype=dtype, key=k))(
        systems, keys
    )


# ----------------------------------------------------------------------------------------------
# The modulated model.

MODULATIONS: dict[str, Callable[[], AbstractModulation]] = {
    "shift": Shift,
    "rank_one": RankOne,
    "full_weight": FullWeight,
}


def _modulation(modulation) -> AbstractModulation:
    if isinstance(modulation, AbstractModulation):
        return modulation
    if isinstance(modulation, str) and modulation in MODULATIONS:
        return MODULATIONS[modulation]()
    raise ValueError(
        f"`modulation` must be an AbstractModulation or one of {sorted(MODULATIONS)}, got "
        f"modulation={modulation!r}."
    )


class MetaConCerNet(eqx.Module):
    """ConCerNet with both networks modulated by per-system latents.

    ``invariant(z_inv)`` is an `InvariantNet` and ``dynamics(z_dyn)`` an MLP field, each
    ``modulation.apply(base, hypernet(z))`` (see `jaxmeta.modulation.Modulated`); the system
    model is ``Projected(dynamics(z_dyn), invariant(z_inv))`` (`field`), so its flow conserves
    the learned invariant of that system exactly (eq. 6). The two latents are separate: stage 1
    learns ``z_inv`` with the invariant, stage 2 ``z_dyn`` with the dynamics.

    **Arguments:**

    - `dim`: state dimension.
    - `num_invariants`: number ``m`` of learned invariants (``1 <= m <= dim``).
    - `modulation`: an `AbstractModulation` (e.g. ``LowRank(2)``) or one of ``"shift"``,
      ``"rank_one"``, ``"full_weight"``; used for both networks.
    - `latent_dim`: size of each latent (default 4).
    - `width`, `depth`: hidden width and hidden layers of both networks (as the per-system
      ConCerNet: 100 and 2, tanh).
    - `weight_scale`: scale of the hypernetworks' initial weights (see `Hypernet`).
    - `key`: PRNG key.
    """

    invariant: Modulated
    dynamics: Modulated

    def __init__(
        self,
        dim: int,
        num_invariants: int,
        *,
        modulation: AbstractModulation | str = "rank_one",
        latent_dim: int = 4,
        width: int = 100,
        depth: int = 2,
        weight_scale: float = 1e-1,
        dtype=None,
        key: PRNGKeyArray,
    ):
        modulation = _modulation(modulation)
        check_size("latent_dim", latent_dim)
        k_inv, k_dyn, k_minv, k_mdyn = jax.random.split(key, 4)
        inv = InvariantNet(dim, num_invariants, width=width, depth=depth, dtype=dtype, key=k_inv)
        dyn = eqx.nn.MLP(dim, dim, width, depth, activation=jnp.tanh, dtype=dtype, key=k_dyn)
        common = dict(latent_dim=latent_dim, weight_scale=weight_scale)
        self.invariant = modulate(inv, modulation, key=k_minv, **common)
        self.dynamics = modulate(dyn, modulation, key=k_mdyn, **common)

    @property
    def latent_dim(self) -> int:
        return self.invariant.latent_dim

    def field(self, z_inv: Float[Array, " latent"], z_dyn: Float[Array, " latent"]) -> Projected:
        """The projected field of one system: ``Projected(dynamics(z_dyn), invariant(z_inv))``."""
        return Projected(self.dynamics(z_dyn), self.invariant(z_inv))


class MetaTrainResult(eqx.Module):
    """A meta-trained model, the per-system latents of the stage (``(systems, latent_dim)``)
    and its loss history (mean minibatch loss, averaged over systems, of each epoch)."""

    model: MetaConCerNet
    latents: Float[Array, "systems latent"]
    history: Float[Array, " epochs"]


class _Stage1(eqx.Module):
    model: MetaConCerNet
    z_inv: Array


class _Stage2(eqx.Module):
    model: MetaConCerNet
    z_inv: Array
    z_dyn: Array


def _invariant_loss(model: MetaConCerNet, z_inv, xs, normalise, loss):
    """One system's stage-1 loss: contrastive loss of ``invariant(z_inv)`` on its trajectories
    plus the modulation's penalty. Training and adaptation both minimise it."""
    inv = model.invariant
    return contrastive_loss(inv(z_inv), xs, normalise=normalise, loss=loss) + inv.penalty(z_inv)


def _dynamics_loss(model: MetaConCerNet, z_inv, z_dyn, xs, dxs):
    """One system's stage-2 loss: MSE on ``ẋ`` of its projected field plus the modulation's
    penalty. Training and adaptation both minimise it."""
    return _mse_objective(model.field(z_inv, z_dyn), (xs, dxs)) + model.dynamics.penalty(z_dyn)


class _MetaContrastive(eqx.Module):
    """Stage-1 objective: the mean over systems of `_invariant_loss` (vmapped)."""

    normalise: bool = eqx.field(static=True)
    loss: str = eqx.field(static=True)

    def __call__(self, params: _Stage1, xs):  # xs: (traj, systems, time, dim)
        one = lambda z, x: _invariant_loss(params.model, z, x, self.normalise, self.loss)
        return jnp.mean(jax.vmap(one)(params.z_inv, jnp.swapaxes(xs, 0, 1)))


def _meta_mse(params: _Stage2, batch):
    """Stage-2 objective: the mean over systems of `_dynamics_loss` (vmapped)."""
    xs, dxs = (jnp.swapaxes(a, 0, 1) for a in batch)  # (systems, traj, time, dim)
    one = lambda zi, zd, x, dx: _dynamics_loss(params.model, zi, zd, x, dx)
    return jnp.mean(jax.vmap(one)(params.z_inv, params.z_dyn, xs, dxs))


def _check_family_data(name, xs):
    if xs.ndim != 4:
        raise ValueError(
            f"`{name}` must have shape (systems, traj, time, dim), got shape {xs.shape}."
        )


def _check_latents(name, latents, num_systems, latent_dim):
    if jnp.shape(latents) != (num_systems, latent_dim):
        raise ValueError(
            f"`{name}` must have shape (systems={num_systems}, latent_dim={latent_dim}), got "
            f"shape {jnp.shape(latents)}."
        )


def _zeros_latents(model, num_systems, dtype):
    return jnp.zeros((num_systems, model.latent_dim), dtype)


def _trainable(params, network, latents):
    """The `_fit` filter training ``network(params)``'s arrays and ``latents(params)`` only."""
    spec = jax.tree.map(lambda _: False, params)
    mask = jax.tree.map(eqx.is_inexact_array, network(params))
    return eqx.tree_at(lambda p: (network(p), latents(p)), spec, replace=(mask, True))


def train_meta_invariant(
    model: MetaConCerNet,
    xs: Float[Array, "systems traj time dim"],
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    normalise: bool = True,
    loss: str = "nce",
    latents: Float[Array, "systems latent"] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> MetaTrainResult:
    """Stage 1 by auto-decoding: the modulated invariant and one latent ``z_inv`` per training
    system, jointly, by the contrastive loss (eq. 4, batch-normalised per system by default)
    of every system, vmapped over systems and averaged.

    Each minibatch holds the same ``batch_trajectories`` trajectory indices of every system;
    epochs run in `jax.lax.scan` as in `train_invariant`. Latents start at `latents` (default
    zeros: the base network at start for `Shift` and `RankOne`) and persist across epochs.
    Only the invariant half of `model` changes.
    """
    _check_family_data("xs", xs)
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {loss!r}.")
    if latents is None:
        latents = _zeros_latents(model, xs.shape[0], xs.dtype)
    _check_latents("latents", latents, xs.shape[0], model.latent_dim)
    params = _Stage1(model=model, z_inv=latents)
    spec = _trainable(params, lambda p: p.model.invariant, lambda p: p.z_inv)
    fit = _fit(
        params,
        _MetaContrastive(normalise=normalise, loss=loss),
        jnp.swapaxes(xs, 0, 1),
        optimizer=optimizer,
        epochs=epochs,
        batch=batch_trajectories,
        trainable=spec,
        progress=progress,
        chunk=chunk,
        key=key,
    )
    return MetaTrainResult(model=fit.model.model, latents=fit.model.z_inv, history=fit.history)


def train_meta_dynamics(
    model: MetaConCerNet,
    z_inv: Float[Array, "systems latent"],
    xs: Float[Array, "systems traj time dim"],
    dxs: Float[Array, "systems traj time dim"],
    *,
    optimizer: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    latents: Float[Array, "systems latent"] | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> MetaTrainResult:
    """Stage 2 by auto-decoding: the modulated dynamics and one latent ``z_dyn`` per training
    system, jointly, by the MSE on ``ẋ`` (eq. 7) of each system's projected field
    ``Projected(dynamics(z_dyn), invariant(z_inv))``, vmapped over systems and averaged. The
    invariant network and its latents `z_inv` (from `train_meta_invariant`) stay frozen.
    """
    _check_family_data("xs", xs)
    if dxs.shape != xs.shape:
        raise ValueError(f"`dxs` must have the shape of `xs` {xs.shape}, got {dxs.shape}.")
    _check_latents("z_inv", z_inv, xs.shape[0], model.latent_dim)
    if latents is None:
        latents = _zeros_latents(model, xs.shape[0], xs.dtype)
    _check_latents("latents", latents, xs.shape[0], model.latent_dim)
    params = _Stage2(model=model, z_inv=z_inv, z_dyn=latents)
    spec = _trainable(params, lambda p: p.model.dynamics, lambda p: p.z_dyn)
    fit = _fit(
        params,
        _meta_mse,
        (jnp.swapaxes(xs, 0, 1), jnp.swapaxes(dxs, 0, 1)),
        optimizer=optimizer,
        epochs=epochs,
        batch=batch_trajectories,
        trainable=spec,
        progress=progress,
        chunk=chunk,
        key=key,
    )
    return MetaTrainResult(model=fit.model.model, latents=fit.model.z_dyn, history=fit.history)


# ----------------------------------------------------------------------------------------------
# Test-time adaptation (Algorithm 2).


class MetaAdapted(eqx.Module):
    """Latents fitted to new systems with the base frozen.

    **Fields:** `model` (the meta-trained model, returned unchanged), `z_inv`, `z_dyn`
    (``(systems, latent_dim)``), `losses_inv`, `losses_dyn` (``(systems, steps)``: the loss
    before each step).
    """

    model: MetaConCerNet
    z_inv: Float[Array, "systems latent"]
    z_dyn: Float[Array, "systems latent"]
    losses_inv: Float[Array, "systems steps"]
    losses_dyn: Float[Array, "systems steps"]

    def field(self, index: int) -> Projected:
        """The adapted projected field of the ``index``-th system."""
        return self.model.field(self.z_inv[index], self.z_dyn[index])


@eqx.filter_jit
def _adapt(model, z0_inv, z0_dyn, xs, dxs, steps, lr, normalise, loss):
    opt = optax.adam(lr)

    def fit_inv(z0, x):
        objective = lambda z: _invariant_loss(model, z, x, normalise, loss)
        return optimise(objective, z0, opt, steps)

    def fit_dyn(z0, zi, x, dx):
        return optimise(lambda z: _dynamics_loss(model, zi, z, x, dx), z0, opt, steps)

    z_inv, losses_inv = jax.vmap(fit_inv)(z0_inv, xs)
    z_dyn, losses_dyn = jax.vmap(fit_dyn)(z0_dyn, z_inv, xs, dxs)
    return z_inv, z_dyn, losses_inv, losses_dyn


def adapt(
    model: MetaConCerNet,
    train_z_inv: Float[Array, "systems latent"],
    train_z_dyn: Float[Array, "systems latent"],
    xs: Float[Array, "tasks traj time dim"],
    dxs: Float[Array, "tasks traj time dim"],
    *,
    num_support: int | None = None,
    steps: int = 100,
    lr: float = 1e-2,
    normalise: bool = True,
    loss: str = "nce",
) -> MetaAdapted:
    """Test-time adaptation (Algorithm 2) to new systems, all at once (vmapped, jitted, each
    inner loop one `jax.lax.scan`).

    The base networks and hypernetworks stay frozen. For each new system, ``z_inv`` starts at
    the mean of the training invariant latents and takes `steps` Adam steps on the
    contrastive loss of its support trajectories; then ``z_dyn`` starts at the mean of the
    training dynamics latents and takes `steps` Adam steps on the MSE of the projected field
    ``Projected(dynamics(z_dyn), invariant(z_inv))`` on the same support (``z_inv`` fixed):
    the two stages of training, replayed on the latents alone.

    **Arguments:**

    - `model`: the meta-trained `MetaConCerNet`.
    - `train_z_inv`, `train_z_dyn`: the training latents (their means start adaptation).
    - `xs`, `dxs`: trajectories of the new systems, shape ``(tasks, traj, time, dim)``.
    - `num_support`: use the first ``K`` trajectories of each system (default: all);
      ``2 <= K <= traj`` (the contrastive loss needs two trajectories).
    - `steps`, `lr`: Adam steps and learning rate on the latents.
    - `normalise`, `loss`: the contrastive loss's options (as in training).
    """
    _check_family_data("xs", xs)
    if dxs.shape != xs.shape:
        raise ValueError(f"`dxs` must have the shape of `xs` {xs.shape}, got {dxs.shape}.")
    available = xs.shape[1]
    k = available if num_support is None else num_support
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= available:
        raise ValueError(
            f"`num_support` must be an int in [2, {available}] (the trajectories available), "
            f"got num_support={num_support!r}."
        )
    check_size("steps", steps)
    if not lr > 0:
        raise ValueError(f"`lr` must be positive, got lr={lr!r}.")
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {loss!r}.")
    for name, z in (("train_z_inv", train_z_inv), ("train_z_dyn", train_z_dyn)):
        if jnp.ndim(z) != 2 or jnp.shape(z)[1] != model.latent_dim:
            raise ValueError(
                f"`{name}` must have shape (systems, latent_dim={model.latent_dim}), got shape "
                f"{jnp.shape(z)}."
            )
    tasks = xs.shape[0]
    z0_inv = jnp.broadcast_to(jnp.mean(train_z_inv, axis=0), (tasks, model.latent_dim))
    z0_dyn = jnp.broadcast_to(jnp.mean(train_z_dyn, axis=0), (tasks, model.latent_dim))
    out = _adapt(model, z0_inv, z0_dyn, xs[:, :k], dxs[:, :k], steps, float(lr), normalise, loss)
    return MetaAdapted(model, *out)
