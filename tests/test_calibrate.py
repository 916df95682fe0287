"""Task regimes (`experiments.regimes`), the calibration command and the regime flag of
``experiments.run``."""

import dataclasses
import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from experiments import calibrate, compare, pipeline, regimes, report, run
from experiments.config import PRESETS
from experiments.paper import paper_value
from jaxmeta import data, systems


@pytest.mark.parametrize("regime", list(regimes.REGIMES))
def test_every_regime_builds_every_system(regime):
    assert set(regimes.REGIMES[regime]) == set(systems.SYSTEMS)
    for name in systems.SYSTEMS:
        system = systems.get_system(name, **regimes.regime_overrides(regime, name))
        for field, value in regimes.regime_overrides(regime, name).items():
            assert getattr(system, field) == value


def test_regime_ours_is_the_old_system():
    for name, cls in systems.SYSTEMS.items():
        assert regimes.regime_overrides("ours", name) == {}
        assert systems.get_system(name, **regimes.regime_overrides("ours", name)) == cls()
    config = run.parse_args(["--system", "duffing", "--regime", "ours"])
    assert config.regime == "ours" and config.system_overrides == {}
    assert systems.get_system(config.system, **config.system_overrides) == systems.Duffing()
    assert "regime ours" in report.table_header(config, 10, "cpu")


def test_regime_errors(capsys):
    with pytest.raises(ValueError, match="unknown regime 'paper'; valid: ours"):
        regimes.regime_overrides("paper", "pendulum")
    with pytest.raises(ValueError, match="unknown system 'spring'"):
        regimes.regime_overrides("ours", "spring")
    with pytest.raises(SystemExit):
        run.parse_args(["--regime", "paper"])
    assert "--regime: invalid choice: 'paper'" in capsys.readouterr().err


def test_set_overrides_on_top_of_the_default_regime():
    default = run.parse_args(["--system", "pendulum"])
    assert default.regime == regimes.DEFAULT_REGIME == "paper-like"
    base = regimes.regime_overrides("paper-like", "pendulum")
    assert default.system_overrides == base
    assert "regime paper-like" in report.table_header(default, 10, "cpu")
    config = run.parse_args(["--system", "pendulum", "--set", "t1=0.5"])
    assert config.set == {"t1": 0.5}
    assert config.system_overrides == {**base, "t1": 0.5}
    system = systems.get_system(config.system, **config.system_overrides)
    assert system.t1 == 0.5
    assert all(getattr(system, f) == v for f, v in base.items() if f != "t1")
    # --set replaces a field the regime sets, and only that field.
    field, value = next(iter(base.items()))
    other = run.parse_args(["--system", "pendulum", "--set", f"{field}={value!r}"])
    assert other.system_overrides == base
    recorded = config.to_json()
    assert recorded["regime"] == "paper-like" and recorded["set"] == {"t1": 0.5}
    assert recorded["regime_overrides"] == json.loads(json.dumps(base))


def test_paper_values_kept_for_regimes_dropped_for_set():
    # Table 1: Scratch on the pendulum, 0.839, under every named regime; none under --set.
    for regime in regimes.REGIMES:
        config = run.parse_args(["--system", "pendulum", "--regime", regime])
        assert paper_value("pendulum", "scratch", "trajectory_error",
                           **report.paper_settings(config)) == 0.839  # fmt: skip
    config = run.parse_args(["--system", "pendulum", "--set", "t1=0.5"])
    assert paper_value("pendulum", "scratch", "trajectory_error",
                       **report.paper_settings(config)) is None  # fmt: skip


def test_compare_labels_regimes(tmp_path):
    def fake(path, config):
        path.mkdir()
        base = {"shots": None, "latent_init": "mean", "set": {}, "preset": "quick",
                "epochs": None, "preset_values": {"epochs": 150}, "seeds": [0]}  # fmt: skip
        methods = {"scratch": {"trajectory_error": {"mean": 0.5, "std": 0.0}}}
        record = {"system": "pendulum", "config": {**base, **config}, "k": 10,
                  "methods": methods}  # fmt: skip
        (path / "results.json").write_text(json.dumps(record))
        return str(path)

    old = fake(tmp_path / "old", {})  # written before regimes existed: the ours regime
    new = fake(tmp_path / "new", {"regime": "paper-like"})
    table = compare.compare([old, new], ("trajectory_error",))
    assert "regime ours: trajectory_error" in table
    assert "regime paper-like: trajectory_error" in table
    assert "| scratch | 0.500 ± 0.000 / 0.839 | 0.500 ± 0.000 / 0.839 |" in table


