import dataclasses
import inspect
import json
import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import small_dataset

from jaxmeta import data, io, meta, modulation, nn, systems

SMALL = dict(tasks_per_step=2, inner_steps=1, adapt_steps=5)
# One object, shared: learners built with it are equal, so they share compiled programs.
OUTER = optax.adam(1e-2)
LEARNERS = {
    "shift": meta.AutoDecoding(modulation.Shift(), outer_optimiser=OUTER, latent_dim=4, **SMALL),
    "fw": meta.AutoDecoding(modulation.FullWeight(), outer_optimiser=OUTER, latent_dim=4, **SMALL),
    "ro": meta.AutoDecoding(modulation.RankOne(), outer_optimiser=OUTER, latent_dim=4, **SMALL),
    "mr": meta.AutoDecoding(
        modulation.MultiRank(rank=2), outer_optimiser=OUTER, latent_dim=4, **SMALL
    ),  # fmt: skip
    "maml": meta.MAML(outer_optimiser=OUTER, **SMALL),
    "maml-fo": meta.MAML(outer_optimiser=OUTER, first_order=True, **SMALL),
    "anil": meta.ANIL(outer_optimiser=OUTER, **SMALL),
    "reptile": meta.Reptile(**SMALL),
    "scratch": meta.Scratch(adapt_steps=SMALL["adapt_steps"]),
}
make_model = lambda k: nn.HNN(2, width=8, depth=1, key=k)


@pytest.fixture(scope="module")
def dataset():
    return small_dataset()


@pytest.fixture(scope="module")
def trained(dataset):
    return {
        name: meta.fit(learner, make_model, dataset, epochs=6, key=jax.random.key(1),
                       val_every=3, progress=False)
        for name, learner in LEARNERS.items()
    }  # fmt: skip


