import json

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmeta import data, systems
from jaxmeta.solvers import RK4
from jaxmeta.systems import AbstractGenericSystem, AbstractHamiltonianSystem

ALL = [cls() for cls in systems.SYSTEMS.values()]
HAMILTONIAN = [s for s in ALL if isinstance(s, AbstractHamiltonianSystem)]
GENERIC = [s for s in ALL if isinstance(s, AbstractGenericSystem)]
ids = lambda s: s.name
SMALL = dict(num_functions=10, num_trajectories=3, num_query=2)


def _along(fn, system, ts):
    """fn(x, mu) along every trajectory of a TaskSet: (F, K, T)."""
    per_t = jax.vmap(fn, (0, None))
    return jax.vmap(jax.vmap(per_t, (0, None)), (0, 0))(ts.xs, ts.mu)


@pytest.mark.parametrize("system", HAMILTONIAN, ids=ids)
def test_hamiltonian_data_float64(system, key):
    with jax.enable_x64(True):
        d = data.generate_dataset(system, key, **SMALL)
        assert d.train.xs.dtype == jnp.float64
        h = _along(system.energy, system, d.train)
        drift = jnp.abs(h - h[..., :1]) / jnp.abs(h[..., :1])
        assert float(drift.max()) < 1e-4
        # RK4 data agree with a tight adaptive Dopri8 solve from the same initial states.
        ref = lambda x0, mu: data.simulate(
            lambda y: system.vector_field(y, mu), x0, d.train.ts,
            solver=diffrax.Dopri8(), rtol=1e-10, atol=1e-10,
        )  # fmt: skip
        xs_ref = jax.vmap(jax.vmap(ref, (0, None)), (0, 0))(d.train.xs[:, :, 0], d.train.mu)
        # README's claim: with 4 RK4 sub-steps per save every system is within 2e-7 of the
        # exact flow (global error ~ T h^4 f^(5); measured 0.8e-7 to 1.8e-7 here).
        assert float(jnp.abs(xs_ref - d.train.xs).max()) < 2e-7


@pytest.mark.parametrize("system", GENERIC, ids=ids)
def test_generic_data_float64(system, key):
    with jax.enable_x64(True):
        d = data.generate_dataset(system, key, **SMALL)
        e = _along(system.energy, system, d.train)
        s = _along(system.entropy, system, d.train)
        assert float((jnp.abs(e - e[..., :1]) / (1 + jnp.abs(e[..., :1]))).max()) < 1e-6
        assert bool(jnp.all(jnp.diff(s, axis=-1) >= -1e-12))
        assert float((s[..., -1] - s[..., 0]).max()) > 0  # dissipation actually happens


@pytest.mark.parametrize("system", ALL, ids=ids)
def test_float32_dataset(system, key):
    d = data.generate_dataset(system, key, **SMALL)
    for split in (d.train, d.val, d.test):
        assert split.xs.dtype == jnp.float32 and bool(jnp.isfinite(split.xs).all())
    n = system.num_steps + 1
    assert d.train.xs.shape == (7, 3, n, system.state_dim)
    assert d.train.query_xs.shape == (7, 0, n, system.state_dim)
    assert d.test.query_xs.shape == (1, 2, n, system.state_dim)
    exact = jax.vmap(jax.vmap(jax.vmap(system.vector_field, (0, None)), (0, None)), (0, 0))
    np.testing.assert_allclose(
        d.test.query_dxs, exact(d.test.query_xs, d.test.mu), rtol=1e-5, atol=1e-6
    )


def test_default_sizes_follow_the_paper(key):
    d = data.generate_dataset(systems.MassSpring(), key)
    assert (d.train.num_functions, d.val.num_functions, d.test.num_functions) == (70, 20, 10)
    assert d.train.num_trajectories == 20 and d.test.num_query == 10
    assert systems.Duffing.default_num_trajectories == 10


def test_finite_differences_second_order():
    with jax.enable_x64(True):
        errors = []
        for dt in (0.1, 0.05, 0.025):
            t = jnp.arange(0.0, 2.0 + dt / 2, dt)
            xs = jnp.stack([jnp.sin(3 * t), jnp.exp(-t)], axis=-1)
            exact = jnp.stack([3 * jnp.cos(3 * t), -jnp.exp(-t)], axis=-1)
            errors.append(float(jnp.abs(data.finite_difference(xs, dt) - exact).max()))
        rates = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        assert np.all(rates > 1.8) and np.all(rates < 2.2), rates


