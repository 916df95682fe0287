"""Metrics: zero (SSIM one) for the exact model, positive for a perturbed one, one for a zero
model (SSIM near zero for a zero or random field), shapes, errors.

The "exact model" is a benchmark system at fixed ``μ`` wrapped as a model.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import SystemModel

from jaxmeta.metrics import (
    degeneracy_residuals,
    energy_drift,
    entropy_production,
    field_error,
    field_ssim,
    field_values,
    rollout_error,
    rollout_errors,
    trajectory_error,
)
from jaxmeta.systems import (
    DampedNonlinearOscillator,
    MassSpring,
    Pendulum,
    TwoGasContainers,
)

TS = np.linspace(0.0, 3.0, 31)


class GenericModel(SystemModel):
    """A GENERIC system as a model; ``sign=-1`` reverses the dissipation (a broken model)."""

    sign: float = 1.0

    def __call__(self, x):
        reversible = self.poisson(x) @ jax.grad(self.energy)(x)
        return reversible + self.sign * self.friction(x) @ jax.grad(self.entropy)(x)

    def entropy(self, x):
        return self.system.entropy(x, self.mu)

    def poisson(self, x):
        return self.system.poisson(x, self.mu)

    def friction(self, x):
        return self.system.friction(x, self.mu)


def _spring_trajectories(mus, x0s, *, velocities=False):
    """Exact mass-spring trajectories, shape ``(functions, traj, time, 2)``; with
    ``velocities`` also their time derivatives (differentiated in closed form)."""
    out, dout = [], []
    for (m, k), x0 in zip(mus, x0s):
        w = np.sqrt(k / m)
        q0, p0 = x0[..., 0:1], x0[..., 1:2]
        c, s = np.cos(w * TS), np.sin(w * TS)
        out.append(np.stack([q0 * c + p0 / (m * w) * s, -m * w * q0 * s + p0 * c], axis=-1))
        dout.append(np.stack([-w * q0 * s + p0 / m * c, -m * w**2 * q0 * c - w * p0 * s], -1))
    xs = jnp.asarray(np.stack(out), dtype=jnp.float32)
    return (xs, jnp.asarray(np.stack(dout), dtype=jnp.float32)) if velocities else xs


def test_trajectory_error_exact_zero_and_batched():
    mus = np.array([[1.0, 2.0], [0.7, 1.2]])
    x0s = np.random.default_rng(0).uniform(-1, 1, (2, 3, 2))
    xs, dxs = _spring_trajectories(mus, x0s, velocities=True)  # (2 functions, 3 traj, 31, 2)
    exact = SystemModel(MassSpring(), jnp.asarray(mus, jnp.float32))
    errors = eqx.filter_vmap(trajectory_error)(exact, xs, dxs)
    assert errors.shape == (2,)
    assert float(errors.max()) < 1e-5  # float32 round-off of O(1) velocities
    perturbed = SystemModel(MassSpring(), jnp.asarray(1.1 * mus, jnp.float32))
    assert float(eqx.filter_vmap(trajectory_error)(perturbed, xs, dxs).min()) > 1e-2
    # ‖0 − F‖ / ‖F‖ = 1 for a model that predicts no motion.
    zero = trajectory_error(jnp.zeros_like, xs[1], dxs[1])
    np.testing.assert_allclose(zero, 1.0, rtol=1e-6)
    model_1 = SystemModel(MassSpring(), jnp.asarray(mus[1], jnp.float32))
    np.testing.assert_allclose(trajectory_error(model_1, xs[1], dxs[1]), errors[1], rtol=1e-6)


def test_trajectory_error_by_hand():
    # f(x) = 2x at the states (1, 0) and (0, 1) with true velocities (1, 1) and (0, 2):
    # residuals (1, -1) and (0, 0), so ‖f̂ − F‖ / ‖F‖ = √2 / √6 over all states at once (the
    # mean of per-state ratios would be 1/2).
    xs = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    dxs = jnp.array([[1.0, 1.0], [0.0, 2.0]])
    double = lambda x: 2.0 * x
    np.testing.assert_allclose(trajectory_error(double, xs, dxs), 1 / np.sqrt(3), rtol=1e-6)
    # Any leading shape: the states of (trajectories, time) at once.
    np.testing.assert_allclose(
        trajectory_error(double, xs[None], dxs[None]), 1 / np.sqrt(3), rtol=1e-6
    )


def test_trajectory_error_bad_inputs():
    model = SystemModel(MassSpring(), jnp.array([1.0, 2.0]))
    xs = jnp.ones((3, 31, 2))
    with pytest.raises(
        ValueError, match=r"`dxs` must have the shape of `xs` \(3, 31, 2\).*\(3, 30, 2\)"
    ):
        trajectory_error(model, xs, xs[:, 1:])
    with pytest.raises(ValueError, match=r"`xs` must have shape \(\.\.\., dim\), got shape \(\)"):
        trajectory_error(model, jnp.ones(()), jnp.ones(()))
    with pytest.raises(ValueError, match="`xs` holds no states"):
        trajectory_error(model, xs[:0], xs[:0])
    with pytest.raises(ValueError, match=r"`model\(x\)` must return the state's shape \(2,\)"):
        trajectory_error(lambda x: x[:1], xs, xs)
    with pytest.raises(TypeError, match="`model` must be callable"):
        trajectory_error(None, xs, xs)


def test_rollout_errors_exact_and_perturbed():
    mus = np.array([[1.0, 2.0], [0.7, 1.2]])
    x0s = np.random.default_rng(0).uniform(-1, 1, (2, 3, 2))
    xs_true = _spring_trajectories(mus, x0s)  # (2 functions, 3 trajectories, 31, 2)

    def errors(models):
        return eqx.filter_vmap(lambda m, xs: rollout_errors(m, xs, TS))(models, xs_true)

    exact = errors(SystemModel(MassSpring(), jnp.asarray(mus, jnp.float32)))
    perturbed = errors(SystemModel(MassSpring(), jnp.asarray(1.1 * mus, jnp.float32)))
    assert exact.shape == perturbed.shape == (2, 3)
    assert float(exact.max()) < 1e-4  # RK4 at the data step, against the exact flow
    assert float(perturbed.min()) > 1e-2
    model_1 = SystemModel(MassSpring(), jnp.asarray(mus[1], jnp.float32))
    single = rollout_error(model_1, xs_true[1, 2], TS)
    np.testing.assert_allclose(single, exact[1, 2], rtol=1e-4, atol=1e-7)


def test_rollout_error_bad_inputs():
    model = SystemModel(MassSpring(), jnp.array([1.0, 2.0]))
    xs = jnp.ones((31, 2))
    with pytest.raises(ValueError, match="time, dim"):
        rollout_error(model, xs[None], TS)
    with pytest.raises(ValueError, match="traj, time, dim"):
        rollout_errors(model, xs, TS)
    with pytest.raises(ValueError, match="time points"):
        rollout_error(model, xs[:10], TS)


def _spring_setup(points=20):
    system = MassSpring(mesh_points=points)
    mu = jnp.array([1.0, 2.0])
    return system, mu, system.mesh()


def test_field_error_exact_perturbed_and_chunked():
    system, mu, mesh = _spring_setup()
    true_field = lambda x: system.analytic_field(x, mu)
    exact = field_error(SystemModel(system, mu), true_field, mesh)
    perturbed = field_error(SystemModel(system, 1.1 * mu), true_field, mesh)
    assert exact.shape == () and float(exact) < 1e-6
    assert float(perturbed) > 1e-2
    # Chunks that do not divide the 400 points give the same values.
    big = field_values(true_field, mesh)
    small = field_values(true_field, mesh, batch_size=64)
    assert small.shape == (400, 2)
    np.testing.assert_array_equal(small, big)


def test_field_error_bad_inputs():
    system, mu, mesh = _spring_setup()
    model = SystemModel(system, mu)
    with pytest.raises(ValueError, match="mesh"):
        field_error(model, model, mesh[:, 0])
    with pytest.raises(ValueError, match=r"field\(x\)"):
        field_error(lambda x: x[:2], model, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        field_values(model, mesh, batch_size=0)
    with pytest.raises(TypeError, match="callable"):
        field_values(None, mesh)


@pytest.mark.parametrize("points", [20, 100])  # 100: the paper's mesh for mass-spring
def test_field_ssim_discriminates(points):
    system, mu, mesh = _spring_setup(points)
    shape = (points, points)
    true = field_values(lambda x: system.vector_field(x, mu), mesh)
    close = field_values(SystemModel(system, 1.05 * mu), mesh)
    far = field_values(SystemModel(Pendulum(), mu), mesh)
    noise = jnp.std(true, axis=0)[None] * jax.random.normal(jax.random.key(1), true.shape)
    ssim_exact = field_ssim(true, true, shape)
    assert ssim_exact.shape == ()
    np.testing.assert_allclose(ssim_exact, 1.0, atol=1e-5)
    # A zero field (the zero-velocity model) or a random one of the true field's scale scores
    # near 0; a slightly perturbed field lies strictly between that and the truth.
    assert abs(float(field_ssim(jnp.zeros_like(true), true, shape))) < 0.1
    assert abs(float(field_ssim(noise, true, shape))) < 0.1
    ssim_close = float(field_ssim(close, true, shape))
    assert 1.0 - 1e-4 > ssim_close > 0.5
    assert ssim_close > float(field_ssim(far, true, shape))
    # Each channel is scaled by its own true range: rescaling a channel of both fields (a
    # change of units) leaves SSIM unchanged.
    units = jnp.array([[7.0, 1.0]])
    np.testing.assert_allclose(
        field_ssim(units * close, units * true, shape), ssim_close, rtol=1e-5
    )


def test_a_reversed_field_scores_at_most_zero():
    # The exactly reversed field (time run backwards) is as wrong as a field can be in
    # direction: plain SSIM of signed images scored it +0.43 on this 50×50 pendulum mesh
    # (two negative terms multiplied); a disagreement in either term must count against it.
    system = Pendulum(g=9.81, mesh_bounds=((-4.0, 4.0), (-6.0, 6.0)), mesh_points=50)
    mu = jnp.array([1.0, 1.0])
    true = field_values(lambda x: system.vector_field(x, mu), system.mesh())
    reversed_score = float(field_ssim(-true, true, (50, 50)))
    assert reversed_score <= 0.0, reversed_score
    assert reversed_score < -0.4  # about -1 wherever the field is not flat, +1 where flat
    # A half-wrong field (one channel reversed) scores below a right one and not above 0.5.
    half = true * jnp.array([[1.0, -1.0]])
    assert float(field_ssim(half, true, (50, 50))) < 0.5


def test_field_ssim_bad_inputs():
    system, mu, mesh = _spring_setup()
    true = field_values(lambda x: system.vector_field(x, mu), mesh)
    with pytest.raises(ValueError, match="points, channels"):
        field_ssim(true[:-1], true, (20, 20))
    with pytest.raises(ValueError, match="has 399 points"):
        field_ssim(true, true, (21, 19))
    with pytest.raises(ValueError, match="2-D grid"):
        field_ssim(true, true, (4, 10, 10))
    with pytest.raises(ValueError, match="at least 11"):
        field_ssim(true, true, (40, 10))
    with pytest.raises(ValueError, match="`floor` must be positive"):
        field_ssim(true, true, (20, 20), floor=0.0)


def test_energy_drift():
    xs = _spring_trajectories(np.array([[1.0, 2.0]]), np.array([[[0.6, -0.3]]]))[0, 0]
    energy = lambda x: MassSpring().energy(x, jnp.array([1.0, 2.0]))
    assert float(energy_drift(energy, xs)) < 1e-5
    growing = xs * (1.0 + 0.01 * jnp.asarray(TS, jnp.float32))[:, None]
    np.testing.assert_allclose(energy_drift(energy, growing), 1.03**2 - 1, rtol=1e-4)
    # E(x0) = 0: the absolute floor keeps the value finite.
    from_rest = jnp.stack([jnp.zeros(2), jnp.array([0.0, 0.01])])
    np.testing.assert_allclose(energy_drift(energy, from_rest, floor=1e-3), 5e-5 / 1e-3)
    with pytest.raises(ValueError, match="time, dim"):
        energy_drift(energy, xs[0])
    with pytest.raises(ValueError, match="scalar"):
        energy_drift(lambda x: x, xs)
    with pytest.raises(ValueError, match="floor"):
        energy_drift(energy, xs, floor=0.0)


@pytest.mark.parametrize("system", [DampedNonlinearOscillator(), TwoGasContainers()])
def test_generic_structure_metrics(system):
    key_mu, key_x = jax.random.split(jax.random.key(0))
    mu = system.sample_params(key_mu, 1)[0]
    xs = jax.vmap(system.sample_initial_state, in_axes=(0, None))(jax.random.split(key_x, 16), mu)
    exact = GenericModel(system, mu)
    rate = entropy_production(exact, xs)
    assert rate.shape == (16,)
    assert float(rate.min()) >= 0.0 and float(rate.max()) > 0.0
    analytic = jax.vmap(lambda x: jnp.sum(system.analytic_field(x, mu)[2:]))(xs)
    np.testing.assert_allclose(rate, analytic, rtol=1e-4, atol=1e-6)
    l_grad_s, m_grad_e = degeneracy_residuals(exact, xs)
    assert l_grad_s.shape == m_grad_e.shape == (16,)
    assert float(l_grad_s.max()) < 1e-6 and float(m_grad_e.max()) < 1e-5

    reversed_dissipation = GenericModel(system, mu, sign=-1.0)
    assert float(entropy_production(reversed_dissipation, xs).min()) < 0.0

    class IsotropicFriction(GenericModel):
        def friction(self, x):
            return jnp.eye(x.shape[0], dtype=x.dtype)

    _, broken = degeneracy_residuals(IsotropicFriction(system, mu), xs)
    assert float(broken.min()) > 1e-3


def test_structure_metric_errors():
    model = SystemModel(MassSpring(), jnp.array([1.0, 2.0]))
    xs = jnp.ones((4, 2))
    with pytest.raises(TypeError, match="entropy"):
        entropy_production(model, xs)
    with pytest.raises(TypeError, match="poisson, friction"):
        degeneracy_residuals(model, xs)
    generic = GenericModel(DampedNonlinearOscillator(), jnp.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="time, dim"):
        entropy_production(generic, jnp.ones(3))
    with pytest.raises(ValueError, match="time, dim"):
        degeneracy_residuals(generic, jnp.ones(3))


@pytest.mark.slow
def test_field_error_on_the_full_tgc_mesh():
    # 30⁴ = 810,000 points, evaluated in chunks.
    system = TwoGasContainers()
    mu = jnp.array([1.0, 1.0])
    error = field_error(
        GenericModel(system, mu), lambda x: system.analytic_field(x, mu), system.mesh()
    )
    assert float(error) < 1e-5