@pytest.mark.parametrize("name", list(LEARNERS))
def test_contract(name, dataset, trained):
    learner, result = LEARNERS[name], trained[name]
    adapted = meta.adapt(learner, result.best_state, dataset.test, jax.random.key(2))
    f = dataset.test.num_functions
    assert adapted.losses.shape == (f, learner.adapt_steps)
    assert bool(jnp.isfinite(adapted.losses).all())
    # The adapted models are one batched pytree: evaluate them all at once.
    x = dataset.test.query_xs[:, 0, 0]
    out = eqx.filter_vmap(lambda m, y: m(y))(adapted.models, x)
    assert out.shape == x.shape and bool(jnp.isfinite(out).all())
    errors = meta.validation_error(learner, result.best_state, dataset.test, jax.random.key(2))
    assert errors.shape == (f,) and bool(jnp.isfinite(errors).all())
    hist = result.history
    if learner.meta_trains:
        assert hist.train_loss.shape == (6,) and hist.val_epoch.tolist() == [3, 6]
        assert hist.val_error.shape == (2,) and np.isfinite(hist.val_error).all()
        assert hist.train_loss[-1] < hist.train_loss[0]  # training loss falls
        assert int(result.state.step) == 6 * (6 // learner.tasks_per_step)
    else:
        assert hist == meta.History.empty() and result.best_epoch == 0
        assert bool(jnp.all(adapted.losses[:, -1] < adapted.losses[:, 0]))
    # The history is JSON-serialisable and round-trips exactly.
    record = json.loads(json.dumps(hist.to_dict()))
    assert sorted(record) == ["train_loss", "val_epoch", "val_error"]
    assert meta.History.from_dict(record) == hist


def _concrete_overrides(cls) -> list[str]:
    """Methods of ``cls`` or of its jaxmeta bases that redefine a concrete (non-abstract)
    method of a further base: the abstract-or-final pattern allows none."""
    ours = [k for k in cls.__mro__ if k.__module__.startswith("jaxmeta")]
    found = []
    for i, klass in enumerate(ours):
        for name, value in vars(klass).items():
            if name.startswith("__") or not (callable(value) or isinstance(value, property)):
                continue
            for base in ours[i + 1 :]:
                if name in vars(base) and not getattr(vars(base)[name], "__isabstractmethod__", 0):
                    found.append(f"{klass.__name__}.{name} overrides {base.__name__}.{name}")
    return found


def test_learners_are_abstract_or_final():
    classes = {type(learner) for learner in LEARNERS.values()}
    for cls in classes:
        assert _concrete_overrides(cls) == []
        bases = [k for k in cls.__mro__[1:] if k.__module__.startswith("jaxmeta")]
        assert all(inspect.isabstract(base) for base in bases), (cls, bases)
        assert not any(issubclass(cls, other) for other in classes - {cls})
    assert not hasattr(meta.Scratch(), "meta_step") and not meta.Scratch().meta_trains
    assert all(learner.meta_trains for name, learner in LEARNERS.items() if name != "scratch")


@pytest.mark.parametrize("name", ["ro", "maml", "anil"])
def test_vmapped_adaptation_equals_loop(name, dataset, trained):
    learner, state = LEARNERS[name], trained[name].state
    tasks = dataset.val
    key = jax.random.key(3)
    together = meta.adapt(learner, state, tasks, key)
    xs, dxs = meta.flatten_support(tasks)
    for i in range(tasks.num_functions):
        alone = learner.adapt(state, xs[i : i + 1], dxs[i : i + 1], key=key)
        np.testing.assert_allclose(alone.losses[0], together.losses[i], rtol=2e-5, atol=1e-7)


def test_each_step_traces_once(dataset, caplog):
    # The compiled chunk of epochs, counted through JAX's compile log: a second run (another
    # key, same shapes and learner) must reuse the first run's trace.
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        for seed in (5, 6):
            meta.fit(LEARNERS["ro"], make_model, dataset, epochs=4, key=jax.random.key(seed),
                     val_every=2, progress=False)  # fmt: skip
    traced = [r for r in caplog.records if r.getMessage().startswith("Finished tracing _epochs ")]
    assert len(traced) == 1, [r.getMessage() for r in traced]


def test_checkpoint_identity_is_the_learners_fields(monkeypatch):
    learner = LEARNERS["mr"]
    same = meta.AutoDecoding(modulation.MultiRank(rank=2), outer_optimiser=optax.adam(1e-2),
                             latent_dim=4, **SMALL)  # fmt: skip
    assert io.fingerprint(learner) == io.fingerprint(same)  # another object, the same optimiser
    changed = [
        eqx.tree_at(lambda m: m.outer_optimiser, learner, optax.adam(2e-2)),
        eqx.tree_at(lambda m: m.inner_optimiser, learner, optax.sgd(2e-3)),
        eqx.tree_at(lambda m: m.adapt_optimiser, learner, optax.adam(2e-3, b1=0.8)),
        eqx.tree_at(lambda m: m.latent_init, learner, "zero"),
        eqx.tree_at(lambda m: m.latent_state, learner, "persistent"),
        eqx.tree_at(lambda m: m.latent_penalty, learner, 0.1),
        eqx.tree_at(lambda m: m.hypernet_penalty, learner, 0.1),
        eqx.tree_at(lambda m: m.modulation, learner, modulation.MultiRank(rank=3)),
        meta.AutoDecoding(modulation.LowRank(2), outer_optimiser=OUTER, latent_dim=4, **SMALL),
        meta.MAML(outer_optimiser=OUTER, **SMALL),
        meta.ANIL(outer_optimiser=OUTER, **SMALL),
        meta.MAML(outer_optimiser=OUTER, first_order=True, **SMALL),
    ]
    digests = {io.fingerprint(other) for other in changed}
    assert len(digests) == len(changed) and io.fingerprint(learner) not in digests
    # No pretty-printer is involved: the digest survives a broken `eqx.tree_pformat`.
    digest = io.fingerprint(learner)

    def broken(*args, **kwargs):
        raise AssertionError("tree_pformat must not be used for checkpoint identity")

    monkeypatch.setattr(eqx, "tree_pformat", broken)
    assert io.fingerprint(learner) == digest


def test_a_field_marked_omit_default_keeps_older_digests():
    # A field added later must not change the identity of checkpoints written before it
    # existed while it holds its default.
    @dataclasses.dataclass
    class Old:
        lr: float = 1e-3

    @dataclasses.dataclass
    class New:
        lr: float = 1e-3
        opt: str = dataclasses.field(default="adam", metadata={io.OMIT_DEFAULT: True})

    New.__qualname__ = Old.__qualname__
    assert io.fingerprint(New()) == io.fingerprint(Old())
    assert io.fingerprint(New(opt="sgd")) != io.fingerprint(Old())
    assert io.fingerprint(New(lr=2e-3)) == io.fingerprint(Old(lr=2e-3)) != io.fingerprint(Old())


def test_optimisers_are_identified_by_their_hyperparameters():
    fp = io.fingerprint
    assert fp(optax.adam(1e-3)) == fp(optax.adam(1e-3))
    assert len({fp(optax.adam(1e-3)), fp(optax.adam(1e-2)), fp(optax.sgd(1e-3)),
                fp(optax.adam(1e-3, eps_root=1e-12)), fp(meta.inner_adam(1e-3)),
                fp(optax.chain(optax.clip(1.0), optax.adam(1e-3)))}) == 5  # fmt: skip
    # A schedule is a closure too: its values are part of the identity.
    assert fp(optax.adam(optax.cosine_decay_schedule(1e-3, 100))) != fp(
        optax.adam(optax.cosine_decay_schedule(1e-3, 200))
    )
    with pytest.raises(
        TypeError, match="`outer_optimiser` must be an optax.GradientTransformation"
    ):
        meta.MAML(outer_optimiser="adam")
    with pytest.raises(TypeError, match="adapt_optimiser=0.002"):
        meta.Scratch(adapt_optimiser=2e-3)


@pytest.mark.parametrize("name", ["ro", "reptile"])
def test_zero_adaptation_steps_keep_the_meta_learned_model(name, dataset, trained):
    learner, state = LEARNERS[name], trained[name].best_state
    for optimiser in (learner.adapt_optimiser, optax.sgd(1e-3)):
        zero = dataclasses.replace(learner, adapt_steps=0, adapt_optimiser=optimiser)
        adapted = meta.adapt(zero, state, dataset.test, jax.random.key(2))
        assert adapted.losses.shape == (dataset.test.num_functions, 0)
        if name == "ro":  # Algorithm 2 with no step: the mean training latent
            mean = np.broadcast_to(np.mean(state.latents, axis=0), adapted.latents.shape)
            np.testing.assert_array_equal(adapted.latents, mean)
        else:
            for a, p in zip(_leaves(adapted.models), _leaves(state.params)):
                np.testing.assert_array_equal(a, np.broadcast_to(p, a.shape))


def test_same_seed_same_metrics(dataset, trained):
    again = meta.fit(LEARNERS["mr"], make_model, dataset, epochs=6, key=jax.random.key(1),
                     val_every=3, progress=False)  # fmt: skip
    assert again.history == trained["mr"].history and again.best_epoch == trained["mr"].best_epoch


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(state, eqx.is_array))]


