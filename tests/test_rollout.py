"""Rollouts of learned vector fields: accuracy, vmapping over states and models, symplectic
paths, the energy of an untrained HNN-like model (issue 3), and argument errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import SystemModel

from jaxmeta import rollout, symplectic_rollout
from jaxmeta.metrics import energy_drift
from jaxmeta.solvers import ImplicitMidpoint, StormerVerlet, Yoshida4
from jaxmeta.systems import MassSpring, Pendulum, symplectic_gradient

TS = jnp.linspace(0.0, 3.0, 31)


class TinyHNN(eqx.Module):
    """An untrained HNN-like model: tanh MLP Hamiltonian ``H_θ(q, p)``, field ``J ∇H_θ``."""

    mlp: eqx.nn.MLP

    def __init__(self, dim, *, key):
        self.mlp = eqx.nn.MLP(dim, "scalar", 32, 2, activation=jnp.tanh, key=key)

    def energy(self, x):
        return self.mlp(x)

    def __call__(self, x):
        return symplectic_gradient(self.energy, x)


def _spring_exact(x0, ts, m, k):
    """Exact ``(q, p)`` of ``H = p²/(2m) + k q²/2`` at times ``ts``, and ``q`` alone."""
    w = np.sqrt(k / m)
    q0, p0 = np.asarray(x0, dtype=np.float64)
    q = q0 * np.cos(w * ts) + p0 / (m * w) * np.sin(w * ts)
    p = -m * w * q0 * np.sin(w * ts) + p0 * np.cos(w * ts)
    return np.stack([q, p], axis=-1), q


def test_rollout_matches_exact_solution():
    model = SystemModel(MassSpring(), jnp.array([1.0, 2.0]))
    x0 = jnp.array([0.6, -0.3])
    _, q = _spring_exact(x0, np.asarray(TS), 1.0, 2.0)
    for kwargs in ({}, dict(rtol=1e-7, atol=1e-7)):  # RK4 StepTo, and adaptive Tsit5
        xs = rollout(model, x0, TS, **kwargs)
        assert xs.shape == (31, 2)
        np.testing.assert_allclose(xs[:, 0], q, atol=1e-4)


def test_rollout_vmaps_over_states_and_models():
    # One filter_vmap over a stacked batch of models and their initial states == a loop.
    x0s = jnp.array([[0.6, -0.3], [0.2, 0.9], [-1.0, 0.1]])
    keys = jax.random.split(jax.random.key(0), 3)
    models = eqx.filter_vmap(lambda key: TinyHNN(2, key=key))(keys)
    batched = eqx.filter_vmap(lambda m, x0: rollout(m, x0, TS))(models, x0s)
    looped = jnp.stack([rollout(TinyHNN(2, key=key), x0, TS) for key, x0 in zip(keys, x0s)])
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("solver", [ImplicitMidpoint(), StormerVerlet(), Yoshida4()])
def test_symplectic_rollout_matches_exact_solution(solver):
    m, k = 0.8, 1.5
    model = SystemModel(MassSpring(), jnp.array([m, k]))
    kinetic = lambda p: jnp.sum(p**2) / (2 * m)
    potential = lambda q: k * jnp.sum(q**2) / 2
    x0 = jnp.array([0.8, 0.4])
    ts = jnp.linspace(0.0, 3.0, 301)
    exact, _ = _spring_exact(x0, np.asarray(ts), m, k)
    xs = symplectic_rollout(model, x0, ts, solver=solver, kinetic=kinetic, potential=potential)
    assert xs.shape == (301, 2)
    # float32: the 2nd-order phase error w³h²T/12 · amplitude ≈ 6e-5 (midpoint); Yoshida-4's
    # truncation error is 1e-8, but its stages (weights 1.35, -1.70) amplify float32 rounding
    # to the same 6e-5 over 300 steps. The order itself is checked in float64 below.
    np.testing.assert_allclose(xs, exact, atol=2e-4)


@pytest.mark.parametrize(
    "solver, order", [(ImplicitMidpoint(), 2), (StormerVerlet(), 2), (Yoshida4(), 4)]
)
def test_symplectic_rollout_converges_at_its_order(solver, order):
    # In float64 (no rounding floor) halving the step divides the global error by 2^order.
    with jax.enable_x64(True):
        m, k = 0.8, 1.5
        model = SystemModel(MassSpring(), jnp.array([m, k]))
        kinetic = lambda p: jnp.sum(p**2) / (2 * m)
        potential = lambda q: k * jnp.sum(q**2) / 2
        x0 = jnp.array([0.8, 0.4])
        errors = []
        for n in (151, 301):
            ts = jnp.linspace(0.0, 3.0, n)
            exact, _ = _spring_exact(x0, np.asarray(ts), m, k)
            xs = symplectic_rollout(
                model, x0, ts, solver=solver, kinetic=kinetic, potential=potential
            )
            errors.append(float(np.abs(np.asarray(xs) - exact).max()))
        ratio = errors[0] / errors[1]
        assert 0.85 * 2**order < ratio < 1.15 * 2**order, (errors, ratio)


def test_untrained_hnn_keeps_its_energy_with_implicit_midpoint():
    # Issue 3: a random tanh-MLP Hamiltonian rolled out 1000 steps keeps its own energy.
    model = TinyHNN(2, key=jax.random.key(0))
    x0 = jnp.array([0.7, -0.4])
    ts = jnp.arange(1001, dtype=jnp.float32) * 0.1
    xs = symplectic_rollout(model, x0, ts)
    assert xs.shape == (1001, 2) and bool(jnp.all(jnp.isfinite(xs)))
    assert float(jnp.linalg.norm(xs[-1] - xs[0])) > 0.1  # it actually moves
    assert float(energy_drift(model.energy, xs)) < 1e-3


def test_substeps_equal_a_rollout_on_the_finer_grid():
    # `substeps=s` steps s times between save times and returns only the save times: the
    # same states as a rollout saving every fine step, subsampled.
    model = SystemModel(MassSpring(), jnp.array([1.0, 4.0]))  # ω = 2
    x0 = jnp.array([0.7, -0.4])
    ts = jnp.linspace(0.0, 3.0, 7)  # h ω = 1: coarse enough for RK4 to differ
    fine = jnp.linspace(0.0, 3.0, 25)
    for roll in (rollout, symplectic_rollout):
        coarse = roll(model, x0, ts, substeps=4)
        np.testing.assert_allclose(coarse, roll(model, x0, fine)[::4], rtol=1e-5, atol=1e-6)
        assert float(jnp.max(jnp.abs(coarse - roll(model, x0, ts)))) > 1e-6  # it matters
    # A symplectic rollout's energy error is an O(h²) oscillation: 4 substeps shrink it ~16×.
    # (A pendulum: implicit midpoint conserves a quadratic H, like the spring's, exactly.)
    pendulum = SystemModel(Pendulum(), jnp.array([1.0, 1.0]))  # m, l
    x1 = jnp.array([1.5, 0.0])
    ts = jnp.arange(101, dtype=jnp.float32) * 0.2
    e1 = float(energy_drift(pendulum.energy, symplectic_rollout(pendulum, x1, ts)))
    e4 = float(energy_drift(pendulum.energy, symplectic_rollout(pendulum, x1, ts, substeps=4)))
    assert e1 > 1e-4 and 8 < e1 / e4 < 32, (e1, e4)
    with pytest.raises(ValueError, match="substeps=0"):
        symplectic_rollout(pendulum, x1, ts, substeps=0)


def test_bad_arguments():
    model = SystemModel(MassSpring(), jnp.array([1.0, 2.0]))
    x0 = jnp.array([0.6, -0.3])
    with pytest.raises(ValueError, match="x0"):
        rollout(model, x0[None], TS)
    with pytest.raises(ValueError, match="ts"):
        rollout(model, x0, TS[:1])
    with pytest.raises(TypeError, match="callable"):
        rollout("not a model", x0, TS)
    with pytest.raises(ValueError, match=r"model\(x\)"):
        rollout(lambda x: x[:1], x0, TS)
    with pytest.raises(ValueError, match="rtol"):
        rollout(model, x0, TS, rtol=1e-6)
    with pytest.raises(ValueError, match="even"):
        symplectic_rollout(model, jnp.ones(3), TS)
    with pytest.raises(ValueError, match="kinetic"):
        symplectic_rollout(model, x0, TS, solver=StormerVerlet())
    with pytest.raises(ValueError, match="scalar"):
        symplectic_rollout(
            None, x0, TS, solver=Yoshida4(), kinetic=lambda p: p, potential=lambda q: q[0]
        )
    with pytest.raises(TypeError, match="energy"):
        symplectic_rollout(lambda x: x, x0, TS)
    with pytest.raises(TypeError, match="solver"):
        symplectic_rollout(model, x0, TS, solver="midpoint")
    with pytest.raises(RuntimeError, match="error estimates"):
        rollout(model, x0, TS, solver=ImplicitMidpoint(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["shift", "fw", "ro", "mr"])
def test_untrained_modulated_hnn_keeps_its_energy(name):
    # Issue 3: jaxmeta's own HNN, modulated by a random latent, over 1000 symplectic steps.
    from jaxmeta import modulation, nn

    mods = {"shift": modulation.Shift(), "fw": modulation.FullWeight(),
            "ro": modulation.RankOne(), "mr": modulation.MultiRank(rank=2)}  # fmt: skip
    k_model, k_mod, k_z = jax.random.split(jax.random.key(1), 3)
    modulated = modulation.modulate(nn.HNN(2, width=16, depth=2, key=k_model), mods[name],
                                    latent_dim=4, key=k_mod)  # fmt: skip
    model = modulated(jax.random.normal(k_z, (4,)))
    ts = jnp.arange(1001, dtype=jnp.float32) * 0.1
    xs = symplectic_rollout(model, jnp.array([0.7, -0.4]), ts)
    assert bool(jnp.all(jnp.isfinite(xs))) and float(jnp.linalg.norm(xs[-1] - xs[0])) > 1e-3
    assert float(energy_drift(model.energy, xs)) < 1e-3
