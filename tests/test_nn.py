"""HNN and GENERIC NN: structure for random weights, grad modes, input checks."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxmeta.nn import GNN, HNN
from jaxmeta.systems import generic_degeneracy, generic_field

SMALL = dict(width=12, depth=2)
seeds = st.integers(0, 2**31 - 1)
# RBG keys: far cheaper to compile than threefry for the many small eager inits here.
KEY = functools.partial(jax.random.key, impl="rbg")


@eqx.filter_jit
def hnn_residual(model, x):
    grad_h = jax.grad(model.energy)(x)
    return jnp.dot(grad_h, model(x)), jnp.dot(grad_h, grad_h)


@eqx.filter_jit
def gnn_checks(model, x):
    """Everything the GENERIC structure promises at one state."""
    m = model.friction(x)
    grad_e = jax.grad(model.energy)(x)
    grad_s = jax.grad(model.entropy)(x)
    f = model(x)
    res_ls, res_me = generic_degeneracy(
        model.energy, model.entropy, model.poisson, model.friction, x
    )
    return dict(
        m=m,
        eig=jnp.linalg.eigvalsh(m),
        res_ls=res_ls,
        res_me=res_me,
        ds=jnp.dot(grad_s, f),
        de=jnp.dot(grad_e, f),
        scale_e=jnp.linalg.norm(grad_e) * jnp.linalg.norm(f),
        autodiff=generic_field(model.energy, model.entropy, model.poisson, model.friction, x),
        field=f,
        grad_e=grad_e,
    )


def assert_generic(out, rtol=1e-5):
    m = np.asarray(out["m"])
    norm_m = np.linalg.norm(m) + 1e-30
    np.testing.assert_allclose(m, m.T, atol=1e-6 * norm_m)
    assert out["eig"].min() >= -1e-6 * norm_m
    assert out["res_ls"] == 0.0
    assert out["res_me"] <= rtol * norm_m * (np.linalg.norm(out["grad_e"]) + 1e-30)
    assert out["ds"] >= -rtol * (abs(out["ds"]) + norm_m)
    assert abs(out["de"]) <= rtol * (out["scale_e"] + 1e-30)
    np.testing.assert_allclose(out["field"], out["autodiff"], rtol=1e-4, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_hnn_energy_conserving_field(seed):
    kx, km = jax.random.split(KEY(seed))
    model = HNN(4, **SMALL, key=km)
    x = jax.random.normal(kx, (4,))
    dot, scale = hnn_residual(model, x)
    assert abs(dot) <= 1e-6 * (scale + 1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=seeds)
def test_gnn_generic_structure(seed):
    kx, km = jax.random.split(KEY(seed))
    model = GNN(1, 2, **SMALL, key=km)
    assert_generic(gnn_checks(model, jax.random.normal(kx, (4,))))


def test_gnn_parts():
    model = GNN(1, 2, **SMALL, key=KEY(0))
    x = jnp.array([0.1, -0.4, 1.0, 2.0])
    np.testing.assert_array_equal(jax.grad(model.entropy)(x), jnp.array([0.0, 0.0, 1.0, 1.0]))
    l_mat = model.poisson(x)
    np.testing.assert_array_equal(l_mat, -l_mat.T)
    np.testing.assert_array_equal(l_mat[:2, :2], jnp.array([[0.0, 1.0], [-1.0, 0.0]]))
    assert model.friction_core.bias is None
    assert model.state_dim == 4


@pytest.mark.parametrize("cls, args", [(HNN, (2,)), (GNN, (1, 1))])
def test_grad_mode_forward_equals_reverse(cls, args):
    key = KEY(1)
    rev = cls(*args, **SMALL, key=key)
    fwd = cls(*args, **SMALL, grad_mode="forward", key=key)
    xs = jax.random.normal(KEY(2), (7, rev.state_dim))

    @eqx.filter_jit
    def field_and_grad(model):
        def loss(m):
            return jnp.mean(jax.vmap(m)(xs) ** 2)

        return jax.vmap(model)(xs), eqx.filter_grad(loss)(model)

    (f_rev, g_rev), (f_fwd, g_fwd) = field_and_grad(rev), field_and_grad(fwd)
    np.testing.assert_allclose(f_fwd, f_rev, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(g_fwd), jax.tree_util.tree_leaves(g_rev)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_hnn_default_size_and_partition():
    model = eqx.filter_eval_shape(HNN, 2, key=KEY(0))
    assert [lay.weight.shape for lay in model.mlp.layers] == [(100, 2)] + [(100, 100)] * 3 + [
        (1, 100)
    ]
    assert model.grad_mode == "reverse"
    params, _ = eqx.partition(HNN(2, **SMALL, key=KEY(0)), eqx.is_inexact_array)
    assert len(jax.tree_util.tree_leaves(params)) == 6


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda k: HNN(3, key=k), ValueError, "state_dim.*3"),
        (lambda k: HNN(0, key=k), ValueError, "state_dim.*0"),
        (lambda k: HNN(2.0, key=k), TypeError, "state_dim"),
        (lambda k: HNN(2, width=0, key=k), ValueError, "width"),
        (lambda k: HNN(2, depth=-1, key=k), ValueError, "depth"),
        (lambda k: HNN(2, grad_mode="central", key=k), ValueError, "grad_mode.*central"),
        (lambda k: GNN(0, 1, key=k), ValueError, "num_q"),
        (lambda k: GNN(1, 0, key=k), ValueError, "num_s"),
        (lambda k: GNN(1, 1, grad_mode="jvp", key=k), ValueError, "grad_mode.*jvp"),
    ],
)
def test_bad_construction(build, error, match):
    with pytest.raises(error, match=match):
        build(KEY(0))


@pytest.mark.parametrize("model", [HNN(2, **SMALL, key=KEY(0)), GNN(1, 1, **SMALL, key=KEY(0))])
def test_bad_state_shape(model):
    with pytest.raises(ValueError, match=r"`x` must be one state of shape \(\d,\)"):
        model(jnp.zeros((5, model.state_dim)))
    with pytest.raises(ValueError, match="`x`"):
        model.energy(jnp.zeros(model.state_dim + 1))
