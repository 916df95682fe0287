"""Meta-learned (modulated) ConCerNet: projection with modulated networks, zero codes, adaptation
(vmapped = looped, latents only), training, argument errors and the CLI end to end."""

import functools
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import concernet_meta
from jaxmeta import conservation as cn
from jaxmeta.modulation import FullWeight, LowRank, RankOne, Shift
from jaxmeta.systems import SpringFamily, SpringMass


@functools.cache
def _tiny(modulation=None, *, dim=2, m=1, weight_scale=1e-1, seed=0):
    # The CLI's widths: the eager initialisation ops compile once for the whole file.
    modulation = RankOne() if modulation is None else modulation
    return cn.MetaConCerNet(
        dim, m, modulation=modulation, latent_dim=3, weight_scale=weight_scale,
        key=jax.random.key(seed),
    )  # fmt: skip


def _family_data(key):
    """Two systems of two trajectories (the shapes of the CLI test: one compiled solve)."""
    k1, k2 = jax.random.split(key)
    family = SpringFamily()
    mu = family.sample_params(k1, 2)
    return family, mu, cn.make_trajectories(family, 2, mu=mu, key=k2)


@eqx.filter_jit
def _orthogonality(model, z_inv, z_dyn, x):
    f = model(z_inv, z_dyn)(x)
    grads = jax.jacrev(model.invariant(z_inv))(x)
    scale = jnp.linalg.norm(model.dynamics(z_dyn)(x)) * jnp.linalg.norm(grads, axis=-1)
    return jnp.linalg.norm(f), jnp.abs(grads @ f), scale


@pytest.mark.parametrize("modulation", [Shift(), RankOne()])
def test_modulated_projected_field_orthogonal_to_modulated_invariant_gradients(modulation):
    """For random base weights, random hypernetworks and random latents, the projected field
    is orthogonal to every ∇g_i(x; z) of the modulated invariant (eq. 6)."""
    for seed in range(2):
        k = jax.random.split(jax.random.key(seed), 5)
        model = _tiny(modulation, dim=3, m=2, weight_scale=1.0, seed=seed)
        z_inv, z_dyn = jax.random.normal(k[1], (2, 3))
        x = jax.random.normal(k[2], (3,))
        norm, dots, scale = _orthogonality(model, z_inv, z_dyn, x)
        assert norm > 1e-3  # not trivially zero
        assert jnp.all(dots <= 1e-5 * (1 + scale))


def test_zero_codes_and_zero_latents_give_the_unmodulated_networks():
    model = _tiny()
    for modulation in (Shift(), RankOne(), FullWeight(), LowRank(2)):
        for base in (model.invariant.base, model.dynamics.base):
            zeros = jnp.zeros(modulation.num_codes(base))
            assert eqx.tree_equal(modulation.apply(base, zeros), base)
    # At initialisation the hypernetworks map z = 0 to the base networks exactly.
    z = jnp.zeros(3)
    x = jnp.array([0.3, -0.7])
    plain = cn.Projected(model.dynamics.base, model.invariant.base)
    assert jnp.array_equal(model(z, z)(x), plain(x))
    assert jnp.array_equal(model.invariant(z)(x), model.invariant.base(x))


def test_vmapped_adaptation_equals_a_loop_and_changes_only_latents():
    k = jax.random.split(jax.random.key(1), 4)
    _, _, data = _family_data(k[0])
    model = _tiny()
    z_inv, z_dyn = 0.1 * jax.random.normal(k[2], (2, 5, 3))
    kw = dict(num_support=2, steps=5, optimiser=optax.adam(1e-2))  # one object: one compile
    out = cn.adapt_meta_concernet(model, z_inv, z_dyn, data.xs, data.dxs, **kw)
    assert out.z_inv.shape == out.z_dyn.shape == (2, 3)
    assert out.losses_inv.shape == out.losses_dyn.shape == (2, 5)
    for i in range(2):  # system i alone (twice: the same shapes, no recompilation)
        pair = jnp.array([i, i])
        one = cn.adapt_meta_concernet(model, z_inv, z_dyn, data.xs[pair], data.dxs[pair], **kw)
        assert jnp.allclose(one.z_inv[0], out.z_inv[i], atol=1e-5)
        assert jnp.allclose(one.z_dyn[0], out.z_dyn[i], atol=1e-5)
    # Base networks and hypernetworks bit-identical; the latents moved from the mean.
    assert eqx.tree_equal(out.meta_model, model)
    x = data.xs[1, 0, 3]  # system 1's adapted model is the meta-model at its latents
    assert jnp.array_equal(out.model(1)(x), model(out.z_inv[1], out.z_dyn[1])(x))
    with pytest.raises(IndexError, match="`i` must be an int in \\[-2, 2\\), got i=2"):
        out.model(2)
    assert jnp.all(jnp.any(out.z_inv != jnp.mean(z_inv, axis=0, keepdims=True), axis=-1))
    assert jnp.all(jnp.any(out.z_dyn != jnp.mean(z_dyn, axis=0, keepdims=True), axis=-1))
    assert jnp.all(jnp.isfinite(out.losses_dyn))


