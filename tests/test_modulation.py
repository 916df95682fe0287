"""Modulations: contract suite over every modulation, structure of modulated models, errors."""

import functools
import inspect

import equinox as eqx
import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxmeta import modulation as jm
from jaxmeta.nn import GNN, HNN

SMALL = dict(width=8, depth=2)
seeds = st.integers(0, 2**31 - 1)
# RBG keys: far cheaper to compile than threefry for the many small eager inits here.
KEY = functools.partial(jax.random.key, impl="rbg")
# Registry: every modulation runs through the same contract tests.
MODULATIONS = {
    "shift": jm.Shift(),
    "full_weight": jm.FullWeight(),
    "rank_one": jm.RankOne(),
    "low_rank": jm.LowRank(2),
    "multi_rank": jm.MultiRank(rank=2),
}
mods = pytest.mark.parametrize("mod", list(MODULATIONS.values()), ids=list(MODULATIONS))


@functools.cache
def _build(kind, name, seed, scale, dtype):
    return build(kind, MODULATIONS[name], seed, scale, dtype)


def cached(kind, mod, seed=0):
    """`build` with the default scale and dtype, memoised (eager construction is slow)."""
    name = next(k for k, v in MODULATIONS.items() if v is mod)
    return _build(kind, name, seed, 0.5, None)


def build(kind, mod, seed=0, scale=0.5, dtype=None):
    """A modulated HNN or GNN with a sizeable hypernetwork (random latents -> large changes)."""
    k1, k2 = jax.random.split(KEY(seed))
    if kind == "hnn":
        model = HNN(2, **SMALL, dtype=dtype, key=k1)
    else:
        model = GNN(1, 1, **SMALL, dtype=dtype, key=k1)
    return jm.modulate(model, mod, latent_dim=4, weight_scale=scale, key=k2)


def leaves(tree):
    return jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))


@eqx.filter_jit
def hnn_residual(modulated, z, x):
    model = modulated(z)
    grad_h = jax.grad(model.energy)(x)
    return jnp.dot(grad_h, model(x)), jnp.dot(grad_h, grad_h)


@eqx.filter_jit
def gnn_residuals(modulated, z, x):
    model = modulated(z)
    m = model.friction(x)
    grad_e = jax.grad(model.energy)(x)
    grad_s = jax.grad(model.entropy)(x)
    f = model(x)
    return dict(
        m=m,
        eig=jnp.linalg.eigvalsh(m),
        me=jnp.linalg.norm(m @ grad_e),
        ls=jnp.linalg.norm(model.poisson(x) @ grad_s),
        ds=jnp.dot(grad_s, f),
        de=jnp.dot(grad_e, f),
        scale=jnp.linalg.norm(grad_e) * (jnp.linalg.norm(f) + jnp.linalg.norm(m)),
    )


@mods
@settings(max_examples=6, deadline=None)
@given(seed=seeds)
def test_hnn_structure_any_latent(mod, seed):
    kz, kx = jax.random.split(KEY(seed))
    modulated = cached("hnn", mod)
    dot, scale = hnn_residual(modulated, jax.random.normal(kz, (4,)), jax.random.normal(kx, (2,)))
    assert abs(dot) <= 1e-6 * (scale + 1e-12)


@mods
@settings(max_examples=6, deadline=None)
@given(seed=seeds)
def test_gnn_structure_any_latent(mod, seed):
    kz, kx = jax.random.split(KEY(seed))
    modulated = cached("gnn", mod)
    out = gnn_residuals(modulated, jax.random.normal(kz, (4,)), jax.random.normal(kx, (3,)))
    m = np.asarray(out["m"])
    norm_m = np.linalg.norm(m) + 1e-30
    np.testing.assert_allclose(m, m.T, atol=1e-6 * norm_m)
    assert out["eig"].min() >= -1e-6 * norm_m
    assert out["ls"] == 0.0
    assert out["me"] <= 1e-5 * out["scale"]
    assert out["ds"] >= -1e-5 * norm_m
    assert abs(out["de"]) <= 1e-5 * out["scale"]


