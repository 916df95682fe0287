"""ConCerNet's heat-equation stage (§4.3): autoencoder, latent map (eq. 9-10), decoded metrics,
and the CLI end to end."""

import functools
import json

import jax
import jax.numpy as jnp
import optax
import pytest

from experiments import concernet
from jaxmeta import conservation as cn
from jaxmeta.systems import HeatEquation

MU = jnp.zeros(0)  # the heat equation has no parameters


def test_autoencoder_shapes_and_latent_map_shapes():
    ae = cn.Autoencoder(101, 9, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (101,))
    assert ae.encode(x).shape == (9,)
    assert ae.decode(ae.encode(x)).shape == (101,)
    assert ae(x).shape == (101,)
    # The authors' AE1D sizes: 101 -> 32 -> 16 -> 9 -> 16 -> 32 -> 101.
    sizes = [(lay.in_features, lay.out_features) for lay in ae.encoder.layers + ae.decoder.layers]
    assert sizes == [(101, 32), (32, 16), (16, 9), (9, 16), (16, 32), (32, 101)]
    xs = jax.random.normal(jax.random.key(2), (3, 4, 101))
    z, dz = cn.to_latent(ae, xs, 2 * xs)
    assert z.shape == dz.shape == (3, 4, 9)
    assert jnp.allclose(z[1, 2], ae.encode(xs[1, 2]), atol=1e-6)
    z1, dz1 = cn.to_latent(ae, x, x)  # a single state works too
    assert z1.shape == dz1.shape == (9,)


def test_latent_derivative_is_the_chain_rule_along_a_heat_trajectory():
    """ż from `to_latent` equals the central difference of E(x(t)) along an exact heat
    trajectory x(t) = exp(tA) x0 (the discretised heat equation is linear, ẋ = A x)."""
    with jax.enable_x64(True):
        heat, mu = HeatEquation(), jnp.zeros(0, jnp.float64)  # mu: the dtype of the states
        x0 = heat.sample_initial_state(jax.random.key(0), mu)
        assert x0.dtype == jnp.float64
        a = jax.jacfwd(heat.vector_field)(x0, mu)
        ae = cn.Autoencoder(101, 9, dtype=jnp.float64, key=jax.random.key(1))
        # Fourth-order central difference: the stiff modes (rate up to 4/dy² = 400) make a
        # second-order stencil's truncation error ~h²·400³ too large at small t.
        h = 1e-5
        ts = jnp.array([0.01, 0.05, 0.2])
        path = lambda t: jax.scipy.linalg.expm(t * a) @ x0
        xs = jax.vmap(path)(ts)
        z, dz = cn.to_latent(ae, xs, xs @ a.T)
        e = lambda s: jax.vmap(lambda t: ae.encode(path(t)))(ts + s * h)
        fd = (8 * (e(1) - e(-1)) - (e(2) - e(-2))) / (12 * h)
        assert jnp.allclose(z, jax.vmap(ae.encode)(xs))
        assert jnp.max(jnp.abs(dz)) > 1e-2  # a non-trivial derivative
        assert jnp.allclose(dz, fd, rtol=1e-6, atol=1e-8)


def test_heat_data_keep_the_total_and_the_pulse_data_move_the_centroid():
    """Both initial-state families conserve Σu along the reference solve. Over the authors'
    window t ∈ [0, 10] the heat of a pulse reaches the insulated ends and its centroid
    Σ y u / Σ u moves about halfway to the rod's centre, so Σu is the only conserved moment of
    the data; over the bumps' window t ∈ [0, 1] the centroid moves by under 5 %: a second,
    spurious near-invariant a contrastive loss can learn instead."""
    y = jnp.linspace(-5.0, 5.0, 101)
    pulse = HeatEquation(num_times=3)
    bumps = HeatEquation(initial="bumps", t1=1.0, num_times=3)
    for heat, shift in ((pulse, (0.3, 0.7)), (bumps, (0.0, 0.05))):
        xs = cn.make_trajectories(heat, 4, key=jax.random.key(0)).xs
        total = jnp.sum(xs, axis=-1)
        assert jnp.max(jnp.abs(total[:, -1] / total[:, 0] - 1)) < 1e-5, heat.initial
        centroid = jnp.sum(xs * y[None, None], axis=-1) / total
        moved = jnp.abs(centroid[:, -1] - centroid[:, 0]) / jnp.abs(centroid[:, 0])
        assert jnp.all((shift[0] < moved) & (moved < shift[1])), (heat.initial, moved)
    x0 = jax.vmap(pulse.sample_initial_state, (0, None))(
        jax.random.split(jax.random.key(1), 64), MU
    )
    assert x0.shape == (64, 101)
    # One unit-height pulse with its peak within [-1, 1] (the nearest node within dy/2).
    assert jnp.all(jnp.max(x0, axis=-1) > 0.98) and jnp.all(jnp.max(x0, axis=-1) <= 1.0)
    assert jnp.all(jnp.abs(y[jnp.argmax(x0, axis=-1)]) <= 1.0 + 1e-6)