def test_rk4_is_fourth_order():
    with jax.enable_x64(True):
        field = lambda y: jnp.stack([y[1], -jnp.sin(y[0])])
        x0 = jnp.array([1.0, 0.0])
        ts = jnp.linspace(0.0, 3.0, 7)
        ref = data.simulate(field, x0, ts, solver=diffrax.Dopri8(), rtol=1e-13, atol=1e-13)
        errs = [
            float(jnp.abs(data.simulate(field, x0, ts, solver=RK4(), substeps=n) - ref).max())
            for n in (1, 2)
        ]
        rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        assert np.all(rates > 3.7) and np.all(rates < 4.3), rates


def test_determinism(key):
    s = systems.Duffing()
    a = data.generate_dataset(s, key, **SMALL)
    b = data.generate_dataset(s, key, **SMALL)
    c = data.generate_dataset(s, jax.random.key(1), **SMALL)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.train.xs, c.train.xs)


def test_cache_roundtrip_and_corruption(tmp_path):
    s = systems.MassSpring()
    first = data.load_or_generate(s, 3, tmp_path, **SMALL)
    (npz,) = tmp_path.glob("*.npz")
    (header,) = tmp_path.glob("*.json")
    mtime = npz.stat().st_mtime_ns
    second = data.load_or_generate(s, 3, tmp_path, **SMALL)
    assert npz.stat().st_mtime_ns == mtime  # loaded, not regenerated
    for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(x, y)
    # A truncated file is detected and regenerated.
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.warns(UserWarning, match="unreadable|checksums"):
        third = data.load_or_generate(s, 3, tmp_path, **SMALL)
    np.testing.assert_array_equal(third.train.xs, first.train.xs)
    # A header from other settings is detected and regenerated.
    meta = json.loads(header.read_text())
    meta["metadata"]["seed"] = 4
    header.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="other settings"):
        data.load_or_generate(s, 3, tmp_path, **SMALL)
    # Tampered array contents fail the checksum.
    arrays = dict(np.load(npz))
    arrays["train/xs"] = arrays["train/xs"] + 1.0
    with open(npz, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.warns(UserWarning, match="checksums"):
        fourth = data.load_or_generate(s, 3, tmp_path, **SMALL)
    np.testing.assert_array_equal(fourth.train.xs, first.train.xs)


def test_taskset_helpers(key):
    d = data.generate_dataset(systems.Duffing(), key, **SMALL)
    assert d.train.shots(2).xs.shape[1] == 2
    assert d.train.take(jnp.array([0, 2])).mu.shape == (2, 2)
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 3\].*k=4"):
        d.train.shots(4)


def test_bad_input(key):
    s = systems.Pendulum()
    with pytest.raises(ValueError, match="num_trajectories.*got 0"):
        data.generate_dataset(s, key, num_trajectories=0)
    with pytest.raises(ValueError, match=r"summing to 1, got split=\(0.5, 0.2, 0.1\)"):
        data.generate_dataset(s, key, split=(0.5, 0.2, 0.1))
    with pytest.raises(ValueError, match="num_query"):
        data.generate_dataset(s, key, num_query=0)
    with pytest.raises(TypeError, match="AbstractSystem, got str"):
        data.generate_dataset("pendulum", key)
    with pytest.raises(TypeError, match="floating dtype"):
        data.generate_dataset(s, key, dtype=jnp.int32)
    with pytest.raises(ValueError, match="substeps=0"):
        data.simulate(lambda y: -y, jnp.ones(2), jnp.linspace(0, 1, 3), substeps=0)
    with pytest.raises(ValueError, match=r"shape \(dim,\), got shape \(2, 2\)"):
        data.simulate(lambda y: -y, jnp.ones((2, 2)), jnp.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="RK4.*has no error estimate"):
        data.simulate(
            lambda y: -y, jnp.ones(2), jnp.linspace(0, 1, 3), solver=RK4(), rtol=1e-3, atol=1e-3
        )
    with pytest.raises(ValueError, match="both `rtol` and `atol`"):
        data.simulate(lambda y: -y, jnp.ones(2), jnp.linspace(0, 1, 3), rtol=1e-3)
    with pytest.raises(ValueError, match="q must lie in"):
        data.generate_dataset(
            systems.TwoGasContainers(ic_bounds=((1.5, 2.5), (-1, 1), (1, 3), (1, 3))), key, **SMALL
        )