@mods
@pytest.mark.parametrize("kind", ["hnn", "gnn"])
def test_zero_codes_give_base_exactly(mod, kind):
    modulated = cached(kind, mod)
    base = modulated.base
    out = modulated.modulation.apply(base, jnp.zeros(modulated.hypernet.num_codes))
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(base)
    for a, b in zip(leaves(out), leaves(base)):
        np.testing.assert_array_equal(a, b)


@mods
@pytest.mark.parametrize("kind", ["hnn", "gnn"])
def test_structure_shapes_and_linear_layers(mod, kind):
    modulated = cached(kind, mod)
    z = jax.random.normal(KEY(1), (4,))
    out = modulated(z)
    assert type(out) is type(modulated.base)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(modulated.base)
    for a, b in zip(leaves(out), leaves(modulated.base)):
        assert a.shape == b.shape and a.dtype == b.dtype
    n_layers = len(jm.linear_layers(modulated.base))
    assert n_layers == (3 if kind == "hnn" else 7)
    codes, start = np.asarray(modulated.hypernet(z)), 0
    for i, (new, old) in enumerate(zip(jm.linear_layers(out), jm.linear_layers(modulated.base))):
        changed = not (
            np.array_equal(new.weight, old.weight) and np.array_equal(new.bias, old.bias)
        )
        # Every layer is modulated, except that Shift has nothing to shift in the bias-free
        # GNN core, and MR's core changes exactly where some d = ReLU(code) > 0: its
        # correction U diag(d) Vᵀ (U, V orthonormal columns) is zero iff d = 0.
        if old.bias is not None or isinstance(mod, (jm.FullWeight, jm.RankOne, jm.LowRank)):
            assert changed
        elif isinstance(mod, jm.Shift):
            assert not changed
        else:
            assert isinstance(mod, jm.MultiRank)
            rank = modulated.modulation.bases[i][0].shape[1]  # a bias-free layer's codes: d only
            d = np.maximum(codes[start : start + rank], 0)
            assert changed == bool(np.any(d > 0)), (i, d)
        if isinstance(mod, jm.MultiRank):  # its per-layer codes: d (rank), then s (out, if bias)
            start += modulated.modulation.bases[i][0].shape[1]
            start += 0 if old.bias is None else old.weight.shape[0]
    assert not isinstance(mod, jm.MultiRank) or start == codes.shape[0]


@mods
def test_jit_vmap_and_loop_agree(mod):
    modulated = cached("hnn", mod)
    zs = jax.random.normal(KEY(2), (2, 4))
    x = jnp.array([0.3, -0.5])

    def field(m, z):
        return m(z)(x)

    jitted = jnp.stack([eqx.filter_jit(field)(modulated, z) for z in zs])
    np.testing.assert_allclose(jitted[0], field(modulated, zs[0]), rtol=1e-5, atol=1e-6)
    vmapped = eqx.filter_jit(eqx.filter_vmap(field, in_axes=(None, 0)))(modulated, zs)
    np.testing.assert_allclose(vmapped, jitted, rtol=1e-5, atol=1e-6)
    penalties = eqx.filter_jit(lambda m, zs: jax.vmap(m.penalty)(zs))(modulated, zs)
    looped = jnp.stack([modulated.penalty(z) for z in zs])
    np.testing.assert_allclose(penalties, looped, rtol=1e-5, atol=1e-8)


@mods
def test_latent_gradient_matches_finite_differences(mod):
    modulated32 = cached("hnn", mod)
    with jax.enable_x64(True):
        to64 = lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a

        @eqx.filter_jit
        def grad_and_fd(modulated, z, x):
            modulated = jax.tree_util.tree_map(to64, modulated)

            def loss(z):
                return jnp.sum(modulated(z)(x) ** 2) + modulated.penalty(z)

            h = 1e-6
            fd = jax.vmap(lambda e: (loss(z + e) - loss(z - e)) / (2 * h))(h * jnp.eye(4))
            return jax.grad(loss)(z), fd

        z = jax.random.normal(KEY(3), (4,), jnp.float64)
        grad, fd = grad_and_fd(modulated32, z, jnp.array([0.4, -0.7]))
        assert grad.dtype == jnp.float64 and np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@mods