def test_training_loss_falls_on_a_tiny_family():
    k = jax.random.split(jax.random.key(2), 5)
    _, _, data = _family_data(k[0])
    model = _tiny()
    adam = optax.adam(1e-2)
    common = dict(optimiser=adam, epochs=100, batch_trajectories=2, chunk=100)
    s1 = cn.train_meta_invariant(model, data.xs, key=k[2], **common)
    assert s1.latents.shape == (2, 3) and s1.history.shape == (100,)
    assert s1.history[-1] < 0.75 * s1.history[0]
    assert eqx.tree_equal(s1.model.dynamics, model.dynamics)  # stage 1: invariant only
    assert jnp.any(s1.latents != 0)
    s2 = cn.train_meta_dynamics(s1.model, s1.latents, data.xs, data.dxs, key=k[3], **common)
    assert s2.history[-1] < 0.25 * s2.history[0]
    assert eqx.tree_equal(s2.model.invariant, s1.model.invariant)  # frozen


def test_spring_family_at_the_spring_mass_parameters_is_the_spring_mass():
    x = jnp.array([0.4, -0.9])
    spring, family, empty = SpringMass(), SpringFamily(), jnp.zeros(0)
    mu = jnp.array([0.5, 2.0])  # (m, k)
    assert jnp.allclose(spring.vector_field(x, empty), family.vector_field(x, mu))
    assert jnp.allclose(spring.invariant(x, empty), family.invariant(x, mu))
    _, mus, data = _family_data(jax.random.key(3))
    assert mus.shape == (2, 2) and data.xs.shape == (2, 2, 30, 2) and data.ts.shape == (2, 30)
    lo, hi = np.array(family.param_ranges).T  # rows of mu: (m, k) within their ranges
    assert np.all((lo <= np.asarray(mus)) & (np.asarray(mus) <= hi))
    for i in range(2):  # each system's field is tangent to its own energy's level sets
        mu = mus[i]
        x = data.xs[i, 0, 3]
        assert jnp.allclose(data.dxs[i, 0, 3], family.vector_field(x, mu))
        grad = jax.grad(lambda y, mu=mu: family.invariant(y, mu)[0])(x)
        assert jnp.abs(grad @ family.vector_field(x, mu)) < 1e-5
        h0 = family.invariant(data.xs[i, 0, 0], mu)
        assert jnp.allclose(family.invariant(x, mu), h0, rtol=1e-3)


def test_argument_errors():
    with pytest.raises(ValueError, match="latent_dim=0"):
        cn.MetaConCerNet(2, 1, modulation=RankOne(), latent_dim=0, key=jax.random.key(0))
    with pytest.raises(TypeError, match="modulation='ro'"):  # names belong to the registry
        cn.MetaConCerNet(2, 1, modulation="ro", key=jax.random.key(0))
    family = SpringFamily()
    with pytest.raises(ValueError, match="n=0"):
        family.sample_params(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="stiffness"):
        SpringFamily(stiffness=(-1.0, 1.0))
    with pytest.raises(ValueError, match=r"`mu` for spring_family \(m, k\) must be positive"):
        cn.make_trajectories(family, 2, mu=-jnp.ones((2, 2)), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"must have shape \(2,\) or \(systems, 2\)"):
        cn.make_trajectories(family, 2, mu=jnp.ones(3), key=jax.random.key(0))
    model = _tiny()
    xs = jnp.ones((2, 4, 5, 2))
    z = jnp.zeros((3, 3))
    adam = optax.adam(1e-2)
    with pytest.raises(ValueError, match=r"num_support=10"):
        cn.adapt_meta_concernet(model, z, z, xs, xs, optimiser=adam, num_support=10)
    with pytest.raises(ValueError, match=r"num_support=1"):
        cn.adapt_meta_concernet(model, z, z, xs, xs, optimiser=adam, num_support=1)
    with pytest.raises(TypeError, match="`optimiser` must be an optax.GradientTransformation"):
        cn.adapt_meta_concernet(model, z, z, xs, xs, optimiser=1e-2)
    with pytest.raises(ValueError, match="`train_z_dyn` must have shape"):
        cn.adapt_meta_concernet(model, z, jnp.zeros((3, 2)), xs, xs, optimiser=adam)
    with pytest.raises(ValueError, match="`xs` must have shape"):
        cn.train_meta_invariant(
            model, jnp.ones((4, 5, 2)), optimiser=optax.adam(1e-3), epochs=1,
            key=jax.random.key(0),
        )  # fmt: skip
    with pytest.raises(ValueError, match="`latents` must have shape"):
        cn.train_meta_invariant(
            model, xs, optimiser=optax.adam(1e-3), epochs=1, batch_trajectories=2,
            latents=jnp.zeros((5, 3)), key=jax.random.key(0),
        )  # fmt: skip