def test_fd_error_matches_its_leading_term():
    # Mass-spring with m = k = 1: states turn on circles of radius r at unit angular speed,
    # so |dx/dt| = |d³x/dt³| = r. Centred differences are off by r h²/6 at the N - 2 inner
    # points, the second-order one-sided ends by r h²/3: the relative error over all states
    # is h² √(((N - 2)/36 + 2/9) / N), up to relative corrections O(h²), below 0.5% here.
    def fd_error(dt):
        system = systems.get_system("mass-spring", param_ranges=((1.0, 1.0001),) * 2, dt=dt)
        dataset = data.generate_dataset(system, jax.random.key(0), num_functions=10)
        return float(calibrate._data_properties(system, dataset.test)["fd_error"].mean())

    for dt, n in ((0.1, 31), (0.05, 61)):
        leading = dt**2 * math.sqrt(((n - 2) / 36 + 2 / 9) / n)
        assert fd_error(dt) == pytest.approx(leading, rel=0.01)


class _Exact(eqx.Module):
    system: systems.AbstractSystem = eqx.field(static=True)
    mu: jax.Array

    def __call__(self, x):
        return self.system.vector_field(x, self.mu)


def test_scores_of_the_exact_field():
    # Each test function's own exact field scores 0 (velocity and field error) and SSIM 1;
    # a mismatch between models and functions (e.g. a permutation) would not.
    system = systems.get_system("duffing", mesh_points=20)
    dataset = data.generate_dataset(system, jax.random.key(1), num_functions=30)
    test = dataset.test
    models = eqx.filter_vmap(lambda mu: _Exact(system, mu))(test.mu)
    scores = calibrate._scores(system, models, test, system.mesh())
    assert float(abs(scores["trajectory_error"]).max()) < 1e-6
    assert float(abs(scores["field_error"]).max()) < 1e-6
    assert float(abs(scores["ssim"] - 1).max()) < 1e-5
    shuffled = eqx.filter_vmap(lambda mu: _Exact(system, mu))(jnp.roll(test.mu, 1, axis=0))
    assert float(calibrate._scores(system, shuffled, test, None)["trajectory_error"].min()) > 1e-3


def test_coarsen_mesh():
    tgc = systems.get_system("tgc")
    assert calibrate.coarsen_mesh(tgc, 30_000).mesh_points == 13  # 13⁴ = 28,561
    assert calibrate.coarsen_mesh(tgc, 13**4).mesh_points == 13
    dno = systems.get_system("dno")
    assert calibrate.coarsen_mesh(dno, 30_000) is dno  # 30³ = 27,000 fits
    kepler = systems.get_system("kepler")
    assert calibrate.coarsen_mesh(kepler, 10) is kepler  # no mesh