def test_resume_is_bitwise_identical(dataset, tmp_path, monkeypatch):
    # The checkpoint's identity comes from the learner's fields, never from a pretty-printer.
    monkeypatch.setattr(eqx, "tree_pformat", lambda *a, **k: 1 / 0)
    learner = LEARNERS["mr"]
    kw = dict(key=jax.random.key(7), val_every=2, progress=False)
    full = meta.fit(learner, make_model, dataset, epochs=4, checkpoint_dir=tmp_path / "a", **kw)
    meta.fit(learner, make_model, dataset, epochs=2, checkpoint_dir=tmp_path / "b", **kw)
    resumed = meta.fit(learner, make_model, dataset, epochs=4, checkpoint_dir=tmp_path / "b", **kw)
    for a, b in zip(_leaves(full.state), _leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_leaves(full.best_state), _leaves(resumed.best_state)):
        np.testing.assert_array_equal(a, b)
    assert full.history == resumed.history and full.best_epoch == resumed.best_epoch
    # A mismatched configuration is refused, not loaded.
    other = meta.AutoDecoding(modulation.MultiRank(rank=2), outer_optimiser=optax.adam(5e-3),
                              latent_dim=4, **SMALL)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"another configuration \(differs in: learner.outer_optimiser\)"
    ):
        meta.fit(other, make_model, dataset, epochs=6, checkpoint_dir=tmp_path / "b", **kw)
    # A truncated checkpoint is refused, not loaded.
    header = json.loads((tmp_path / "b" / "last.json").read_text())
    payload = tmp_path / "b" / header["payload"]
    payload.write_bytes(payload.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        meta.fit(learner, make_model, dataset, epochs=6, checkpoint_dir=tmp_path / "b", **kw)


class _Killed(BaseException):
    pass


def test_a_kill_between_the_best_and_last_saves_loses_nothing(dataset, tmp_path):
    """`best` is saved before `last`, each atomically: killed between the two (the `callback`
    hook raises after the best save of epoch 4), the run resumes from the older `last` and
    ends where an uninterrupted run ends (bitwise on CPU)."""
    learner = LEARNERS["ro"]
    kw = dict(key=jax.random.key(4), val_every=2, progress=False)
    full = meta.fit(learner, make_model, dataset, epochs=4, **kw)
    events = []

    def killed_before_last(event, epoch):
        events.append((event, epoch))
        if (event, epoch) == ("best", 4):
            raise _Killed

    with pytest.raises(_Killed):
        meta.fit(learner, make_model, dataset, epochs=4, checkpoint_dir=tmp_path,
                 callback=killed_before_last, **kw)  # fmt: skip
    assert events[:3] == [("chunk", 2), ("best", 2), ("last", 2)] and events[-1] == ("best", 4)
    assert json.loads((tmp_path / "last.json").read_text())["epoch"] == 2
    resumed = meta.fit(learner, make_model, dataset, epochs=4, checkpoint_dir=tmp_path, **kw)
    for a, b in zip(_leaves(full.best_state) + _leaves(full.state),
                    _leaves(resumed.best_state) + _leaves(resumed.state)):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    assert full.history == resumed.history and full.best_epoch == resumed.best_epoch


def test_a_checkpoint_of_other_data_or_a_longer_run_is_refused(dataset, tmp_path):
    """The checkpoint's identity holds the data's values, not only their shapes: another
    family of the same shapes (another draw of μ) is refused, naming `checkpoint_dir` and
    "data"; so is a checkpoint already past this run's `epochs`."""
    learner = LEARNERS["ro"]
    kw = dict(key=jax.random.key(9), val_every=2, progress=False, checkpoint_dir=tmp_path)
    meta.fit(learner, make_model, dataset, epochs=4, **kw)
    other = data.generate_dataset(
        systems.Pendulum(param_ranges=((1.0, 2.0), (1.0, 2.0))), jax.random.key(0),
        num_functions=10, split=(0.6, 0.2, 0.2), num_trajectories=2, num_query=1,
    )  # fmt: skip
    assert jax.tree.map(jnp.shape, other) == jax.tree.map(jnp.shape, dataset)
    with pytest.raises(ValueError, match=r"`checkpoint_dir`=.*differs in: data\)"):
        meta.fit(learner, make_model, other, epochs=4, **kw)
    with pytest.raises(io.CheckpointError, match=r"`checkpoint_dir`=.* epoch 4, past `epochs`=2"):
        meta.fit(learner, make_model, dataset, epochs=2, **kw)
    assert meta.fit(learner, make_model, dataset, epochs=4, **kw).history.val_epoch.size == 2


def _payload(directory, stem="last"):
    return directory / json.loads((directory / f"{stem}.json").read_text())["payload"]


def _poisoned_after(updates: int) -> optax.GradientTransformation:
    """An optimiser step that turns every update after the first ``updates`` into NaN (a
    diverging run, through the public optimiser seam)."""

    def update(grads, count, params=None):
        del params
        poison = jnp.where(count >= updates, jnp.nan, 0.0)
        return jax.tree.map(lambda g: g + poison, grads), count + 1

    return optax.GradientTransformation(lambda _: jnp.zeros((), jnp.int32), update)


def test_nan_stops_the_run_and_keeps_the_checkpoint(dataset, tmp_path):
    # 6 training functions in batches of 2: 3 meta-steps an epoch. The 7th outer update (epoch
    # 2, meta-step 0) is NaN, so the loss of epoch 2, meta-step 1 is the first non-finite one.
    outer = optax.chain(optax.adam(1e-2), _poisoned_after(6))
    learner = meta.AutoDecoding(modulation.RankOne(), outer_optimiser=outer, latent_dim=4,
                                **SMALL)  # fmt: skip
    kw = dict(key=jax.random.key(8), val_every=2, progress=False, checkpoint_dir=tmp_path)
    saved = []
    record = lambda event, epoch: saved.append((event, epoch, _payload(tmp_path).read_bytes())
                                               if event == "last" else None)  # fmt: skip
    with pytest.raises(
        FloatingPointError,
        match="Non-finite training loss at epoch 2, meta-step 1 of AutoDecoding; stopped. "
        "Last good checkpoint: epoch 2 in",
    ):
        meta.fit(learner, make_model, dataset, epochs=4, callback=record, **kw)
    last = [s for s in saved if s is not None]
    assert [s[:2] for s in last] == [("last", 2)]
    assert _payload(tmp_path).read_bytes() == last[0][2]  # the last good checkpoint, intact


def test_bad_input(dataset):
    with pytest.raises(TypeError, match="`outer_optimiser` must be an optax"):
        meta.MAML(outer_optimiser=0.0)
    with pytest.raises(TypeError, match="inner_optimiser='adam'"):
        meta.AutoDecoding(modulation.RankOne(), inner_optimiser="adam")
    with pytest.raises(ValueError, match="latent_state='kept'"):
        meta.AutoDecoding(modulation.RankOne(), latent_state="kept")
    with pytest.raises(ValueError, match="latent_penalty=-0.1"):
        meta.AutoDecoding(modulation.RankOne(), latent_penalty=-0.1)
    with pytest.raises(ValueError, match="hypernet_penalty=nan"):
        meta.AutoDecoding(modulation.RankOne(), hypernet_penalty=float("nan"))
    with pytest.raises(ValueError, match="inner_steps=0"):
        meta.Reptile(inner_steps=0)
    with pytest.raises(ValueError, match="adapt_steps=0"):
        meta.Scratch(adapt_steps=0)
    with pytest.raises(ValueError, match="adapt_steps=-1"):
        meta.MAML(adapt_steps=-1)
    with pytest.raises(TypeError, match="adapt_optimiser='rmsprop'"):
        meta.MAML(adapt_optimiser="rmsprop")
    with pytest.raises(ValueError, match="latent_dim=0"):
        meta.AutoDecoding(modulation.RankOne(), latent_dim=0)
    with pytest.raises(ValueError, match="latent_init"):
        meta.AutoDecoding(modulation.RankOne(), latent_init="random")
    with pytest.raises(TypeError, match="AbstractModulation"):
        meta.AutoDecoding("ro")
    with pytest.raises(ValueError, match="tasks_per_step`=7 exceeds the 6 training functions"):
        meta.fit(meta.MAML(tasks_per_step=7), make_model, dataset, epochs=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="epochs=0"):
        meta.fit(meta.MAML(), make_model, dataset, epochs=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"`k` must be an int in \[1, 2\].*k=3"):
        meta.fit(meta.MAML(), make_model, dataset, epochs=1, key=jax.random.key(0), shots=3)
    with pytest.raises(TypeError, match="AbstractMetaLearner"):
        meta.fit("maml", make_model, dataset, epochs=1, key=jax.random.key(0))


# Slow (~45 s): the default run checks the same claim end to end through experiments.run in
# tests/test_adapt.py::test_adapt_npz_and_csv_agree_and_beat_scratch.
@pytest.mark.slow
def test_auto_decoding_beats_scratch_on_held_out_pendulums():
    """End to end: RO and MR adapt held-out functions better than per-function training."""
    ds = data.generate_dataset(
        systems.Pendulum(), jax.random.key(0), num_functions=30, split=(0.6, 0.2, 0.2),
        num_trajectories=3, num_query=2,
    )  # fmt: skip
    model = lambda k: nn.HNN(2, width=16, depth=2, key=k)
    errors = {}
    for name, learner in {
        "ro": meta.AutoDecoding(modulation.RankOne(), outer_optimiser=optax.adam(3e-3)),
        "mr": meta.AutoDecoding(modulation.MultiRank(rank=2), outer_optimiser=optax.adam(3e-3)),
        "scratch": meta.Scratch(),
    }.items():
        result = meta.fit(learner, model, ds, epochs=400, key=jax.random.key(1), val_every=200,
                          progress=False)  # fmt: skip
        test = meta.validation_error(learner, result.best_state, ds.test, jax.random.key(2))
        errors[name] = float(jnp.mean(test))
    assert errors["ro"] < 0.5 * errors["scratch"], errors
    assert errors["mr"] < 0.5 * errors["scratch"], errors


def test_second_order_maml_on_a_gnn_stays_finite():
    """Regression: differentiating through Adam's sqrt(v) at v = 0 (GNN parameters with exactly
    zero gradient) made second-order MAML's meta-gradient NaN; `eps_root` keeps it finite."""
    ds = data.generate_dataset(
        systems.DampedNonlinearOscillator(), jax.random.key(0), num_functions=10,
        split=(0.6, 0.2, 0.2), num_trajectories=2, num_query=1,
    )  # fmt: skip
    gnn = lambda k: nn.GNN(1, 1, width=8, depth=1, key=k)
    result = meta.fit(meta.MAML(**SMALL), gnn, ds, epochs=2, key=jax.random.key(0),
                      val_every=1, progress=False)  # fmt: skip
    assert result.history.train_loss.shape == (2,)
    assert np.isfinite(result.history.train_loss).all()


def test_optimise_path_rows_are_optimise_at_every_step_count():
    # Row n - 1 of the iterates is `optimise` with n steps (one scan; the k-shot figure reads
    # it at 5, 10, 25 and 50 steps); the static leaves (the activation) are kept.
    model = nn.HNN(2, width=8, depth=1, key=jax.random.key(0))
    xs, ys = (jax.random.normal(k, (6, 2)) for k in jax.random.split(jax.random.key(1)))
    loss = lambda m: jnp.mean((jax.vmap(m)(xs) - ys) ** 2)
    opt = optax.adam(1e-2)
    path, losses = meta.optimise_path(loss, model, opt, 4)
    arrays, static = eqx.partition(path, eqx.is_inexact_array)
    assert eqx.tree_equal(static, eqx.filter(model, eqx.is_inexact_array, inverse=True))
    after3, losses3 = meta.optimise(loss, model, opt, 3)
    row = lambda n: jax.tree.leaves(jax.tree.map(lambda a: a[n], arrays))
    for a, b in zip(row(2), jax.tree.leaves(eqx.filter(after3, eqx.is_inexact_array))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses[:3], losses3, rtol=1e-5)
    assert losses.shape == (4,) and float(losses[-1]) < float(losses[0])
    assert not all(np.allclose(a, b) for a, b in zip(row(0), row(2)))  # the iterates move
