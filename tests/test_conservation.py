"""ConCerNet: projection (eq. 6), contrastive loss (eq. 4/8), systems, training."""

import diffrax
import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import optax
import pytest
from hypothesis import given, settings

from jaxmeta import conservation as cn


def _mlp(dim, out, key):
    return eqx.nn.MLP(dim, out, 16, 2, activation=jnp.tanh, key=key)


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), dim=st.integers(2, 5), m=st.integers(1, 3))
def test_projected_field_orthogonal_to_invariant_gradients(seed, dim, m):
    m = min(m, dim)
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    field, invariant = _mlp(dim, dim, k1), _mlp(dim, m, k2)
    x = jax.random.normal(k3, (dim,))
    f = cn.Projected(field, invariant)(x)
    grads = jax.jacrev(invariant)(x)
    scale = jnp.linalg.norm(field(x)) * jnp.linalg.norm(grads, axis=-1)
    assert jnp.all(jnp.abs(grads @ f) <= 1e-5 * (1 + scale))
    # Components not along the gradients are untouched: projecting twice changes nothing.
    again = cn.project_out(f, grads)
    assert jnp.allclose(again, f, atol=1e-5)


def test_invariant_constant_along_projected_rollout():
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
        field = eqx.nn.MLP(3, 3, 16, 2, activation=jnp.tanh, dtype=jnp.float64, key=k1)
        invariant = eqx.nn.MLP(3, 2, 16, 2, activation=jnp.tanh, dtype=jnp.float64, key=k2)
        model = cn.project(field, invariant)
        x0 = jax.random.normal(k3, (3,), jnp.float64)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: model(y)),
            diffrax.Tsit5(),
            t0=0.0,
            t1=3.0,
            dt0=0.01,
            y0=x0,
            saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 3.0, 20)),
            stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10),
        )
        g = jax.vmap(invariant)(sol.ys)
        assert jnp.max(jnp.abs(g - g[:1])) < 1e-6
        assert jnp.max(jnp.abs(sol.ys - x0[None])) > 1e-2  # it did move


def test_degenerate_gradients_are_finite():
    field = _mlp(3, 3, jax.random.key(0))
    # Zero gradient at x = 0; second and third gradients dependent on the first.
    invariant = lambda x: jnp.stack([jnp.sum(x**2), 2 * jnp.sum(x**2), jnp.sum(x**2) ** 2])
    model = cn.Projected(field, invariant)
    for x in (jnp.zeros(3), jnp.array([0.3, -0.2, 0.5])):
        value = model(x)
        grad_x = jax.jacfwd(model)(x)
        grad_p = eqx.filter_grad(lambda f, x=x: jnp.sum(cn.Projected(f, invariant)(x) ** 2))(field)
        assert jnp.all(jnp.isfinite(value)) and jnp.all(jnp.isfinite(grad_x))
        assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad_p))
    # Dependent gradients reduce to one direction: the result is still orthogonal to it.
    x = jnp.array([0.3, -0.2, 0.5])
    assert jnp.abs(jnp.dot(model(x), x)) < 1e-5
    basis = cn.gram_schmidt(jax.jacrev(invariant)(x))
    assert jnp.allclose(jnp.linalg.norm(basis, axis=-1), jnp.array([1.0, 0.0, 0.0]), atol=1e-6)
    grads = jax.grad(lambda v: jnp.sum(cn.gram_schmidt(v)))(jnp.zeros((2, 3)))
    assert jnp.all(jnp.isfinite(grads))


def test_more_invariants_than_dimensions_raises():
    model = cn.Projected(_mlp(2, 2, jax.random.key(0)), _mlp(2, 3, jax.random.key(1)))
    with pytest.raises(ValueError, match="m=3 exceeds the state dimension dim=2"):
        model(jnp.ones(2))


def test_argument_errors():
    with pytest.raises(TypeError, match="`field` must be callable"):
        cn.Projected(1.0, jnp.sum)
    with pytest.raises(ValueError, match="`eps` must be positive"):
        cn.Projected(jnp.sin, jnp.sum, eps=0.0)
    with pytest.raises(ValueError, match="`x` must be one state"):
        cn.Projected(jnp.sin, jnp.sum)(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="num_invariants"):
        cn.InvariantNet(2, 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="at least 2 trajectories"):
        cn.contrastive_loss(jnp.sum, jnp.ones((1, 5, 2)))
    with pytest.raises(ValueError, match="`xs` must have shape"):
        cn.contrastive_loss(jnp.sum, jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="`num` must be a positive int"):
        cn.make_trajectories(cn.SpringMass(), 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="`latent_dim`"):
        cn.SpringMass(latent_dim=3)
    with pytest.raises(ValueError, match="`epochs`"):
        cn.train_invariant(
            cn.InvariantNet(2, 1, key=jax.random.key(0)), jnp.ones((4, 3, 2)),
            optimizer=optax.adam(1e-3), epochs=0, batch_trajectories=2, key=jax.random.key(0),
        )  # fmt: skip
    with pytest.raises(TypeError, match="must be a Projected"):
        cn.field_only(jnp.sin)


def test_contrastive_loss_prefers_exact_invariant():
    system = cn.SpringMass()
    data = cn.make_trajectories(system, 10, key=jax.random.key(0))
    exact = cn.contrastive_loss(system.invariant, data.xs)
    net = cn.InvariantNet(2, 1, key=jax.random.key(1))
    assert exact < cn.contrastive_loss(net, data.xs) - 0.1
    # Batch normalisation (eq. 8) is invariant to an affine rescaling of H.
    scaled = cn.contrastive_loss(lambda x: 3 * system.invariant(x) + 1, data.xs)
    assert jnp.allclose(scaled, exact, atol=1e-4)


