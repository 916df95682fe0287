"""ConCerNet: projection (eq. 6), contrastive loss (eq. 4/8), its systems (`jaxmeta.systems`'
conserved systems) and their data, training, scoring."""

import functools

import diffrax
import equinox as eqx
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import optax
import pytest
from hypothesis import given, settings

from jaxmeta import conservation as cn, rollout, systems

MU = jnp.zeros(0)  # the empty parameters of a system without any


def _field(system, mu=MU):
    return functools.partial(system.vector_field, mu=mu)


def _law(system, mu=MU):
    return functools.partial(system.invariant, mu=mu)


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
    again = cn.Projected(lambda y: f, invariant)(x)
    assert jnp.allclose(again, f, atol=1e-5)


def test_invariant_constant_along_projected_rollout():
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
        field = eqx.nn.MLP(3, 3, 16, 2, activation=jnp.tanh, dtype=jnp.float64, key=k1)
        invariant = eqx.nn.MLP(3, 2, 16, 2, activation=jnp.tanh, dtype=jnp.float64, key=k2)
        model = cn.Projected(field, invariant)
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
    # Dependent gradients reduce to one direction (the two dependent rows are dropped): the
    # result is the field minus its component along x alone.
    x = jnp.array([0.3, -0.2, 0.5])
    assert jnp.abs(jnp.dot(model(x), x)) < 1e-5
    e = x / jnp.linalg.norm(x)
    assert jnp.allclose(model(x), field(x) - jnp.dot(field(x), e) * e, atol=1e-6)
    # Two zero gradients (x = 0, any invariants): the field is kept, with finite gradients.
    pair = lambda y: jnp.stack([jnp.sum(y**2), jnp.sum(y**4)])
    zero = jnp.zeros(3)
    assert jnp.array_equal(cn.Projected(field, pair)(zero), field(zero))
    grads = jax.jacrev(lambda y: jnp.sum(cn.Projected(field, pair)(y)))(zero)
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
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`num` must be >= 1, got num=0"):
        cn.make_trajectories(systems.SpringMass(), 0, key=key)
    with pytest.raises(TypeError, match="`system` must be an AbstractConservedSystem"):
        cn.make_trajectories(systems.MassSpring(), 2, key=key)
    with pytest.raises(ValueError, match=r"`mu` for spring must have shape \(0,\)"):
        cn.make_trajectories(systems.SpringMass(), 2, mu=jnp.ones(2), key=key)
    with pytest.raises(ValueError, match="`num_invariants` must lie in \\[1, state_dim=2\\]"):
        systems.SpringMass(num_invariants=3)
    with pytest.raises(ValueError, match="`num_times` must be >= 3, got num_times=2"):
        systems.ChemicalKinetics(num_times=2)
    with pytest.raises(ValueError, match="`rtol` must be positive and finite, got rtol=0.0"):
        systems.KeplerOrbit(rtol=0.0)
    with pytest.raises(ValueError, match="`t1` must be positive and finite, got t1=-1.0"):
        systems.SpringMass(t1=-1.0)
    adam = optax.adam(1e-3)
    net, xs = cn.InvariantNet(2, 1, key=key), jnp.ones((4, 3, 2))
    with pytest.raises(ValueError, match="`epochs`"):
        cn.train_invariant(net, xs, optimiser=adam, epochs=0, batch_trajectories=2, key=key)
    with pytest.raises(TypeError, match="`optimiser` must be an optax.GradientTransformation"):
        cn.train_invariant(net, xs, optimiser=1e-3, epochs=1, batch_trajectories=2, key=key)
    with pytest.raises(ValueError, match="batch_trajectories=5"):
        cn.train_invariant(net, xs, optimiser=adam, epochs=1, batch_trajectories=5, key=key)
    with pytest.raises(TypeError, match="must be a Projected"):
        cn.field_only(jnp.sin)
    spring = systems.SpringMass()
    truth = cn.make_trajectories(spring, 2, key=key)
    with pytest.raises(TypeError, match="`invariant` must be the true invariant"):
        cn.evaluate(jnp.sin, spring, truth)  # the system, not its law
    with pytest.raises(TypeError, match="substeps=1.5"):
        cn.evaluate(jnp.sin, _law(spring), truth, substeps=1.5)


