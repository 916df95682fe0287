"""Scores of a batch of adapted models on a test split: the paper's metrics (§4) and ours,
in two compiled calls."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._rollout import rollout, symplectic_rollout
from ..data import TaskSet
from ..systems import AbstractHamiltonianSystem, AbstractSystem
from ._field import field_ssim, field_values, relative_error
from ._rollout_error import rollout_errors
from ._structure import degeneracy_residuals, energy_drift, entropy_production
from ._trajectory import trajectory_error

# Steps per save interval of the rollouts that score a model's own energy (and entropy): the
# data generator's RK4 sub-steps. A symplectic solver's energy error oscillates with amplitude
# O(h²) without drifting; at the save step itself (h = 0.05 on Kepler) that oscillation alone
# reaches 1e-3 for sharp learned Hamiltonians. Rollout errors keep one step per save time.
ENERGY_SUBSTEPS = 4


def own_rollouts(system: AbstractSystem, models, x0, ts, substeps: int = ENERGY_SUBSTEPS):
    """Each model's rollouts from its function's initial states ``x0`` (F, Q, dim) over
    ``ts``, ``substeps`` steps per save interval: the symplectic implicit midpoint for
    Hamiltonian systems, RK4 for GENERIC ones. Returns (F, Q, T, dim): the paths along which
    a model's own energy (and entropy) are scored."""
    if isinstance(system, AbstractHamiltonianSystem):
        roll = lambda m, x: symplectic_rollout(m, x, ts, substeps=substeps)
    else:
        roll = lambda m, x: rollout(m, x, ts, substeps=substeps)
    return eqx.filter_vmap(lambda m, xs: jax.vmap(lambda x: roll(m, x))(xs))(models, x0)


def paper_scores(system: AbstractSystem, models, test: TaskSet, mesh) -> dict:
    """The paper's metrics (§4) of a batch of adapted ``models``, per test function:
    ``trajectory_error`` (the velocity error at the novel test states) and, where a mesh
    exists, ``field_error`` and (2-D systems) ``ssim``."""
    vm = eqx.filter_vmap
    out = {"trajectory_error": vm(trajectory_error)(models, test.query_xs, test.query_dxs)}
    if mesh is not None:

        def field(m, mu):
            learned = field_values(m, mesh)
            true = field_values(lambda x: system.vector_field(x, mu), mesh)
            return relative_error(learned, true), learned, true

        err, learned, true = vm(field)(models, test.mu)
        out["field_error"] = err
        if system.state_dim == 2:
            n = system.mesh_points
            out["ssim"] = jax.vmap(lambda a, b: field_ssim(a, b, (n, n)))(learned, true)
    return out


@eqx.filter_jit
def own_energies(system: AbstractSystem, models, x0, ts, substeps: int = ENERGY_SUBSTEPS):
    """Each model's `own_rollouts` from ``x0`` (F, Q, dim) and its own energy along them, in
    one compiled program. Returns ``(paths, energies, drift)``: (F, Q, T, dim), (F, Q, T) and
    the relative drift `energy_drift` of each path (F, Q). `evaluate` and ``experiments.drift``
    both score the drift here, so at ``ENERGY_SUBSTEPS`` a rescoring is the run's own number to
    the bit, not a second float32 program's."""
    paths = own_rollouts(system, models, x0, ts, substeps=substeps)
    energies = _per_path(lambda m, p: jax.vmap(m.energy)(p), models, paths)
    drift = _per_path(lambda m, p: energy_drift(m.energy, p), models, paths)
    return paths, energies, drift


def _per_path(f, models, paths):
    """``f(model, path)`` for every function's model (leading axis F) and each of its paths
    (F, Q, T, dim): results stacked (F, Q, ...)."""
    return eqx.filter_vmap(lambda m, ps: jax.vmap(lambda p: f(m, p))(ps))(models, paths)


def evaluate(system: AbstractSystem, models, test: TaskSet, mesh) -> dict:
    """Per-function (and per-trajectory) metrics of a batch of adapted models.

    ``models`` is a batched model (leading axis = test functions); ``mesh`` the field-error
    mesh or None. Returns arrays (paper §4 and ours): ``trajectory_error`` (F,), the paper's relative
    error of the model's velocity at all states of a function's novel trajectories against
    their exact velocities ``test.query_dxs``; ``rollout_error`` (F, Q), the relative error of
    the model's rollout from each novel initial state (beyond the paper); ``field_error`` and
    ``ssim`` (F,) where a mesh exists (SSIM for 2-D systems); ``energy_drift`` (F, Q) of the
    learned model along its own rollouts (symplectic implicit midpoint for Hamiltonian models, RK4
    for GENERIC ones, ``ENERGY_SUBSTEPS`` steps per save interval; `own_energies`); for GENERIC
    models ``min_entropy_rate`` and ``max_degeneracy`` (F,). Two compiled programs: the
    rollouts with their energies, then everything else.
    """
    paths, _, drift = own_energies(system, models, test.query_xs[:, :, 0], test.ts)
    return {**_scores(system, models, test, mesh, paths), "energy_drift": drift}


@eqx.filter_jit
def _scores(system: AbstractSystem, models, test: TaskSet, mesh, paths) -> dict:
    vm = eqx.filter_vmap
    out = paper_scores(system, models, test, mesh)
    out["rollout_error"] = vm(lambda m, xs: rollout_errors(m, xs, test.ts))(models, test.query_xs)
    if not isinstance(system, AbstractHamiltonianSystem):
        rates = _per_path(entropy_production, models, paths)
        out["min_entropy_rate"] = jnp.min(rates, axis=(1, 2))
        res = _per_path(lambda m, p: jnp.maximum(*degeneracy_residuals(m, p)), models, paths)
        out["max_degeneracy"] = jnp.max(res, axis=(1, 2))
    return out
