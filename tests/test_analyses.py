import dataclasses
import json
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import optax
import pytest

from experiments import analyses
from experiments.regimes import regime_overrides

TINY = ["--system", "pendulum", "--seeds", "0", "--epochs", "1", "--width", "8", "--depth", "1",
        "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """One work directory for the module: the dataset is generated once."""
    return tmp_path_factory.mktemp("work")


def _arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def test_adapt_steps_end_to_end(tmp_path, work):
    argv = ["adapt-steps", *TINY, "--methods", "scratch,maml,ro", "--work", str(work),
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert analyses.main(argv) == 0
    table = (tmp_path / "out" / "pendulum-adapt-steps.md").read_text()
    assert "| maml | adam (0.002) |" in table and "| ro | sgd (0.002) |" in table
    assert "| scratch | adam (0.002) | – | – |" in table and "| scratch | sgd" not in table
    record = json.loads((tmp_path / "out" / "pendulum-adapt-steps.json").read_text())
    scratch = json.loads((work / "adapt-steps" / "scratch" / "seed0" / "metrics.json").read_text())
    assert record["methods"]["scratch"]["adam"]["100"]["trajectory_error"]["mean"] == (
        scratch["trajectory_error"])  # fmt: skip
    for name in ("maml", "ro"):
        row = record["methods"][name]
        for o in analyses.OPTIMISERS:
            assert set(row[o]) == {"0", "3", "100"}
            assert all(np.isfinite(row[o][n][m]["mean"]) for n in row[o] for m in analyses.ERRORS)
        # Auto-decoding: 0 steps leave every test latent at the mean training latent.
        if name == "ro":
            assert row["adam"]["0"][analyses.LATENT]["mean"] < 1e-6 < row["adam"]["3"][
                analyses.LATENT]["mean"]  # fmt: skip
            assert row["train_latent_spread"]["mean"] > 0
        else:
            assert analyses.LATENT not in row["adam"]["0"] and "train_latent_spread" not in row
        # 0 steps of either optimiser is the same (unadapted) model.
        assert row["adam"]["0"] == row["sgd"]["0"]
        # 100 Adam steps are experiments.run's own test-time adaptation: its score, exactly.
        run_dir = work / "adapt-steps" / name / "seed0"
        scored = json.loads((run_dir / "metrics.json").read_text())
        for m in analyses.ERRORS:
            assert row["adam"]["100"][m]["mean"] == scored[m]
    # Reusing the trained run directory (--run): nothing retrains, the numbers are the same.
    metrics = work / "adapt-steps" / "maml" / "seed0" / "metrics.json"
    before = metrics.stat().st_mtime_ns
    again = ["adapt-steps", *TINY, "--methods", "maml", "--steps", "0,3,100",
             "--run", str(work / "adapt-steps"), "--work", str(work),
             "--out", str(tmp_path / "again")]  # fmt: skip
    assert analyses.main(again) == 0
    assert metrics.stat().st_mtime_ns == before
    reread = json.loads((tmp_path / "again" / "pendulum-adapt-steps.json").read_text())
    assert reread["methods"]["maml"] == record["methods"]["maml"]


def test_zero_steps_is_the_meta_initialisation(work):
    _, config, _ = analyses.parse_args(["adapt-steps", *TINY, "--methods", "maml",
                                        "--work", str(work)])  # fmt: skip
    prep = analyses.prepare(dataclasses.replace(config, out=work))
    analyses.run_method(config, prep, "maml")
    state = analyses.load_state(config, prep, "maml", 0)
    adam, _ = analyses.adapted_errors(config, prep, "maml", state, 0, 0, "adam")
    sgd, _ = analyses.adapted_errors(config, prep, "maml", state, 0, 0, "sgd")
    moved, _ = analyses.adapted_errors(config, prep, "maml", state, 0, 3, "sgd")
    f = prep.dataset.test.num_functions
    init = _arrays(state.params)
    for a, s, _m, p in zip(_arrays(adam.models), _arrays(sgd.models), _arrays(moved.models), init):
        assert a.shape == (f, *p.shape)
        np.testing.assert_array_equal(a, np.broadcast_to(p, a.shape))  # identical, every function
        np.testing.assert_array_equal(s, a)
    # ...while 3 SGD steps do move the weights (the comparison above can fail).
    assert any(not np.array_equal(m, np.broadcast_to(p, m.shape)) for m, p in zip(
        _arrays(moved.models), init))  # fmt: skip
    assert adam.losses.shape == (f, 0)


def test_sgd_is_plain_gradient_descent_at_the_inner_rate(tmp_path):
    # One SGD step on the inner parameters is theta - lr * grad of the support loss.
    from jaxmeta import losses, meta, nn

    lr = 2e-3
    learner = meta.MAML(adapt_steps=1, adapt_optimiser=optax.sgd(lr), tasks_per_step=2)
    params = nn.HNN(2, width=8, depth=1, key=jax.random.key(0))
    state = learner.init(lambda k: params, 4, key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (1, 6, 2))
    dxs = jax.random.normal(jax.random.key(2), (1, 6, 2))
    adapted = learner.adapt(state, xs, dxs, key=jax.random.key(3))
    grads = eqx.filter_grad(lambda m: losses.field_mse(m, xs[0], dxs[0]))(params)
    want = jax.tree.map(lambda p, g: p - lr * g, _arrays(params), _arrays(grads))
    for got, w in zip(_arrays(adapted.models), want):
        np.testing.assert_allclose(got[0], w, rtol=1e-6, atol=1e-7)
    adam = dataclasses.replace(learner, adapt_optimiser=meta.MAML().adapt_optimiser).adapt(
        state, xs, dxs, key=jax.random.key(3)
    )
    assert any(not np.allclose(a, s) for a, s in zip(_arrays(adam.models), _arrays(adapted.models)))


def test_inner_steps_end_to_end(tmp_path, work):
    argv = ["inner-steps", *TINY, "--epochs", "2", "--inner-steps", "1,4", "--methods", "ro",
            "--work", str(work), "--out", str(tmp_path / "out")]  # fmt: skip
    assert analyses.main(argv) == 0
    table = (tmp_path / "out" / "pendulum-inner-steps.md").read_text()
    assert "| ro | 1 | 2 |" in table and "| ro | 4 | 2 |" in table
    row = json.loads((tmp_path / "out" / "pendulum-inner-steps.json").read_text())["methods"]["ro"]
    assert set(row["equal_epochs"]) == set(row["equal_time"]) == {"1", "4"}
    assert row["target_seconds"] == row["equal_epochs"]["1"]["train_seconds"]["mean"] > 0
    tried = row["equal_time"]["4"]["tried"]
    assert tried[0] == row["equal_epochs"]["4"]  # the first attempt: equal epochs
    closest = min(tried, key=lambda t: abs(t["train_seconds"]["mean"] - row["target_seconds"]))
    assert row["equal_time"]["4"] == {**closest, "tried": tried}
    for part in ("equal_epochs", "equal_time"):
        for r in row[part].values():
            assert all(np.isfinite(r[m]["mean"]) for m in analyses.ERRORS)
    # The variants really train with their own inner steps (one directory each).
    assert (work / "inner-steps" / "inner4-epochs2" / "ro" / "seed0").is_dir()
    config = analyses._variant(analyses.AnalysisConfig(), tmp_path, 4, 2)
    assert analyses.make_learner("ro", config).inner_steps == 4


def test_next_epochs_inverts_a_linear_cost():
    cost = lambda e: 7.0 + 0.5 * e  # fixed cost + cost per epoch
    assert analyses._next_epochs(cost(40), [(150, cost(150)), (10, cost(10))]) == 40
    assert analyses._next_epochs(20.0, [(150, 60.0)]) == 50  # one point: proportional
    assert analyses._next_epochs(0.01, [(150, 60.0)]) == 1


def test_bad_input(capsys):
    with pytest.raises(SystemExit):
        analyses.parse_args(["adapt-steps", "--methods", "maml,mr"])
    assert "--methods: unknown 'mr'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyses.parse_args(["adapt-steps", "--steps", "0,-1"])
    assert "--steps must be distinct integers >= 0, got '0,-1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyses.parse_args(["adapt-steps", "--inner-steps", "0"])
    assert "--inner-steps must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyses.parse_args(["inner-steps", "--inner-steps", "0,3"])
    assert "--inner-steps must be distinct integers >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyses.parse_args(["inner-steps", "--system", "spring"])
    assert "--system: unknown 'spring'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyses.parse_args(["inner-steps", "--tolerance", "0"])
    assert "--tolerance must be in (0, 1), got 0.0" in capsys.readouterr().err


def test_a_run_directory_of_another_configuration_is_refused(tmp_path, capsys):
    from experiments import store

    argv = ["adapt-steps", *TINY, "--methods", "maml", "--run", str(tmp_path / "run"),
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]  # fmt: skip
    _, config, _ = analyses.parse_args(argv)
    seed = tmp_path / "run" / "maml" / "seed0"
    seed.mkdir(parents=True)
    for change, message in (({"epochs": 150}, "was made with epochs=150; this run has epochs="),
                            # Another task regime: its tasks are other tasks.
                            ({"regime": "ours"}, "was made with regime='ours'")):  # fmt: skip
        theirs = {**store.identity(config, "maml"), "seed": 0, **change}
        (seed / "config.json").write_text(json.dumps(theirs))
        assert analyses.main(argv) == 2
        assert message in capsys.readouterr().err


def test_the_regime_names_the_default_directories_and_the_table():
    _, config, args = analyses.parse_args(["adapt-steps", *TINY, "--regime", "ours"])
    assert config.regime == "ours" and config.system_overrides == regime_overrides(
        "ours", "pendulum"
    )
    assert args.work == Path("runs/analyses/ours/pendulum")
    assert args.out == Path("results/analyses/ours")
    assert analyses._budget_text(config, 10).startswith("regime ours; preset quick")


def test_a_run_directory_of_the_same_configuration_is_reused():
    """The identity `experiments.store` checks is an ``experiments.run`` one, so
    ``--run DIR`` reuses the seeds of a run (or ``experiments.reproduce`` job) directory."""
    from experiments import config as run_config, store

    flags = ["--system", "pendulum", "--seeds", "0,1", "--out", "runs/x", "--no-progress"]
    ours = run_config.parse_args(flags)
    _, theirs, _ = analyses.parse_args(["adapt-steps", *flags[:4], "--run", "runs/x"])
    assert store.identity(theirs, "ro", "d") == store.identity(ours, "ro", "d")
    # Budget overrides are in the preset values, and so in the identity.
    _, wide, _ = analyses.parse_args(["adapt-steps", *flags[:4], "--run", "runs/x", "--width", "8"])
    assert store.identity(wide, "ro", "d")["width"] == 8
