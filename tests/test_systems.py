import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmeta import systems
from jaxmeta.systems import (
    AbstractGenericSystem,
    AbstractHamiltonianSystem,
    canonical_poisson,
    symplectic_gradient,
)

ALL = [cls() for cls in systems.SYSTEMS.values()]
HAMILTONIAN = [s for s in ALL if isinstance(s, AbstractHamiltonianSystem)]
GENERIC = [s for s in ALL if isinstance(s, AbstractGenericSystem)]
ids = lambda s: s.name


def _random_states(system, key, n=64):
    mu = system.sample_params(jax.random.fold_in(key, 1), n)
    keys = jax.random.split(key, n)
    x = jax.vmap(system.sample_initial_state)(keys, mu)
    return x, mu


def test_registry_has_the_six_systems():
    assert set(systems.SYSTEMS) == {"mass-spring", "pendulum", "duffing", "kepler", "dno", "tgc"}
    assert len(HAMILTONIAN) == 4 and len(GENERIC) == 2


@pytest.mark.parametrize("system", ALL, ids=ids)
def test_autodiff_field_equals_analytic(system, key):
    with jax.enable_x64(True):
        x, mu = _random_states(system, key)
        auto = jax.vmap(system.vector_field)(x, mu)
        hand = jax.vmap(system.analytic_field)(x, mu)
        assert auto.dtype == jnp.float64
        np.testing.assert_allclose(auto, hand, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("system", ALL, ids=ids)
def test_float32_field_and_samplers(system, key):
    x, mu = _random_states(system, key)
    assert x.dtype == jnp.float32 and mu.dtype == jnp.float32
    f = jax.vmap(system.vector_field)(x, mu)
    assert f.dtype == jnp.float32 and bool(jnp.isfinite(f).all())
    lo, hi = np.array(system.param_ranges).T
    assert np.all((np.asarray(mu) >= lo) & (np.asarray(mu) <= hi))


def test_canonical_poisson():
    j = canonical_poisson(4)
    np.testing.assert_array_equal(j, -j.T)
    np.testing.assert_array_equal(j @ j, -jnp.eye(4))
    h = lambda x: jnp.sum(x**2) + x[0] * x[3]
    x = jnp.arange(1.0, 5.0)
    np.testing.assert_allclose(symplectic_gradient(h, x), j @ jax.grad(h)(x), rtol=1e-6)
    with pytest.raises(ValueError, match="dim=3"):
        canonical_poisson(3)
    with pytest.raises(ValueError, match="even dimension"):
        symplectic_gradient(h, jnp.ones(3))


@pytest.mark.parametrize("system", HAMILTONIAN, ids=ids)
def test_hamiltonian_energy_rate_vanishes(system, key):
    with jax.enable_x64(True):
        x, mu = _random_states(system, key)
        rate = jax.vmap(lambda y, m: jax.grad(system.energy)(y, m) @ system.vector_field(y, m))
        np.testing.assert_allclose(rate(x, mu), 0.0, atol=1e-12)


@pytest.mark.parametrize("system", GENERIC, ids=ids)
def test_generic_structure(system, key):
    with jax.enable_x64(True):
        x, mu = _random_states(system, key)
        L = jax.vmap(system.poisson)(x, mu)
        M = jax.vmap(system.friction)(x, mu)
        np.testing.assert_allclose(L, -jnp.swapaxes(L, 1, 2), atol=0)
        np.testing.assert_allclose(M, jnp.swapaxes(M, 1, 2), atol=1e-14)
        eig = jnp.linalg.eigvalsh(M)
        assert bool(jnp.all(eig >= -1e-12 * jnp.max(jnp.abs(eig))))
        ls, me = jax.vmap(system.degeneracy)(x, mu)
        assert float(ls.max()) < 1e-10 and float(me.max()) < 1e-10
        assert bool(jnp.all(jax.vmap(system.entropy_rate)(x, mu) >= 0))
        de = jax.vmap(lambda y, m: jax.grad(system.energy)(y, m) @ system.vector_field(y, m))
        np.testing.assert_allclose(de(x, mu), 0.0, atol=1e-10)


def test_mesh_shapes():
    assert systems.Pendulum().mesh().shape == (100 * 100, 2)
    assert systems.DampedNonlinearOscillator().mesh().shape == (30**3, 3)
    with pytest.raises(ValueError, match="no field-error mesh"):
        systems.Kepler().mesh()


def test_bad_input_errors():
    with pytest.raises(ValueError, match="Unknown system 'spring'.*mass-spring, pendulum"):
        systems.get_system("spring")
    with pytest.raises(ValueError, match="dt=-0.1"):
        systems.Pendulum(dt=-0.1)
    with pytest.raises(ValueError, match="t1=0.0"):
        systems.Duffing(t1=0.0)
    with pytest.raises(ValueError, match="'m' must be positive"):
        systems.MassSpring(param_ranges=((-1.0, 1.0), (0.5, 2.0)))
    with pytest.raises(ValueError, match="low < high"):
        systems.MassSpring(param_ranges=((2.0, 1.0), (0.5, 2.0)))
    s = systems.MassSpring()
    with pytest.raises(ValueError, match="parameter 'm' must be finite and positive, got -1.0"):
        s.check_params(np.array([[-1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"trailing dimension 2 \(m, k\), got shape \(3,\)"):
        s.check_params(np.ones(3))
    with pytest.raises(ValueError, match=r"trailing dimension 2 \(q, p\), got shape \(4, 3\)"):
        s.check_state(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"q must lie in \(0, 2\), got q=2.5"):
        systems.TwoGasContainers().check_state(np.array([2.5, 0.0, 1.0, 1.0]))


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"dt": "0.1"}, TypeError, "`dt` must be a number, got dt='0.1'"),
        ({"dt": True}, TypeError, "`dt` must be a number, got dt=True"),
        ({"t1": "3"}, TypeError, "`t1` must be a number, got t1='3'"),
        ({"dt": float("nan")}, ValueError, "`dt` must be positive and finite, got dt=nan"),
        ({"param_ranges": 5}, TypeError,
         r"`param_ranges` of pendulum must be a tuple of \(low, high\) pairs of numbers, "
         r"got param_ranges=5"),
        ({"param_ranges": ((0.5, "1"), (0.5, 1.0))}, TypeError, "`param_ranges` of pendulum"),
        ({"param_ranges": ((0.5, 1.0, 2.0), (0.5, 1.0))}, TypeError, "`param_ranges`"),
        ({"param_ranges": ((0.5, True), (0.5, 1.0))}, TypeError, "`param_ranges`"),
        ({"ic_bounds": [(-1.0, 1.0), (-1.0, 1.0)]}, TypeError,
         "`ic_bounds` of pendulum must be a tuple"),
        ({"mesh_bounds": ((-2.0, 2.0),)}, ValueError,
         r"`mesh_bounds` of pendulum needs 2 \(low, high\)"),
        ({"mesh_bounds": "none"}, TypeError, "`mesh_bounds` of pendulum must be a tuple"),
        ({"mesh_points": 2.5}, TypeError, "`mesh_points` must be an int, got mesh_points=2.5"),
        ({"mesh_points": 1}, ValueError, "`mesh_points` must be >= 2, got mesh_points=1"),
        ({"g": "3"}, TypeError, "`g` of pendulum must be a number, got g='3'"),
        ({"g": float("inf")}, ValueError, "`g` of pendulum must be finite, got g=inf"),
        ({"t1": 0.1}, ValueError, r"`t1`=0.1 and `dt`=0.1 of pendulum give 2 saved time\(s\); "
                                  "at least 3"),
        ({"t1": 0.01}, ValueError, r"give 1 saved time\(s\)"),
        ({"dt": 1e-9}, ValueError, "`dt`=1e-09 over the horizon `t1`=3.0 of pendulum is 3e\\+09 "
                                   "steps, more than the 100,000 allowed"),
        ({"t1": 1e300, "dt": 1e-300}, ValueError, "more than the 100,000 allowed"),
        ({"t1": 0.25}, ValueError, r"`t1`=0.25 of pendulum is not a multiple of `dt`=0.1"),
    ],
)  # fmt: skip
def test_fields_of_the_wrong_type_or_a_degenerate_grid_are_refused(overrides, error, match):
    with pytest.raises(error, match=match):
        systems.get_system("pendulum", **overrides)


def test_grid_limits_are_inclusive():
    assert systems.Pendulum(t1=0.2).times().shape == (3,)  # t1 = 2 dt: the 3 points needed
    assert systems.Pendulum(t1=0.3).num_steps == 3  # 0.3 / 0.1 = 2.9999999999999996
    assert systems.Pendulum(t1=1.0, dt=1e-5).num_steps == systems.Pendulum.max_num_steps
    with pytest.raises(ValueError, match="100,000 allowed"):
        systems.Pendulum(t1=1.0 + 1e-5, dt=1e-5)
    assert systems.DampedNonlinearOscillator(k=2, temperature=1).k == 2  # ints are numbers