def test_contrastive_loss_prefers_exact_invariant():
    system = systems.SpringMass()
    data = cn.make_trajectories(system, 10, key=jax.random.key(0))
    exact = cn.contrastive_loss(_law(system), data.xs)
    net = cn.InvariantNet(2, 1, key=jax.random.key(1))
    assert exact < cn.contrastive_loss(net, data.xs) - 0.1
    # Batch normalisation (eq. 8) is invariant to an affine rescaling of H.
    scaled = cn.contrastive_loss(lambda x: 3 * _law(system)(x) + 1, data.xs)
    assert jnp.allclose(scaled, exact, atol=1e-4)


def test_square_ratio_loss():
    """The authors' training loss: zero for an exact invariant (noise-free data), larger for a
    random network, scale-free without batch normalisation, and equal to a hand count."""
    system = systems.SpringMass()
    data = cn.make_trajectories(system, 10, key=jax.random.key(0))
    ratio = lambda f, **kw: cn.contrastive_loss(f, data.xs, loss="square_ratio", **kw)
    exact = ratio(_law(system), normalise=False)
    net = cn.InvariantNet(2, 1, key=jax.random.key(1))
    assert exact < 1e-6 < ratio(net, normalise=False)
    scaled = ratio(lambda x: 3 * net(x) + 1, normalise=False)
    assert jnp.allclose(scaled, ratio(net, normalise=False), rtol=1e-4)
    # Two trajectories of two points at h = 0, 1 and 3, 5 (the identity as invariant of 1-d
    # states, no normalisation): anchor 0 -> 1/(1 + 9 + 25), etc.
    h = jnp.array([[0.0, 1.0], [3.0, 5.0]])[..., None]
    d = jnp.array([[0, 1, 9, 25], [1, 0, 4, 16], [9, 4, 0, 4], [25, 16, 4, 0]], float)
    want = jnp.mean(jnp.array([1 / d[0].sum(), 1 / d[1].sum(), 4 / d[2].sum(), 4 / d[3].sum()]))
    got = cn.contrastive_loss(lambda x: x, h, loss="square_ratio", normalise=False)
    assert jnp.allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="`loss` must be one of"):
        cn.contrastive_loss(jnp.sum, data.xs, loss="nope")