def test_cli_end_to_end(tmp_path):
    """Two seeds: every summary cell is the mean and population std of the per-seed values,
    each per-seed value the mean over held-out systems, and different seeds give different
    numbers (std > 0)."""
    argv = [
        "--seeds", "0,1", "--epochs", "3", "--train-systems", "2", "--train-trajectories", "2",
        "--test-systems", "2", "--support", "2", "--num-test", "2", "--adapt-steps", "2",
        "--eval-t1", "3", "--eval-points", "30", "--out", str(tmp_path), "--no-progress",
    ]  # fmt: skip
    concernet_meta.main(argv)
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    assert results["seeds"] == [0, 1] and len(runs) == 2
    for method in concernet_meta.METHODS:
        for metric in concernet_meta.METRICS:
            per_seed = [r[f"{metric}_{method}"] for r in runs]
            for r, value in zip(runs, per_seed):
                systems = r["per_system_scores"][method][metric]
                assert len(systems) == 2 and value == pytest.approx(np.mean(systems), rel=1e-12)
            cell = results["summary"][f"{metric}_{method}"]
            mean, std = cell["mean"], cell["std"]
            assert cell["per_seed"] == per_seed
            assert np.isfinite(mean) and std > 0, (method, metric)
            assert mean == pytest.approx(np.mean(per_seed), rel=1e-12)
            assert std == pytest.approx(np.std(per_seed), rel=1e-12)
    assert runs[0]["test_parameters"] != runs[1]["test_parameters"]
    table = (tmp_path / "table.md").read_text()
    assert "Meta-ConCerNet (adapted latents)" in table
    assert "RankOne modulation (ro)" in table  # the default flag, through experiments.registry
    assert (tmp_path / "meta_spring.png").stat().st_size > 0


def test_cli_modulation_names_are_the_registrys(tmp_path, capsys):
    with pytest.raises(SystemExit):
        concernet_meta.main(["--modulation", "rank_one", "--out", str(tmp_path / "out")])
    assert "invalid choice: 'rank_one'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module", ["concernet", "concernet_meta"])
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "--epochs must be > 0, got 0"),
        (["--lr", "-0.1"], "--lr must be > 0, got -0.1"),
        (["--seeds", "0,a"], "--seeds must be comma-separated integers, got '0,a'"),
        (["--seeds", "1,1"], "--seeds must not repeat a seed, got '1,1'"),
        (["--noise", "-1"], "--noise must be >= 0, got -1.0"),
    ],
)
def test_cli_bad_flags_fail_before_any_work(module, argv, message, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"experiments.{module}").main
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(tmp_path / "out")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing generated or written


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("concernet", ["--system", "sprin"], "--system: unknown 'sprin'"),
        ("concernet", ["--eval-points", "2"], "--eval-points must be >= 3, got 2"),
        ("concernet_meta", ["--eval-points", "2"], "--eval-points must be >= 3, got 2"),
        ("concernet_meta", ["--stiffness", "2", "1"], "--stiffness must be LOW HIGH with 0 < LOW"),
        ("concernet_meta", ["--support", "1"], "--support must be >= 2"),
    ],
)
def test_cli_flags_of_one_command_fail_with_status_2(module, argv, message, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"experiments.{module}").main
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