def test_square_ratio_loss():
    """The authors' training loss: zero for an exact invariant (noise-free data), larger for a
    random network, scale-free without batch normalisation, and equal to a hand count."""
    system = cn.SpringMass()
    data = cn.make_trajectories(system, 10, key=jax.random.key(0))
    ratio = lambda f, **kw: cn.contrastive_loss(f, data.xs, loss="square_ratio", **kw)
    exact = ratio(system.invariant, normalise=False)
    net = cn.InvariantNet(2, 1, key=jax.random.key(1))
    assert exact < 1e-6 < ratio(net, normalise=False)
    scaled = ratio(lambda x: 3 * net(x) + 1, normalise=False)
    assert jnp.allclose(scaled, ratio(net, normalise=False), rtol=1e-4)
    # Two trajectories of two points at h = 0, 1 and 3, 5: anchor 0 -> 1/(1 + 9 + 25), etc.
    h = jnp.array([[0.0, 1.0], [3.0, 5.0]])[..., None]
    d = jnp.array([[0, 1, 9, 25], [1, 0, 4, 16], [9, 4, 0, 4], [25, 16, 4, 0]], float)
    want = jnp.mean(jnp.array([1 / d[0].sum(), 1 / d[1].sum(), 4 / d[2].sum(), 4 / d[3].sum()]))
    assert jnp.allclose(cn.square_ratio_loss_from_latents(h), want, rtol=1e-6)
    with pytest.raises(ValueError, match="`loss` must be one of"):
        cn.contrastive_loss(jnp.sum, data.xs, loss="nope")


def test_systems_conserve_their_invariants():
    for system in (cn.SpringMass(), cn.ChemicalKinetics(), cn.KeplerOrbit(t1=2.0, num_times=20)):
        data = cn.make_trajectories(system, 3, key=jax.random.key(2))
        inv = jax.vmap(jax.vmap(system.invariant))(data.xs)
        assert jnp.max(jnp.abs(inv - inv[:, :1])) < 1e-3, system.name
        assert data.dxs.shape == data.xs.shape
    heat = cn.HeatEquation()
    x = heat.sample_initial_state(jax.random.key(0))
    assert jnp.abs(jnp.sum(heat.field(x))) < 1e-2 * jnp.sum(jnp.abs(heat.field(x)))


def test_end_to_end_spring_concernet_conserves_better():
    """Stage 1 (100 epochs) + stage 2 (5 epochs) on 20 spring trajectories, fixed seeds.

    With a briefly trained dynamics model the baseline drifts off the energy level, while the
    projected model stays on the learned level set: ConCerNet's violation must be lower.
    """
    system = cn.SpringMass(num_trajectories=20)
    k = jax.random.split(jax.random.key(0), 8)
    train = cn.make_trajectories(system, 20, key=k[0])
    test = cn.make_trajectories(system, 10, key=k[1])
    xs = train.xs + 0.01 * jax.random.normal(k[2], train.xs.shape)
    dxs = train.dxs + 0.01 * jax.random.normal(k[3], train.xs.shape)
    adam = optax.adam(1e-3)
    net = cn.InvariantNet(2, 1, key=k[4])
    inv = cn.train_invariant(net, xs, optimizer=adam, epochs=100, key=k[5])
    assert inv.history[-1] < inv.history[0]
    mlp = eqx.nn.MLP(2, 2, 100, 2, activation=jnp.tanh, key=k[6])
    base = cn.train_dynamics(mlp, xs, dxs, optimizer=adam, epochs=5, key=k[7])
    model = cn.Projected(mlp, inv.model)
    ours = cn.train_dynamics(
        model, xs, dxs, optimizer=adam, epochs=5, trainable=cn.field_only(model), key=k[7]
    )
    assert eqx.tree_equal(ours.model.invariant, inv.model)  # the invariant stayed frozen
    v_base = cn.evaluate(base.model, system, test).violation
    v_ours = cn.evaluate(ours.model, system, test).violation
    assert jnp.isfinite(v_ours) and v_ours < 0.5 * v_base


def test_evaluate_metrics_of_true_field_and_of_a_drifting_one():
    """The true field scores ~0 on every metric; a field that slowly grows the energy has
    ``violation_sq`` = mean of the squared invariant drift (the authors' squared metric)."""
    system = cn.SpringMass(t1=6.0, num_times=61)
    truth = cn.make_trajectories(system, 4, key=jax.random.key(3))
    exact = cn.evaluate(system.field, system, truth)
    for value in (exact.mse, exact.violation, exact.violation_sq):
        assert value < 1e-4  # float32 RK4 rounding
    grow = cn.evaluate(lambda x: system.field(x) + 0.05 * x, system, truth)
    # H = |x|^2 grows as H0 e^{0.1 t} exactly (the rotation keeps |x| otherwise fixed).
    h0 = jax.vmap(system.invariant)(truth.xs[:, 0])[:, None, 0]
    drift = h0 * (jnp.exp(0.1 * truth.ts)[None, :] - 1)
    assert jnp.allclose(grow.violation_sq, jnp.mean(drift**2), rtol=1e-3)
    assert jnp.allclose(grow.violation, jnp.mean(jnp.abs(drift)), rtol=1e-3)
