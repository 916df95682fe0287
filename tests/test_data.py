import hashlib
import json
import struct
import warnings

import diffrax
import equinox as eqx
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
    with pytest.raises(ValueError, match="num_trajectories.*got num_trajectories=0"):
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


# ---------------------------------------------------------------- TaskSet checks


def _arrays(f=2, k=3, q=2, t=5, dim=2, dtype=np.float32):
    """A valid TaskSet's fields: ts = 0, 0.1, ..., xs filled with a ramp."""
    xs = np.arange(f * k * t * dim, dtype=dtype).reshape(f, k, t, dim)
    query = np.ones((f, q, t, dim), dtype)
    return dict(mu=np.ones((f, 2), dtype), ts=np.arange(t, dtype=dtype) * dtype(0.1), xs=xs,
                dxs=xs + 1, query_xs=query, query_dxs=query)  # fmt: skip


def test_taskset_accepts_valid_arrays_and_names_its_split():
    assert data.TaskSet(**_arrays()).name == "TaskSet"
    tasks = data.TaskSet(**_arrays(), name="val")
    assert tasks.take(np.array([1])).name == "val" and tasks.shots(1).name == "val"
    assert data.TaskSet(**_arrays(q=0)).num_query == 0  # a training split has no queries


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        # dxs in another layout of the same size: (F, T, K, dim) instead of (F, K, T, dim).
        (lambda a: {"dxs": a["dxs"].transpose(0, 2, 1, 3)}, ValueError,
         r"train TaskSet: `dxs` must have the shape of `xs`, \(F, K, T, dim\) = \(2, 3, 5, 2\)"),
        (lambda a: {"xs": a["xs"][0]}, ValueError, r"`xs` must have shape \(F, K, T, dim\)"),
        (lambda a: {"xs": a["xs"][:, :, :1], "dxs": a["dxs"][:, :, :1]}, ValueError,
         "`xs` .* T >= 2"),
        (lambda a: {"query_xs": a["query_xs"][:, :, :4]}, ValueError,
         r"`query_xs` must have shape \(F, Q, T, dim\) = \(2, Q, 5, 2\)"),
        (lambda a: {"query_xs": a["query_xs"][:1]}, ValueError, "`query_xs` must have shape"),
        (lambda a: {"query_dxs": a["query_dxs"][:, :1]}, ValueError,
         "`query_dxs` must have the shape of `query_xs`"),
        (lambda a: {"mu": a["mu"][:1]}, ValueError, r"`mu` must have shape \(F, params\) = \(2,"),
        (lambda a: {"mu": a["mu"][0]}, ValueError, "`mu` must have shape"),
        (lambda a: {"ts": a["ts"][:4]}, ValueError, r"`ts` must have shape \(T,\) = \(5,\)"),
        (lambda a: {"ts": list(a["ts"])}, TypeError, "`ts` must be an array, got list"),
        (lambda a: {"mu": a["mu"].astype(np.int32)}, TypeError, "`mu` must be a floating array"),
        (lambda a: {"mu": a["mu"].astype(np.float64)}, TypeError,
         "one floating dtype, got mu: float64, ts: float32"),
        (lambda a: {"xs": _put(a["xs"], (1, 0, 3, 1), np.nan)}, ValueError,
         r"train TaskSet: `xs` has a non-finite value at index \(1, 0, 3, 1\) \(nan\)"),
        (lambda a: {"dxs": _put(a["dxs"], (0, 2, 4, 0), -np.inf)}, ValueError,
         r"`dxs` has a non-finite value at index \(0, 2, 4, 0\)"),
        (lambda a: {"query_dxs": _put(a["query_dxs"], (1, 1, 0, 1), np.inf)}, ValueError,
         r"`query_dxs` has a non-finite value at index \(1, 1, 0, 1\)"),
        (lambda a: {"mu": _put(a["mu"], (1, 0), np.nan)}, ValueError,
         r"`mu` has a non-finite value at index \(1, 0\)"),
        (lambda a: {"ts": _put(a["ts"], (3,), np.nan)}, ValueError,
         r"`ts` has a non-finite .* \(3,\)"),
        (lambda a: {"ts": a["ts"][::-1].copy()}, ValueError, "`ts` must be strictly increasing"),
        (lambda a: {"ts": _put(a["ts"], (2,), a["ts"][1])}, ValueError,
         r"`ts` must be strictly increasing, got ts\[1\]=0.1.* and ts\[2\]=0.1"),
        # One time moved by 1e-3 of a step: far outside rounding, so not one uniform grid.
        (lambda a: {"ts": _put(a["ts"], (2,), a["ts"][2] + np.float32(1e-4))}, ValueError,
         r"`ts` must be uniformly spaced, but ts\[2\] - ts\[1\]"),
    ],
)  # fmt: skip
def test_taskset_refuses_bad_arrays_by_name(change, error, match):
    arrays = _arrays()
    with pytest.raises(error, match=match):
        data.TaskSet(**{**arrays, **change(arrays)}, name="train")


def _put(arr, idx, value):
    out = np.array(arr)
    out[idx] = value
    return out