def test_partition_takes_all_meta_parameters(mod):
    modulated = cached("hnn", mod)
    params, static = eqx.partition(modulated, eqx.is_inexact_array)
    n_params = sum(leaf.size for leaf in jax.tree_util.tree_leaves(params))
    counts = jm.count_parameters(modulated)
    assert counts == {"shared": n_params, "per_task": 4}
    expected = 2 * 8 + 8 + 8 * 8 + 8 + 8 + 1 + 5 * mod.num_codes(modulated.base)
    if isinstance(mod, jm.MultiRank):
        expected += sum(u.size + v.size for u, v in modulated.modulation.bases)
        assert modulated.penalty(jnp.zeros(4)) > 0
    else:
        assert modulated.penalty(jnp.zeros(4)) == 0
    assert n_params == expected
    loss = lambda m: jnp.sum(m(jnp.ones(4))(jnp.ones(2)) ** 2)
    grads = eqx.filter_jit(eqx.filter_grad(loss))(modulated)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_modulations_are_abstract_or_final():
    """No modulation redefines a concrete method of a base; every base is abstract."""
    classes = {type(mod) for mod in MODULATIONS.values()}
    for cls in classes:
        ours = [k for k in cls.__mro__ if k.__module__.startswith("jaxmeta")]
        for i, klass in enumerate(ours):
            for name, value in vars(klass).items():
                if name.startswith("__") or not callable(value):
                    continue
                for base in ours[i + 1 :]:
                    concrete = name in vars(base)
                    concrete = concrete and not getattr(vars(base)[name], "__isabstractmethod__", 0)
                    assert not concrete, f"{klass.__name__}.{name} overrides {base.__name__}.{name}"
        assert all(inspect.isabstract(base) for base in ours[1:]), (cls, ours)
        assert not any(issubclass(cls, other) for other in classes - {cls})


@pytest.mark.parametrize("name", ["rank_one", "low_rank", "multi_rank"])
def test_zero_latent_has_a_gradient(name):
    mod = MODULATIONS[name]
    # Default hypernetwork init: zero latent is (close to) the base and not a saddle.
    modulated = cached("hnn", mod)
    z = jnp.zeros(4)
    loss = lambda z: jnp.sum(modulated(z)(jnp.array([0.3, 0.2])) ** 2)
    grad = jax.jit(jax.grad(loss))(z)
    assert np.linalg.norm(grad) > 0


def test_multi_rank_penalty_and_bases():
    modulated = cached("hnn", MODULATIONS["multi_rank"])
    for u, v in modulated.modulation.bases:
        np.testing.assert_allclose(u.T @ u, jnp.eye(u.shape[1]), atol=1e-5)
        np.testing.assert_allclose(v.T @ v, jnp.eye(v.shape[1]), atol=1e-5)
    # Ranks are clipped to min(out, in): 2 -> 8 (2), 8 -> 8 (2), 8 -> 1 (1).
    assert [u.shape[1] for u, _ in modulated.modulation.bases] == [2, 2, 1]
    zero_bases = eqx.tree_at(
        lambda m: m.modulation.bases,
        modulated,
        jax.tree_util.tree_map(jnp.zeros_like, modulated.modulation.bases),
    )
    g = eqx.filter_jit(eqx.filter_grad(lambda m: m.penalty(jnp.ones(4))))(zero_bases)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(g))


def test_count_and_table():
    model = HNN(2, **SMALL, key=KEY(0))
    assert jm.count_parameters(model) == {"shared": 105, "per_task": 105}
    table = jm.parameter_table(2, width=8, depth=2, latent_dim=4, rank=2)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 7 and "| MR (MultiRank, rank=2) |" in table


class FlaxMLP(fnn.Module):
    width: int = 8

    @fnn.compact
    def __call__(self, x):
        for _ in range(2):
            x = jnp.tanh(fnn.Dense(self.width)(x))
        return fnn.Dense(1)(x)[0]


@mods
def test_flax_and_equinox_agree(mod):
    flax_model = FlaxMLP()
    params = flax_model.init(KEY(0), jnp.zeros(2))
    mlp = jm.mlp_from_flax(params, activation=jnp.tanh, scalar_output=True)
    x = jnp.array([0.3, -1.1])
    np.testing.assert_allclose(mlp(x), flax_model.apply(params, x), rtol=1e-6)
    bound = mod.init(mlp, key=KEY(1))
    n = jm.flax_num_codes(bound, params)
    assert n == bound.num_codes(mlp)
    codes = 0.3 * jax.random.normal(KEY(2), (n,))
    out_flax = flax_model.apply(jm.modulate_flax(bound, params, codes), x)
    out_eqx = bound.apply(mlp, codes)(x)
    np.testing.assert_allclose(out_flax, out_eqx, rtol=1e-5, atol=1e-6)
    back = jm.linears_to_flax(jm.linears_from_flax(params), params)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- errors