def test_training_reduces_reconstruction_loss():
    heat = HeatEquation(num_times=5, num_trajectories=6)
    data = cn.make_trajectories(heat, 6, key=jax.random.key(0))
    ae = cn.Autoencoder(101, 9, key=jax.random.key(1))
    fit = cn.train_autoencoder(
        ae, data.xs, optimiser=optax.adam(1e-3), epochs=200, batch_trajectories=3,
        key=jax.random.key(2),
    )  # fmt: skip
    assert fit.history.shape == (200,)
    err = lambda model: jnp.mean((jax.vmap(jax.vmap(model))(data.xs) - data.xs) ** 2)
    assert err(fit.model) < 0.2 * err(ae)
    assert fit.history[-1] < 0.2 * fit.history[0]


def test_evaluate_with_an_autoencoder_decodes_and_scores_in_the_original_space():
    """A zero latent field keeps z = E(x0), so every decoded state is D(E(x0)): the metrics
    are then the reconstruction error against the truth and the drift of Σu of D(E(x0))."""
    heat = HeatEquation(t1=0.2, num_times=6)
    truth = cn.make_trajectories(heat, 2, key=jax.random.key(0))
    ae = cn.Autoencoder(101, 9, key=jax.random.key(1))
    law = functools.partial(heat.invariant, mu=MU)
    m = cn.evaluate(jnp.zeros_like, law, truth, autoencoder=ae)
    recon = jax.vmap(ae)(truth.xs[:, 0])
    assert m.rollouts.shape == truth.xs.shape
    assert jnp.allclose(m.rollouts, jnp.broadcast_to(recon[:, None], truth.xs.shape), atol=1e-5)
    assert jnp.allclose(m.mse, jnp.mean((recon[:, None] - truth.xs) ** 2), rtol=1e-5)
    sums = jnp.sum(truth.xs, axis=-1)  # true invariant, per trajectory and time
    drift = jnp.sum(recon, axis=-1)[:, None] - sums[:, :1]
    assert jnp.allclose(m.violation, jnp.mean(jnp.abs(drift)), rtol=1e-4)
    want_sq = jnp.mean((jnp.sum(recon, axis=-1)[:, None] - sums) ** 2)
    assert jnp.allclose(m.violation_sq, want_sq, rtol=1e-4)


