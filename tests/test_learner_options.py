"""Learner options the paper leaves open: optimisers as objects (through checkpoints), the
training latents' optimiser state kept across meta-steps, and the later version's locality
regulariser."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import small_dataset

from jaxmeta import meta, modulation, nn

SMALL = dict(tasks_per_step=2, inner_steps=2, adapt_steps=3)
make_model = lambda k: nn.HNN(2, width=8, depth=1, key=k)


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def _resumes_bitwise(learner, dataset, tmp_path):
    kw = dict(key=jax.random.key(7), val_every=2, progress=False)
    full = meta.fit(learner, make_model, dataset, epochs=4, checkpoint_dir=tmp_path / "a", **kw)
    meta.fit(learner, make_model, dataset, epochs=2, checkpoint_dir=tmp_path / "b", **kw)
    resumed = meta.fit(learner, make_model, dataset, epochs=4, checkpoint_dir=tmp_path / "b", **kw)
    for a, b in zip(_leaves(full.state) + _leaves(full.best_state),
                    _leaves(resumed.state) + _leaves(resumed.best_state)):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert full.history == resumed.history
    return full


def test_persistent_latent_state_resumes_bitwise(dataset, tmp_path):
    learner = meta.AutoDecoding(modulation.RankOne(), latent_dim=4, latent_state="persistent",
                                **SMALL)  # fmt: skip
    full = _resumes_bitwise(learner, dataset, tmp_path)
    adam = full.state.latent_opt_state[0]  # (ScaleByAdamState, EmptyState) of optax.adam
    num_train = dataset.train.num_functions
    assert adam.count.shape == (num_train,)
    # 4 epochs of 3 meta-steps of 2 functions: every function visited 4 times, 2 steps each.
    np.testing.assert_array_equal(adam.count, np.full(num_train, 4 * SMALL["inner_steps"]))
    assert adam.mu.shape == full.state.latents.shape
    fresh = meta.fit(eqx.tree_at(lambda m: m.latent_state, learner, "fresh"), make_model,
                     dataset, epochs=4, key=jax.random.key(7), val_every=2, progress=False)  # fmt: skip
    assert fresh.state.latent_opt_state is None
    assert not np.array_equal(fresh.state.latents, full.state.latents)


def test_persistent_first_visit_equals_fresh(dataset):
    # Before any latent is visited twice, keeping the state changes nothing: the first
    # meta-step of both is the same computation.
    kw = dict(latent_dim=4, **SMALL)
    fresh = meta.AutoDecoding(modulation.RankOne(), **kw)
    kept = meta.AutoDecoding(modulation.RankOne(), latent_state="persistent", **kw)
    xs, dxs = meta.flatten_support(dataset.train)
    idx = jnp.array([0, 3])
    outs = []
    for learner in (fresh, kept):
        state = learner.init(make_model, dataset.train.num_functions, key=jax.random.key(0))
        outs.append(learner.meta_step(state, xs[idx], dxs[idx], idx)[0])
    np.testing.assert_allclose(outs[0].latents, outs[1].latents, rtol=1e-6, atol=1e-7)


def test_optimiser_objects_round_trip_through_checkpoints(dataset, tmp_path):
    outer = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1e-2, momentum=0.9))
    learner = meta.MAML(outer_optimiser=outer, inner_optimiser=optax.sgd(1e-2),
                        adapt_optimiser=optax.sgd(1e-2), **SMALL)  # fmt: skip
    _resumes_bitwise(learner, dataset, tmp_path)
    # A learner with another outer optimiser is refused, naming the field.
    other = eqx.tree_at(lambda m: m.outer_optimiser, learner, optax.chain(
        optax.clip_by_global_norm(1.0), optax.sgd(1e-2, momentum=0.8)))  # fmt: skip
    with pytest.raises(ValueError, match=r"differs in: learner\.outer_optimiser\)"):
        meta.fit(other, make_model, dataset, epochs=4, key=jax.random.key(7), val_every=2,
                 progress=False, checkpoint_dir=tmp_path / "b")  # fmt: skip
    # A checkpoint written before optimisers were fields (one digest for the whole learner)
    # is refused by name too.
    header = json.loads((tmp_path / "b" / "last.json").read_text())
    header["config"]["learner"] = "0" * 64
    (tmp_path / "b" / "last.json").write_text(json.dumps(header))
    with pytest.raises(ValueError, match=r"differs in: learner\)"):
        meta.fit(learner, make_model, dataset, epochs=4, key=jax.random.key(7), val_every=2,
                 progress=False, checkpoint_dir=tmp_path / "b")  # fmt: skip


def _problem(latent_penalty=0.0, hypernet_penalty=0.0):
    # RankOne: smooth in the hypernetwork (MR's ReLU codes would put kinks in the way of the
    # finite differences of the whole loss).
    learner = meta.AutoDecoding(modulation.RankOne(), latent_dim=4,
                                latent_penalty=latent_penalty, hypernet_penalty=hypernet_penalty,
                                **SMALL)  # fmt: skip
    state = learner.init(make_model, 6, key=jax.random.key(0))
    z = 0.3 * jax.random.normal(jax.random.key(1), (2, 4))
    xs = jax.random.normal(jax.random.key(2), (2, 12, 2))
    dxs = jax.random.normal(jax.random.key(3), (2, 12, 2))
    return learner, state.params, z, xs, dxs


def _fd(f, x, direction, eps):
    return (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)


@pytest.mark.parametrize("lam", [1e-2, 3.0])
def test_the_latent_penalty_gradient_matches_finite_differences(lam):
    learner, modulated, z, xs, dxs = _problem(latent_penalty=lam)
    plain, *_ = _problem()
    d = jax.random.normal(jax.random.key(4), z[0].shape)
    loss = lambda q: learner._loss(modulated, q, xs[0], dxs[0])
    extra = lambda q: loss(q) - plain._loss(modulated, q, xs[0], dxs[0])
    # The penalty alone (a quadratic: central differences are exact up to rounding, which a
    # wide step keeps small beside the difference of two losses).
    np.testing.assert_allclose(jnp.vdot(jax.grad(extra)(z[0]), d), _fd(extra, z[0], d, 1.0),
                               rtol=1e-3)  # fmt: skip
    np.testing.assert_allclose(jax.grad(extra)(z[0]), 2 * lam * z[0], rtol=1e-5)
    # The whole latent loss, along a random direction.
    np.testing.assert_allclose(jnp.vdot(jax.grad(loss)(z[0]), d), _fd(loss, z[0], d, 1e-2),
                               rtol=2e-2)  # fmt: skip


@pytest.mark.parametrize("lam", [1e-3, 1.0])
def test_the_hypernet_penalty_gradient_matches_finite_differences(lam):
    learner, modulated, z, xs, dxs = _problem(hypernet_penalty=lam)
    plain, *_ = _problem()
    # Away from its small initial scale, so the penalty's share is well above rounding.
    weight = 0.3 * jax.random.normal(jax.random.key(6), modulated.hypernet.linear.weight.shape)
    d = jax.random.normal(jax.random.key(5), weight.shape)
    with_weight = lambda w: eqx.tree_at(lambda m: m.hypernet.linear.weight, modulated, w)
    outer = lambda w: learner._outer_loss(with_weight(w), z, xs, dxs)
    extra = lambda w: outer(w) - plain._outer_loss(with_weight(w), z, xs, dxs)
    np.testing.assert_allclose(jnp.vdot(jax.grad(extra)(weight), d), _fd(extra, weight, d, 1.0),
                               rtol=1e-3)  # fmt: skip
    np.testing.assert_allclose(jax.grad(extra)(weight), 2 * lam * weight, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(jnp.vdot(jax.grad(outer)(weight), d), _fd(outer, weight, d, 1e-2),
                               rtol=2e-2)  # fmt: skip


def test_a_strong_latent_penalty_contracts_the_training_latents(dataset):
    base = meta.AutoDecoding(modulation.RankOne(), latent_dim=4, **SMALL)
    strong = eqx.tree_at(lambda m: m.latent_penalty, base, 10.0)
    spread = {}
    for name, learner in (("base", base), ("strong", strong)):
        result = meta.fit(learner, make_model, dataset, epochs=6, key=jax.random.key(1),
                          val_every=6, progress=False)  # fmt: skip
        z = result.state.latents
        spread[name] = float(jnp.median(jnp.linalg.norm(z - z.mean(0, keepdims=True), axis=1)))
    assert spread["strong"] < 0.5 * spread["base"], spread