def test_systems_conserve_their_invariants():
    """Each system's data keep its invariants to the bound its solver allows (float32, so
    ``eps = 2^-23``; ``n`` = RK4 steps from t = 0, one per save interval)."""
    eps = float(jnp.finfo(jnp.float32).eps)
    # Spring: (q̇, ṗ) = ω J x with ω = 2, a rotation. One RK4 step multiplies x by
    # R(iθ) = 1 + iθ − θ²/2 − iθ³/6 + θ⁴/24, θ = ω h, so H = |x|² by exactly
    # ρ = |R(iθ)|² = 1 − θ⁶/72 + θ⁸/576 (RK4 does not conserve this quadratic invariant).
    # The data must follow H_n = H_0 ρⁿ to float rounding: per step the final sum and the
    # stage increments (|increment| ≈ θ|x| ≈ 0.2|x|, a few roundings each) change |x|² by at
    # most 3 eps relative, plus 2 eps for evaluating H twice.
    spring = systems.SpringMass()
    data = cn.make_trajectories(spring, 3, key=jax.random.key(2))
    h = spring.t1 / (spring.num_times - 1)
    theta = 2 * h
    rho = 1 - theta**6 / 72 + theta**8 / 576
    n = jnp.arange(spring.num_times, dtype=jnp.float32)[None, :]
    inv = jax.vmap(jax.vmap(_law(spring)))(data.xs)[..., 0]
    predicted = inv[:, :1] * (rho**n - 1)
    rounding = (3 * n + 2) * eps * inv[:, :1]
    assert jnp.all(jnp.abs(inv - inv[:, :1] - predicted) <= rounding)
    # The RK4 drift is resolved, not hidden in the rounding bound (about 3x above it at n = 29).
    assert jnp.all(jnp.abs(predicted[:, -1]) > 2 * rounding[:, -1])
    # Chemical: the total mass x1 + x2 is linear and c·f(x) = 0 exactly, and every stage's
    # field is (−r, r), so each RK4 increment is exactly (−d, d): only the final rounding of
    # each (positive) component changes the sum, by at most eps/2 · (x1 + x2) per step, plus
    # the two evaluations of x1 + x2. Rounding level: (n + 2) · eps · I bounds it with room.
    chem = systems.ChemicalKinetics()
    data = cn.make_trajectories(chem, 3, key=jax.random.key(2))
    inv = jax.vmap(jax.vmap(_law(chem)))(data.xs)[..., 0]
    n = jnp.arange(chem.num_times, dtype=jnp.float32)[None, :]
    assert jnp.all(jnp.abs(inv - inv[:, :1]) <= (n + 2) * eps * jnp.max(inv))
    # Kepler: an adaptive Tsit5 solve (rtol 1e-6, atol 1e-8) controls each step's local error,
    # not the global one, so there is no a-priori O(h⁴) constant: the original 1e-3 is kept
    # (about 10³ rtol; seeds 0-2 with 50 orbits each drift by at most 1.3e-5).
    kepler = systems.KeplerOrbit(t1=2.0, num_times=20)
    data = cn.make_trajectories(kepler, 3, key=jax.random.key(2))
    inv = jax.vmap(jax.vmap(_law(kepler)))(data.xs)
    assert jnp.max(jnp.abs(inv - inv[:, :1])) < 1e-3
    assert data.dxs.shape == data.xs.shape  # exact derivatives: f of each saved state
    assert jnp.array_equal(data.dxs, jax.vmap(jax.vmap(_field(kepler)))(data.xs))
    # Heat: the fluxes telescope, Σ_i f_i = 0 exactly; in float32 each f_i = fl(F_i − F_{i−1})
    # carries eps/2 · |f_i| and the 101-term sum adds at most 100 · eps/2 · Σ|f_i|.
    heat = systems.HeatEquation()
    f = heat.vector_field(heat.sample_initial_state(jax.random.key(0), MU), MU)
    assert jnp.abs(jnp.sum(f)) <= heat.num_nodes * eps * jnp.sum(jnp.abs(f))


def test_end_to_end_spring_concernet_conserves_better():
    """Stage 1 (100 epochs) + stage 2 (5 epochs) on 20 spring trajectories, fixed seeds.

    With a briefly trained dynamics model the baseline drifts off the energy level, while the
    projected model stays on the learned level set: ConCerNet's violation must be lower.
    """
    system = systems.SpringMass(num_trajectories=20)
    k = jax.random.split(jax.random.key(0), 8)
    train = cn.make_trajectories(system, 20, key=k[0])
    test = cn.make_trajectories(system, 10, key=k[1])
    xs = train.xs + 0.01 * jax.random.normal(k[2], train.xs.shape)
    dxs = train.dxs + 0.01 * jax.random.normal(k[3], train.xs.shape)
    adam = optax.adam(1e-3)
    net = cn.InvariantNet(2, 1, key=k[4])
    inv = cn.train_invariant(net, xs, optimiser=adam, epochs=100, key=k[5])
    assert inv.history[-1] < inv.history[0]
    mlp = eqx.nn.MLP(2, 2, 100, 2, activation=jnp.tanh, key=k[6])
    base = cn.train_dynamics(mlp, xs, dxs, optimiser=adam, epochs=5, key=k[7])
    model = cn.Projected(mlp, inv.model)
    ours = cn.train_dynamics(
        model, xs, dxs, optimiser=adam, epochs=5, trainable=cn.field_only(model), key=k[7]
    )
    assert eqx.tree_equal(ours.model.invariant, inv.model)  # the invariant stayed frozen
    v_base = cn.evaluate(base.model, _law(system), test).violation
    v_ours = cn.evaluate(ours.model, _law(system), test).violation
    assert jnp.isfinite(v_ours) and v_ours < 0.5 * v_base