def test_calibrate_writes_regime_and_candidate_tables(tmp_path, monkeypatch):
    small = ["--systems", "pendulum", "--seeds", "0,1", "--width", "8", "--depth", "1",
             "--steps", "5", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path)]  # fmt: skip
    monkeypatch.setitem(regimes.REGIMES, "ours", {"pendulum": {"t1": 0.5}})
    assert calibrate.main(["--regime", "ours", *small]) == 0
    table = (tmp_path / "ours-steps5.md").read_text()
    assert "| pendulum | `t1=0.5` | 10 |" in table and "| 0.839 |" in table  # paper's Scratch
    record = json.loads((tmp_path / "ours-steps5.json").read_text())["systems"]["pendulum"]
    assert len(record["trajectory_error"]["per_seed"]) == 2
    for metric in ("trajectory_error", "field_error", "ssim"):
        assert math.isfinite(record[metric]["mean"]) and record[metric]["std"] >= 0
    assert 0 < record["fd_error"] < 0.05 and record["mesh_points"] == 100
    cands = (calibrate.Candidate("pendulum", "short", {"t1": 0.5}),
             calibrate.Candidate("pendulum", "short, g=9.81", {"t1": 0.5, "g": 9.81}))  # fmt: skip
    monkeypatch.setattr(calibrate, "CANDIDATES", cands)
    assert calibrate.main(["--candidates", "--fresh", *small]) == 0
    table = (tmp_path / "candidates-steps5.md").read_text()
    assert "| pendulum: short | `t1=0.5` |" in table
    assert "| pendulum: short, g=9.81 | `t1=0.5`; `g=9.81` |" in table
    rows = json.loads((tmp_path / "candidates-steps5.json").read_text())
    assert [r["label"] for r in rows] == ["short", "short, g=9.81"]
    # Measured anew (--fresh), the same system, seeds and data give the same numbers.
    assert rows[0]["trajectory_error"] == record["trajectory_error"]
    # Without --fresh, both are read back from measurements.json: nothing is measured.
    assert len(json.loads((tmp_path / "measurements.json").read_text())) == 2

    def fail(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(calibrate, "measure", fail)
    assert calibrate.main(["--candidates", *small]) == 0
    assert json.loads((tmp_path / "candidates-steps5.json").read_text()) == rows


def test_calibrate_bad_flags(capsys):
    with pytest.raises(SystemExit):
        calibrate.parse_args(["--systems", "pendulum,spring"])
    assert "--systems: unknown 'spring'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        calibrate.parse_args(["--steps", "0"])
    assert "--steps must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        calibrate.parse_args(["--seeds", "0,0"])
    assert "--seeds must not repeat a seed" in capsys.readouterr().err


def test_candidates_build_and_the_regimes_were_measured():
    names = [c.name for c in calibrate.CANDIDATES]
    assert len(names) == len(set(names))
    for cand in calibrate.CANDIDATES:
        system = systems.get_system(cand.system, **cand.overrides)
        default = systems.SYSTEMS[cand.system]()
        changed = {f.name for f in dataclasses.fields(system)
                   if getattr(system, f.name) != getattr(default, f.name)}  # fmt: skip
        assert changed <= set(cand.overrides), cand.name
    # Every system has its "ours" baseline, and every regime's choice is a measured candidate.
    measured = {(c.system, json.dumps(c.overrides, sort_keys=True)) for c in calibrate.CANDIDATES}
    for regime in regimes.REGIMES:
        for name in systems.SYSTEMS:
            key = (name, json.dumps(regimes.regime_overrides(regime, name), sort_keys=True))
            assert key in measured, (regime, name)


def test_calibrate_scores_scratch_as_experiments_run_does(tmp_path):
    # The same data, seed, width and adaptation key: the calibration's Scratch number is the
    # one experiments.run reports for scratch.
    argv = ["--system", "pendulum", "--regime", "ours", "--methods", "scratch", "--set",
            "t1=0.5", "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert run.main(argv) == 0
    ran = json.loads((tmp_path / "run" / "results.json").read_text())["methods"]["scratch"]
    preset = PRESETS["quick"]
    system = systems.get_system("pendulum", t1=0.5)
    record = calibrate.measure(system, [0], tmp_path / "data", width=preset.width,
                               depth=preset.depth)  # fmt: skip
    for metric in ("trajectory_error", "field_error", "ssim"):
        assert record[metric]["mean"] == pytest.approx(ran[metric]["mean"], rel=1e-5), metric


def test_run_refuses_an_out_of_another_regime(tmp_path, capsys):
    # results.json from before regimes existed (no "regime" key): a run of the ours regime.
    (tmp_path / "results.json").write_text(json.dumps({"config": {"set": {}}}))
    assert run.main(["--system", "pendulum", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "holds a run of regime 'ours', not 'paper-like'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="holds a run of regime 'ours', not 'paper-like'"):
        pipeline.check_out_regime(run.parse_args(["--out", str(tmp_path)]))
    pipeline.check_out_regime(run.parse_args(["--out", str(tmp_path), "--regime", "ours"]))