def test_errors_latent_and_codes():
    modulated = build("hnn", jm.RankOne())
    with pytest.raises(ValueError, match=r"`z` must be one latent of shape \(4,\).*\(3,\)"):
        modulated(jnp.zeros(3))
    with pytest.raises(ValueError, match=r"`z`.*\(2, 4\)"):
        modulated.penalty(jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"`codes` must have shape \(\d+,\).*\(5,\)"):
        jm.RankOne().apply(modulated.base, jnp.zeros(5))
    other = GNN(1, 1, **SMALL, key=KEY(0))
    with pytest.raises(ValueError, match="`codes` must have shape"):
        modulated.modulation.apply(other, modulated.hypernet(jnp.zeros(4)))
    with pytest.raises(ValueError, match="`hypernet` must output"):
        jm.Modulated(other, modulated.modulation, modulated.hypernet)


@pytest.mark.parametrize("cls", [jm.LowRank, jm.MultiRank])
def test_errors_rank(cls):
    with pytest.raises(ValueError, match="`rank` must be >= 1.*rank=0"):
        cls(rank=0)
    with pytest.raises(ValueError, match="rank=-2"):
        cls(rank=-2)
    with pytest.raises(TypeError, match="`rank` must be an int.*2.5"):
        cls(rank=2.5)
    model = HNN(2, **SMALL, key=KEY(0))
    with pytest.raises(ValueError, match=r"`rank` must be at most .* \(8\), got rank=9"):
        jm.modulate(model, cls(rank=9), key=KEY(0))


def test_errors_multi_rank_bases():
    hnn = HNN(2, **SMALL, key=KEY(0))
    with pytest.raises(ValueError, match="no bases yet"):
        jm.MultiRank(rank=2).apply(hnn, jnp.zeros(jm.MultiRank(rank=2).num_codes(hnn)))
    bound = jm.MultiRank(rank=2).init(hnn, key=KEY(0))
    wider = HNN(2, width=9, depth=2, key=KEY(0))
    with pytest.raises(ValueError, match="does not match the MultiRank bases"):
        bound.apply(wider, jnp.zeros(bound.num_codes(wider)))
    with pytest.raises(ValueError, match="orth_weight.*-1"):
        jm.MultiRank(orth_weight=-1.0)


def test_errors_pytree_and_types():
    with pytest.raises(TypeError, match="at least one eqx.nn.Linear"):
        jm.Shift().num_codes({"w": jnp.ones((3, 3))})
    with pytest.raises(TypeError, match="at least one eqx.nn.Linear"):
        jm.modulate([jnp.ones(3)], jm.FullWeight(), key=KEY(0))
    with pytest.raises(TypeError, match="`modulation` must be an AbstractModulation"):
        jm.modulate(HNN(2, **SMALL, key=KEY(0)), "shift", key=KEY(0))
    with pytest.raises(ValueError, match="`num_codes` must be >= 1"):
        # Shift has nothing to act on in a bias-free layer.
        jm.modulate(eqx.nn.Linear(3, 3, use_bias=False, key=KEY(0)), jm.Shift(), key=KEY(0))
    with pytest.raises(ValueError, match="`latent_dim` must be >= 1"):
        jm.modulate(HNN(2, **SMALL, key=KEY(0)), jm.Shift(), latent_dim=0, key=KEY(0))
    with pytest.raises(ValueError, match=r"`bias` must have shape \(3,\)"):
        jm.Hypernet(2, 3, bias=jnp.zeros(4), key=KEY(0))
    with pytest.raises(TypeError, match="Flax nn.Dense"):
        jm.linears_from_flax({"params": {"w": jnp.ones(3)}})
    with pytest.raises(ValueError, match="no inexact array parameters"):
        jm.count_parameters({"a": 1})