def test_argument_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`initial` must be 'pulse' or 'bumps', got initial='x'"):
        HeatEquation(initial="x")
    with pytest.raises(ValueError, match="`code_dim` must be an int in \\[1, dim=101\\]"):
        cn.Autoencoder(101, 0, key=key)
    with pytest.raises(ValueError, match="code_dim=-3"):
        cn.Autoencoder(101, -3, key=key)
    with pytest.raises(ValueError, match="code_dim=102"):
        cn.Autoencoder(101, 102, key=key)
    with pytest.raises(ValueError, match="`dim` must be a positive int"):
        cn.Autoencoder(0, 1, key=key)
    with pytest.raises(ValueError, match="`widths` must be positive ints"):
        cn.Autoencoder(101, 9, widths=(32, 0), key=key)
    ae = cn.Autoencoder(101, 9, key=key)
    wrong = jnp.zeros((2, 3, 100))
    with pytest.raises(ValueError, match="state dimension 101, got shape \\(2, 3, 100\\)"):
        cn.to_latent(ae, wrong, wrong)
    with pytest.raises(ValueError, match="same shape"):
        cn.to_latent(ae, jnp.zeros((2, 101)), jnp.zeros((3, 101)))
    with pytest.raises(TypeError, match="`ae` must be an Autoencoder"):
        cn.to_latent(cn.InvariantNet(101, 1, key=key), jnp.zeros(101), jnp.zeros(101))
    adam = optax.adam(1e-3)
    with pytest.raises(ValueError, match="state dimension 101"):
        cn.train_autoencoder(ae, wrong, optimiser=adam, epochs=1, batch_trajectories=1, key=key)
    with pytest.raises(ValueError, match="`xs` must have shape \\(traj, time, dim\\)"):
        cn.train_autoencoder(ae, jnp.zeros((4, 101)), optimiser=adam, epochs=1, key=key)
    with pytest.raises(ValueError, match="`epochs` must be >= 1, got epochs=0"):
        cn.train_autoencoder(ae, jnp.zeros((2, 3, 101)), optimiser=adam, epochs=0, key=key)
    heat = HeatEquation()
    law = functools.partial(heat.invariant, mu=MU)
    truth = cn.Trajectories(xs=wrong, dxs=wrong, ts=jnp.linspace(0.0, 1.0, 3))
    with pytest.raises(ValueError, match="`truth.xs` must end in"):
        cn.evaluate(jnp.zeros_like, law, truth, autoencoder=ae)
    ok = cn.Trajectories(xs=jnp.zeros((2, 3, 101)), dxs=jnp.zeros((2, 3, 101)), ts=truth.ts)
    with pytest.raises(TypeError, match="`invariant` must be the true invariant"):
        cn.evaluate(jnp.zeros_like, heat, ok, autoencoder=ae)  # a system, not its law
    with pytest.raises(TypeError, match="`autoencoder` must be an Autoencoder"):
        cn.evaluate(jnp.zeros_like, law, ok, autoencoder=cn.InvariantNet(101, 1, key=key))


@pytest.mark.parametrize(
    "ics, data",
    [  # the pulse data (100 trajectories) are tested in the default run by the data test above
        pytest.param("pulse", "trained on t in [0, 10], 100", marks=pytest.mark.slow),
        ("bumps", "trained on t in [0, 1], 50"),
    ],
)
def test_cli_heat_end_to_end(tmp_path, ics, data):
    out = tmp_path / "heat"
    argv = [
        "--system", "heat", "--seeds", "0", "--epochs", "2", "--ae-epochs", "3",
        "--num-test", "2", "--eval-points", "11", "--heat-ics", ics, "--no-progress",
        "--out", str(out),
    ]  # fmt: skip
    concernet.main(argv)
    results = json.loads((out / "results.json").read_text())
    run = results["results"]["heat"]["runs"][0]
    for k in ("mse_baseline", "mse_concernet", "violation_sq_baseline", "violation_sq_concernet"):
        assert jnp.isfinite(run[k]) and run[k] > 0, k
    assert set(run["final_loss"]) == {"autoencoder", "invariant", "baseline", "concernet"}
    assert results["meta"]["config"]["ae_epochs"] == 3
    table = (out / "table.md").read_text()
    assert "| Heat equation | 0.133 ± 0.054 |" in table and "9-dim autoencoder latent" in table
    assert f"heat: {ics} initial states, {data} trajectories" in table
    assert (out / "heat_rollouts.png").exists() and (out / "heat_invariant.png").exists()


# Slow (~30 s): the projection onto an invariant is tested in the default run by
# tests/test_conservation.py (orthogonality, invariant kept along a projected rollout).
@pytest.mark.slow
def test_cli_oracle_projects_onto_the_exact_invariant(tmp_path):
    # `--invariant true` skips stage 1 and projects onto the exact law: the rollout keeps it
    # to RK4 tolerance whatever the (barely trained) field, and the reported correlation of
    # the projected invariant with the true one is 1.
    out = tmp_path / "oracle"
    argv = [
        "--system", "spring", "--seeds", "0", "--epochs", "2", "--num-test", "2",
        "--eval-t1", "3", "--eval-points", "31", "--invariant", "true", "--no-progress",
        "--out", str(out),
    ]  # fmt: skip
    concernet.main(argv)
    results = json.loads((out / "results.json").read_text())
    run = results["results"]["spring"]["runs"][0]
    assert run["final_loss"]["invariant"] is None
    assert run["invariant_corr"] == pytest.approx([1.0], abs=1e-6)
    assert run["violation_concernet"] < 1e-4 < run["violation_baseline"]
    assert "**Oracle**" in (out / "table.md").read_text()
