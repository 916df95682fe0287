"""The converged test-time protocol (`meta.adapt_converged`): the latent solver on a problem
with a known answer, and never a worse support loss than the paper's 100-step protocol."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import small_dataset

from jaxmeta import data, losses, meta, modulation, nn

make_model = lambda k: nn.HNN(2, width=8, depth=1, key=k)


def _tasks(xs, dxs):
    f, k, t, d = xs.shape
    return data.TaskSet(jnp.zeros((f, 1)), jnp.linspace(0.0, 1.0, t), xs, dxs, xs, dxs)


def test_the_latent_solver_finds_a_known_latent():
    # Data made by the modulated model itself at known latents: the least-squares answer is
    # that latent, with zero loss. Start: the mean training latent (zero), 5 Adam steps.
    learner = meta.AutoDecoding(modulation.RankOne(), latent_dim=4, adapt_steps=5)
    state = learner.init(make_model, 6, key=jax.random.key(0))
    # Hypernetwork weights larger than at initialisation, so that the latent is well
    # determined (not so large that the problem has other minima near the start).
    shape = state.params.hypernet.linear.weight.shape
    weight = 0.3 * jax.random.normal(jax.random.key(1), shape)
    state = eqx.tree_at(lambda s: s.params.hypernet.linear.weight, state, weight)
    truth = 0.5 * jax.random.normal(jax.random.key(2), (3, 4))
    xs = jax.random.uniform(jax.random.key(3), (3, 2, 6, 2), minval=-2.0, maxval=2.0)
    dxs = jax.vmap(lambda z, x: jax.vmap(jax.vmap(state.params(z)))(x))(truth, xs)
    protocol = meta.Converged(rtol=1e-6, atol=1e-9)
    out = meta.adapt_converged(learner, state, _tasks(xs, dxs), protocol, key=jax.random.key(4))
    assert bool(out.converged.all()), out
    np.testing.assert_allclose(out.latents, truth, atol=1e-5)
    assert float(out.loss.max()) < 1e-10 * float(jnp.mean(dxs**2))
    assert bool((out.loss <= out.paper_loss).all())
    assert out.steps.shape == (3,) and bool((out.steps > 0).all())
    assert out.seconds.shape == (3,) and (out.seconds > 0).all() and out.compile_seconds >= 0
    # Plain Adam on the latent (no solver), same tolerance: it gets no further than the solver.
    adam = meta.adapt_converged(
        learner,
        state,
        _tasks(xs, dxs),
        meta.Converged(rtol=1e-6, least_squares=None),
        key=jax.random.key(4),
    )
    assert bool((adam.loss >= out.loss).all()) and bool((adam.loss <= adam.paper_loss).all())


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


SMALL = dict(tasks_per_step=2, inner_steps=1, adapt_steps=5)
PROTOCOL = meta.Converged(window=10, max_steps=200)


@pytest.mark.parametrize(
    "learner",
    [
        meta.AutoDecoding(modulation.MultiRank(rank=2), latent_dim=4, latent_penalty=0.1, **SMALL),
        meta.MAML(**SMALL),
        meta.ANIL(**SMALL),
        meta.Reptile(**SMALL),
        meta.Scratch(adapt_steps=5),
    ],
    ids=["mr", "maml", "anil", "reptile", "scratch"],
)
def test_converged_is_never_worse_than_the_paper_protocol(learner, dataset):
    result = meta.fit(learner, make_model, dataset, epochs=2, key=jax.random.key(1),
                      val_every=2, progress=False)  # fmt: skip
    state, tasks = result.best_state, dataset.test
    out = meta.adapt_converged(learner, state, tasks, PROTOCOL, key=jax.random.key(2))
    f = tasks.num_functions
    assert out.loss.shape == out.paper_loss.shape == out.steps.shape == (f,)
    assert bool((out.loss <= out.paper_loss).all()), (out.loss, out.paper_loss)
    assert bool((out.steps >= 1).all()) and bool((out.steps <= PROTOCOL.max_steps).all())
    # Its paper-protocol loss is the paper protocol's (`meta.adapt`, same keys), and the
    # models it returns give the loss it reports.
    paper = meta.adapt(learner, state, tasks, jax.random.key(2))
    xs, dxs = meta.flatten_support(tasks)
    for i in range(f):
        for adapted, loss in ((paper, out.paper_loss[i]), (out, out.loss[i])):
            latent = None if adapted.latents is None else adapted.latents[i]
            got = _support_loss(learner, state, adapted.model(i), latent, xs[i], dxs[i])
            np.testing.assert_allclose(loss, got, rtol=1e-4)


def _support_loss(learner, state, model, latent, x, y):
    """The loss the protocols minimise: the latent's (with its penalties), or the field MSE."""
    if latent is not None:
        return learner.adapt_loss(state, latent, x, y)
    return losses.field_mse(model, x, y)


def test_bad_protocol():
    with pytest.raises(ValueError, match="rtol=0"):
        meta.Converged(rtol=0)
    with pytest.raises(TypeError, match="least_squares='lm'"):
        meta.Converged(least_squares="lm")
    with pytest.raises(TypeError, match="`protocol` must be a Converged"):
        meta.adapt_converged(meta.MAML(), None, None, 100, key=jax.random.key(0))
    with pytest.raises(TypeError, match="max_steps=1.5"):
        meta.Converged(max_steps=1.5)
    assert meta.Converged(least_squares=None).least_squares is None