def test_taskset_default_name_in_errors():
    arrays = _arrays()
    with pytest.raises(ValueError, match=r"^TaskSet: `xs` has a non-finite"):
        data.TaskSet(**{**arrays, "xs": _put(arrays["xs"], (0, 0, 0, 0), np.nan)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_t", [3, 31, 101, 1001, 100_001])
def test_taskset_accepts_uniform_grids_made_in_float(dtype, num_t):
    """The time grids data come with (i * dt in the dtype, linspace, a cast from float64) pass
    the uniformity check at every length up to the systems' 100,000 steps."""
    with jax.enable_x64(dtype == np.float64):
        for dt in (0.1, 0.05, 0.02, 0.01, 3e-5):
            grids = (
                np.arange(num_t, dtype=dtype) * dtype(dt),
                (np.arange(num_t) * dt).astype(dtype),
                np.linspace(0, (num_t - 1) * dt, num_t).astype(dtype),
                np.asarray(jnp.arange(num_t, dtype=dtype) * jnp.asarray(dt, dtype)),
                np.asarray(jnp.linspace(0, (num_t - 1) * dt, num_t, dtype=dtype)),
            )
            for ts in grids:
                arrays = _arrays(f=1, k=1, q=0, t=num_t, dim=1, dtype=dtype)
                data.TaskSet(**{**arrays, "ts": ts})


def test_taskset_value_checks_wait_for_values():
    """Under jit and eval_shape only the layout is checked (values are not known there)."""
    arrays = _arrays()
    bad = _put(arrays["xs"], (0, 0, 0, 0), np.nan)
    build = lambda xs: data.TaskSet(**{**arrays, "xs": xs}, name="test")
    assert bool(jnp.isnan(jax.jit(lambda xs: build(xs).xs.sum())(bad)))
    assert eqx.filter_eval_shape(build, bad).xs.shape == bad.shape
    specs = {f: jax.ShapeDtypeStruct(a.shape, a.dtype) for f, a in arrays.items()}
    assert data.TaskSet(**specs).ts.shape == (5,)
    with pytest.raises(ValueError, match="test TaskSet: `dxs` must have the shape of `xs`"):
        jax.jit(lambda xs: data.TaskSet(**{**arrays, "dxs": xs}, name="test").xs)(bad[:, :2])
    with pytest.raises(ValueError, match="`dxs` must have the shape"):
        data.TaskSet(**{**specs, "dxs": jax.ShapeDtypeStruct((2, 5, 3, 2), np.float32)})


def test_generated_and_cached_splits_are_named(key, tmp_path):
    d = data.generate_dataset(systems.Duffing(), key, **SMALL)
    assert (d.train.name, d.val.name, d.test.name) == ("train", "val", "test")
    data.load_or_generate(systems.Duffing(), 0, tmp_path, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loaded from the cache, not regenerated
        cached = data.load_or_generate(systems.Duffing(), 0, tmp_path, **SMALL)
    assert (cached.train.name, cached.val.name, cached.test.name) == ("train", "val", "test")


# ------------------------------------------------------------------------ memory


def test_memory_estimate_bounds_what_generation_keeps(key):
    system = systems.DampedNonlinearOscillator()
    estimate = data.estimate_dataset_bytes(system, **SMALL)
    kept = sum(x.nbytes for x in jax.tree.leaves(data.generate_dataset(system, key, **SMALL)))
    # The dataset's arrays are part of the peak; with the solve's output and the temporaries
    # (each at most the size of every trajectory, its velocities or a dim x dim field per
    # point), the estimate stays within a small factor of them.
    assert kept < estimate < 4 * kept
    more = data.estimate_dataset_bytes(system, **{**SMALL, "num_trajectories": 30})
    assert 5 * estimate < more < 10 * estimate  # K 3 -> 30 with Q = 2 fixed
    with jax.enable_x64(True):
        assert data.estimate_dataset_bytes(system, **SMALL, dtype=jnp.float64) == 2 * estimate


def test_memory_limit_refuses_before_allocating(key):
    system = systems.Pendulum()
    with pytest.raises(
        MemoryError, match=r"needs about 1.*GiB .*1000000 support.*`num_trajectories`"
    ):
        data.generate_dataset(system, key, num_trajectories=1_000_000, max_bytes=2**30)
    need = data.estimate_dataset_bytes(system, **SMALL)
    with pytest.raises(MemoryError, match=r"more than max_bytes=.*raise the system's `dt`"):
        data.generate_dataset(system, key, **SMALL, max_bytes=need - 1)
    assert data.generate_dataset(system, key, **SMALL, max_bytes=need).train.num_functions == 7
    # The default limit (half the machine) refuses what would need terabytes.
    with pytest.raises(MemoryError, match="num_trajectories"):
        data.generate_dataset(system, key, num_trajectories=10**9)
    with pytest.raises(ValueError, match="max_bytes=0"):
        data.generate_dataset(system, key, **SMALL, max_bytes=0)
    with pytest.raises(TypeError, match="max_bytes='1e9'"):
        data.generate_dataset(system, key, **SMALL, max_bytes="1e9")
    with pytest.raises(TypeError, match="AbstractSystem, got str"):
        data.estimate_dataset_bytes("pendulum")
    with pytest.raises(ValueError, match="num_query=0"):
        data.estimate_dataset_bytes(system, num_query=0)
    with pytest.raises(TypeError, match="substeps=1.5"):
        data.estimate_dataset_bytes(system, substeps=1.5)


# ------------------------------------------------------------------ cache damage


def _zip_offsets(raw: bytes):
    """(central directory entry, first member's data) offsets of an .npz."""
    (n, e) = struct.unpack_from("<HH", raw, 26)  # the first local header is at 0
    return raw.find(b"PK\x01\x02"), 30 + n + e


def _put_bytes(raw: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(raw)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _flip(raw: bytes, offset: int, count: int) -> bytes:
    return (
        raw[:offset] + bytes(b ^ 0xFF for b in raw[offset : offset + count]) + raw[offset + count :]
    )


# Each damage, and what np.load raises on it when no checksum stops it first.
DAMAGE = {
    "truncated": (lambda raw: raw[: len(raw) // 2], "BadZipFile"),
    "empty": (lambda raw: b"", "EOFError"),
    "end record": (lambda raw: _flip(raw, raw.rfind(b"PK\x05\x06") + 16, 2), "OSError"),
    "central directory signature": (lambda raw: _flip(raw, _zip_offsets(raw)[0], 4), "BadZipFile"),
    "central directory method": (
        lambda raw: _put_bytes(raw, _zip_offsets(raw)[0] + 10, "<H", 99), "NotImplementedError"),
    "central directory flags": (
        lambda raw: _put_bytes(raw, _zip_offsets(raw)[0] + 8, "<H", 1), "RuntimeError"),
    "central directory bz2": (
        lambda raw: _put_bytes(raw, _zip_offsets(raw)[0] + 10, "<H", 12), "OSError"),
    "central directory deflate": (
        lambda raw: _put_bytes(_put_bytes(raw, _zip_offsets(raw)[0] + 10, "<H", 8),
                               _zip_offsets(raw)[1], "<B", 0x07), "error"),
    "local header": (lambda raw: _flip(raw, raw.find(b"PK\x03\x04", 1), 4), "BadZipFile"),
    # In a member larger than zipfile's first read, so its header is parsed before its CRC.
    "npy header": (lambda raw: _put_bytes(raw, raw.find(b"False", raw.find(b"train/xs")) + 4,
                                          "<B", ord("(")), "TokenError"),
    "middle bytes": (lambda raw: _flip(raw, len(raw) // 2, 8), "BadZipFile"),
}  # fmt: skip


@pytest.mark.parametrize("stamped", [False, True], ids=["checksum", "parser"])
@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.replace(" ", "-"))
def test_damaged_cache_is_regenerated(damage, stamped, tmp_path, key):
    """A damaged .npz is caught by the header's whole-file checksum; and should the header
    vouch for the damaged bytes (``stamped``: its digest rewritten to match, as a cache
    written damaged would be), np.load's failure is caught instead. Either way the dataset
    is regenerated, equal to a fresh one, and rewritten whole."""
    system = systems.MassSpring()
    fresh = data.generate_dataset(system, jax.random.key(3), **SMALL)
    data.load_or_generate(system, 3, tmp_path, **SMALL)
    (npz,), (header,) = tmp_path.glob("*.npz"), tmp_path.glob("*.json")
    damaged, raised = DAMAGE[damage]
    npz.write_bytes(damaged(npz.read_bytes()))
    if stamped:
        record = json.loads(header.read_text())
        record["file_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
        header.write_text(json.dumps(record))
    expected = rf"unreadable \((\w+\.)?{raised}\(" if stamped else "fails its checksums"
    with pytest.warns(UserWarning, match=expected):
        again = data.load_or_generate(system, 3, tmp_path, **SMALL)
    for x, y in zip(jax.tree.leaves(fresh), jax.tree.leaves(again)):
        np.testing.assert_array_equal(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten cache loads cleanly
        data.load_or_generate(system, 3, tmp_path, **SMALL)


@pytest.mark.parametrize(
    "header",
    ["{", "[1, 2]", '{"metadata": null}', "NULL-BYTES"],
    ids=["json", "list", "keys", "bytes"],
)
def test_damaged_cache_header_is_regenerated(header, tmp_path):
    system = systems.MassSpring()
    first = data.load_or_generate(system, 3, tmp_path, **SMALL)
    (path,) = tmp_path.glob("*.json")
    if header == "NULL-BYTES":
        path.write_bytes(b"\xff\xfe\x00" * 10)
    else:
        path.write_text(header)
    with pytest.warns(UserWarning, match="unreadable|other settings"):
        again = data.load_or_generate(system, 3, tmp_path, **SMALL)
    np.testing.assert_array_equal(first.test.query_xs, again.test.query_xs)


def test_cache_identity_ignores_max_bytes(tmp_path):
    system = systems.MassSpring()
    data.load_or_generate(system, 3, tmp_path, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load_or_generate(system, 3, tmp_path, **SMALL, max_bytes=2**40)
    assert len(list(tmp_path.glob("*.npz"))) == 1