def test_evaluate_metrics_of_true_field_and_of_a_drifting_one():
    """The true field scores ~0 on every metric; a field that slowly grows the energy has
    ``violation_sq`` = mean of the squared invariant drift (the authors' squared metric)."""
    system = systems.SpringMass(t1=6.0, num_times=61)
    truth = cn.make_trajectories(system, 4, key=jax.random.key(3))
    exact = cn.evaluate(_field(system), _law(system), truth)
    for value in (exact.mse, exact.violation, exact.violation_sq):
        assert value < 1e-4  # float32 RK4 rounding
    grow = cn.evaluate(lambda x: _field(system)(x) + 0.05 * x, _law(system), truth)
    # H = |x|^2 grows as H0 e^{0.1 t} exactly (the rotation keeps |x| otherwise fixed).
    h0 = jax.vmap(_law(system))(truth.xs[:, 0])[:, None, 0]
    drift = h0 * (jnp.exp(0.1 * truth.ts)[None, :] - 1)
    assert jnp.allclose(grow.violation_sq, jnp.mean(drift**2), rtol=1e-3)
    assert jnp.allclose(grow.violation, jnp.mean(jnp.abs(drift)), rtol=1e-3)


@pytest.mark.parametrize("name", sorted(systems.CONSERVED_SYSTEMS))
def test_conserved_system_contract(name):
    """Every conserved system: the shared vocabulary's shapes and dtypes, and its invariants
    constant along its own field, ``∇I(x; μ) · f(x; μ) = 0``, at sampled states."""
    system = systems.CONSERVED_SYSTEMS[name]()
    assert system.name == name and isinstance(system, systems.AbstractConservedSystem)
    k_mu, k_x = jax.random.split(jax.random.key(0))
    mus = system.sample_params(k_mu, 3)
    assert mus.shape == (3, system.param_dim) and mus.dtype == jnp.float32
    system.check_params(mus)
    for mu, key in zip(mus, jax.random.split(k_x, 3)):
        x = system.sample_initial_state(key, mu)
        f = system.vector_field(x, mu)
        assert x.shape == f.shape == (system.state_dim,) and x.dtype == jnp.float32
        grads = jax.jacrev(system.invariant)(x, mu)
        assert grads.ndim == 2 and grads.shape[1] == system.state_dim
        scale = jnp.linalg.norm(grads, axis=-1) * jnp.linalg.norm(f)
        assert jnp.all(jnp.abs(grads @ f) <= 1e-5 * scale)
    ts = system.times()
    assert ts.shape == (system.num_times,) and ts[0] == 0 and ts[-1] == system.t1
    with jax.enable_x64(True):  # mu carries the dtype of the states
        x = system.sample_initial_state(k_x, jnp.zeros(system.param_dim, jnp.float64) + 1)
        assert x.dtype == jnp.float64


def test_trajectories_are_rollouts_and_rows_of_mu_are_systems():
    """`make_trajectories` solves with `jaxmeta.rollout` (RK4 on the save grid) and gives exact
    derivatives; rows of ``mu`` (vmapped, one key each) equal the systems made one by one;
    `evaluate` rolls a field out with `jaxmeta.rollout` too (``substeps`` RK4 steps a save)."""
    family = systems.SpringFamily()
    mus = family.sample_params(jax.random.key(0), 3)
    key = jax.random.key(1)
    data = cn.make_trajectories(family, 4, mu=mus, key=key)
    assert data.xs.shape == data.dxs.shape == (3, 4, 30, 2) and data.ts.shape == (3, 30)
    for i, k in enumerate(jax.random.split(key, 3)):
        one = cn.make_trajectories(family, 4, mu=mus[i], key=k)
        assert jnp.allclose(one.xs, data.xs[i], atol=1e-6)
        if i:  # what follows holds for any one system; each one's closure compiles anew
            continue
        field = _field(family, mus[i])
        solved = jax.vmap(functools.partial(rollout, field, ts=one.ts))(one.xs[:, 0])
        assert jnp.array_equal(solved, one.xs)
        assert jnp.array_equal(one.dxs, jax.vmap(jax.vmap(field))(one.xs))
        metrics = cn.evaluate(field, _law(family, mus[i]), one, substeps=3)
        fine = jax.vmap(functools.partial(rollout, field, ts=one.ts, substeps=3))(one.xs[:, 0])
        assert jnp.allclose(metrics.rollouts, fine, atol=1e-6)
        assert jnp.allclose(metrics.rollouts, one.xs, atol=1e-2)  # the data: one RK4 step a save
    with pytest.raises(ValueError, match="spring_family has parameters \\(m, k\\): pass `mu`"):
        cn.make_trajectories(family, 2, key=key)
