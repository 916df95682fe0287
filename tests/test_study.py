"""The pre-registered study: its units, its tables and its verdict rules."""

import json

import pytest

from experiments import store, study, study_report


def test_the_study_runs_scores_both_protocols_and_resumes(tmp_path, capsys, short_converged):
    # One unit (a variant beside the base, so its settings reach the record): the base
    # variant's training is experiments.run's default, tested there.
    argv = ["--systems", "pendulum", "--variants", "persistent", "--methods", "ro",
            "--epochs", "1", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert study.main(argv) == 0
    out = capsys.readouterr().out
    assert "e2000/pendulum/persistent/ro: trajectory error" in out
    assert "e2000/pendulum/base/" not in out
    tables = (tmp_path / "tables.md").read_text()
    assert "| persistent | ro |" in tables and "| base | ro |" not in tables
    assert "verdict withheld, 0 of 8 methods finished" in tables
    assert tables.count("| variant | method |") == 1  # pendulum's; no empty table elsewhere
    assert "Units finished: 1 of 108" in tables
    assert "| converged | persistent | 0 of 6: none | undecided (6 system(s) missing) |" in tables
    record = json.loads((tmp_path / "e2000" / "pendulum" / "persistent" / "ro" / "seed2"
                         / "metrics.json").read_text())  # fmt: skip
    assert record["config"]["latent_state"] == "persistent" and record["config"]["converged"]
    assert {"train_spread", "paper"} <= set(record["latents"])
    assert {"support_loss", "steps", "seconds", "latents"} <= set(record["converged"])
    # One process ran it: nothing earlier to add, and its wall time is not marked.
    assert record["unit_seconds_earlier"] == 0.0 and record["unit_seconds"] > 0
    assert study_report.LAST_PROCESS not in tables
    # Again: everything is finished, nothing runs.
    assert study.main(argv) == 0
    assert "trajectory error" not in capsys.readouterr().out.split("# The study")[0]


def test_the_deadline_stops_at_the_last_checkpoint_that_fits():
    clock = iter([0.0, 10.0, 25.0, 33.0]).__next__  # the readings, in order; no more
    callback = study.deadline_callback(40.0, epochs=5, clock=clock)  # reads 0.0
    callback("best", 1)  # only a saved `last` checkpoint counts: no reading
    callback("chunk", 1)
    callback("last", 1)  # 10.0: the next at about 20.0 fits
    callback("last", 2)  # 25.0: the next at about 40.0 fits (at the deadline, not after)
    with pytest.raises(study.OutOfTime) as stop:
        callback("last", 3)  # 33.0: the next at about 41.0 would not
    assert stop.value.args == (3,)
    callback("last", 5)  # training is over: nothing raised, the clock not read


def test_a_budget_starts_a_unit_while_its_next_checkpoint_fits(tmp_path, capsys, monkeypatch):
    # Training is faked (the callback's stop propagating through a real training, and the
    # resume from its checkpoint, are tested in test_run_failures): the budget's bookkeeping.
    ro = study.Unit("e2000", "pendulum", study.VARIANTS[1], "ro")
    aside = tmp_path / "aside"  # the estimate of a unit half trained
    config = study.unit_config(ro, aside, progress=False, epochs=100)
    whole = study.PROJECTION["pendulum"]["ro"] * 100  # no unit of its kind has finished
    assert study.remaining(ro, config, aside) == whole
    last = store.checkpoint_dir(config, "ro", config.seeds) / "last.json"
    last.parent.mkdir(parents=True)
    last.write_text(json.dumps({"epoch": 50}))  # what a checkpoint's header holds
    assert study.remaining(ro, config, aside) == whole / 2

    def argv(minutes):
        return ["--systems", "pendulum", "--variants", "persistent", "--methods", "ro,fw",
                "--epochs", "100", "--out", str(tmp_path / "study"), "--no-progress",
                "--time-budget", str(minutes)]  # fmt: skip

    ran = []

    def ro_trains_fw_stops(unit, config, callback):
        ran.append(unit.method)
        if unit.method == "fw":  # what the deadline callback raises (tested above)
            raise study.OutOfTime(50)
        return True  # not diverged (faked: nothing written, so the unit is still left)

    # Checkpoints every 50 of the 100 epochs: one interval of a unit is about 8.5 s of the
    # projection, the whole about 17 s. With 16.5 s left both start, the second although
    # the whole of it would not fit (its checkpoints stop it within the budget).
    interval = study.PROJECTION["pendulum"]["fw"] * 50
    monkeypatch.setattr(study, "RESERVE", 0.0)
    monkeypatch.setattr(study, "run_unit", ro_trains_fw_stops)
    assert interval < 16.5 < 2 * interval
    assert study.main(argv(16.5 / 60)) == 0
    out = capsys.readouterr().out
    assert ran == ["ro", "fw"]
    assert "e2000/pendulum/persistent/fw stopped at its checkpoint of epoch 50 of 100" in out
    assert "would not fit" not in out
    assert "2 unit(s) of stage e2000 left" in out

    # The locks are released, but with less time left than one interval nothing starts.
    interval = study.PROJECTION["pendulum"]["ro"] * 50
    assert study.main(argv(0.5 * interval / 60)) == 0
    out = capsys.readouterr().out
    assert ran == ["ro", "fw"]
    assert f"next e2000/pendulum/persistent/ro would not fit (~{interval / 60:.1f} min" in out
    # It names what is short: the time left, not a budget used up.
    assert f"of {0.5 * interval / 60:g} min used" in out
    assert f"{0.5 * interval / 60:.1f} min left for training" in out


def _fake(found, stage, system, variant, method, paper, converged):
    record = lambda v, c: {"trajectory_error": v, "converged": {"trajectory_error": c}}
    found[stage, system, variant, method] = [record(paper, converged)] * 3


def test_rule_two_needs_both_carriers_on_five_systems():
    found = {}
    for i, system in enumerate(study.SYSTEMS):
        for m, e in (("maml", 0.3), ("reptile", 0.2), ("anil", 0.4)):
            _fake(found, "e2000", system, "base", m, e, e)
        # Paper protocol: the carriers lose to Reptile (0.2) everywhere; converged: they win
        # on five systems (not the last).
        win = 0.1 if i < 5 else 0.3
        for c in ("ro", "fw"):
            _fake(found, "e2000", system, "base", c, 0.25, win)
    rows = {tuple(r.split(" | ")[:2]): r for r in study_report.choice_verdicts(found, "e2000")}
    assert rows["| paper", "base"].endswith("| does not hold |")
    assert "5 of 6" in rows["| converged", "base"] and rows["| converged", "base"].endswith(
        "| holds; flips it |"
    )
    assert "undecided" in rows["| paper", "persistent"]
    # Decided before every system has run, when the missing ones cannot change it: said so.
    for system in study.SYSTEMS[:2]:
        for c in ("ro", "fw"):
            _fake(found, "e2000", system, "persistent", c, 0.25, 0.1)
    rows = {tuple(r.split(" | ")[:2]): r for r in study_report.choice_verdicts(found, "e2000")}
    assert rows["| paper", "persistent"].endswith(
        "| 0 of 6: none | does not hold (4 system(s) missing cannot change it) |"
    )
    assert rows["| converged", "persistent"].endswith("| undecided (4 system(s) missing) |")


def test_beside_the_rules_the_baseline_keeps_its_better_protocol():
    found = {}
    # MAML overfits when fitted longer (0.05 -> 0.10); the modulations' converged errors are
    # 0.07: they beat MAML's converged score but not its 100-step one.
    for m, paper, conv in (("maml", 0.05, 0.10), ("reptile", 0.2, 0.2), ("anil", 0.4, 0.3)):
        _fake(found, "e2000", "pendulum", "base", m, paper, conv)
    for m in ("shift", "fw", "ro", "mr"):
        _fake(found, "e2000", "pendulum", "base", m, 0.3, 0.07 if m != "mr" else 0.04)
    line = study_report.either_protocol(found, "e2000", "pendulum")
    assert line.endswith("(maml, paper, 0.050): 1/4 (mr)")
    del found["e2000", "pendulum", "base", "anil"]
    assert study_report.either_protocol(found, "e2000", "pendulum") is None


def test_the_protocol_figure_draws_the_systems_with_finished_base_units(tmp_path):
    found = {}
    _fake(found, "e2000", "pendulum", "base", "maml", 0.2, 0.1)
    _fake(found, "e2000", "kepler", "persistent", "ro", 0.3, 0.2)  # no base unit: not drawn
    path = tmp_path / "e2000-protocols.png"
    assert study_report.protocol_figure(found, "e2000", path) == ["pendulum"]
    assert path.read_bytes().startswith(b"\x89PNG")
    assert study_report.protocol_figure(found, "e10000", tmp_path / "none.png") == []
    assert not (tmp_path / "none.png").exists()


def test_a_wall_time_from_before_earlier_processes_counted_is_marked():
    old, new = {"unit_seconds": 90.0}, {"unit_seconds": 90.0, "unit_seconds_earlier": 30.0}
    unknown = {"unit_seconds": 90.0, "unit_seconds_earlier": None}  # an old checkpoint resumed
    assert study_report._wall([old]) == study_report._wall([unknown]) == "1.5†"
    assert study_report._wall([new]) == "1.5"


def test_rule_three_picks_the_variant_closest_below_the_base_once_stage_e2000_is_complete():
    found = {}
    # Relative to base (0.2), over six systems and both carriers: contract 0.5, reg-weak
    # 1.5 on five systems and 0.1 on the sixth (mean 1.267), the others 1.0.
    for i, system in enumerate(study.SYSTEMS):
        for c in study.CARRIERS:
            _fake(found, "e2000", system, "base", c, 0.3, 0.2)
            for variant in study.VARIANT_NAMES[1:]:
                ratio = {"contract": 0.5, "reg-weak": 1.5 if i else 0.1}.get(variant, 1.0)
                _fake(found, "e2000", system, variant, c, 0.3, 0.2 * ratio)
    scores = study_report.variant_ratios(found)
    assert abs(scores["contract"] - 0.5) < 1e-12 and abs(scores["persistent"] - 1.0) < 1e-12
    assert abs(scores["reg-weak"] - (5 * 1.5 + 0.1) / 6) < 1e-12
    assert study_report.long_variant(found) == "contract"
    # Stage e10000's rule 2 judges only what that stage trains: the base variant and the pick.
    rule_two = lambda: {r.split(" | ")[1] for r in study_report.choice_verdicts(found, "e10000")}
    assert rule_two() == {"base", "contract"}
    # One carrier of one variant on one system missing: undecided, and named so.
    del found["e2000", study.SYSTEMS[-1], "reg-mid", study.CARRIERS[0]]
    assert study_report.variant_ratios(found)["reg-mid"] is None
    assert study_report.long_variant(found) is None
    assert "Picked: undecided" in "\n".join(study_report._rule_three(found))
    assert rule_two() == {"base"}


def test_stage_e10000_waits_for_rule_three_except_for_the_base_variant(
    tmp_path, capsys, monkeypatch
):
    out = ["--out", str(tmp_path)]
    assert study.main(["--stage", "e10000", *out]) == study.run.EXIT_ERROR
    assert "--stage e2000 first, or --variants base" in capsys.readouterr().err
    args = study.parse_args(["--stage", "e10000", "--variants", "base", *out])
    todo = study.selected_units(args)
    assert {(u.system, u.variant.name) for u in todo} == {
        (s, "base") for s in study.LONG_SYSTEMS
    } and len(todo) == len(study.LONG_SYSTEMS) * len(study.METHODS)
    # The tables need no pick: they show what has finished, and what is left, estimated from
    # the protocol's projection while no unit of a (system, method) has finished.
    capsys.readouterr()
    assert study.main(["--stage", "e10000", "--tables-only", *out]) == 0
    hours = sum(study.PROJECTION[u.system].get(u.method, 0.0) * 10_000 for u in todo) / 3600
    assert (f"{len(todo)} unit(s) of stage e10000 left: about {hours:.1f} h of one process"
            in capsys.readouterr().out)  # fmt: skip
    # Once rule 3 has picked, the units left include the pick's, with --tables-only too.
    monkeypatch.setattr(study_report, "long_variant", lambda found: "persistent")
    for flags in ([], ["--tables-only"]):
        todo = study.selected_units(study.parse_args(["--stage", "e10000", *flags, *out]))
        picked = [u for u in todo if u.variant.name == "persistent"]
        assert len(todo) == len(study.LONG_SYSTEMS) * (len(study.METHODS) + len(study.CARRIERS))
        assert {u.method for u in picked} == set(study.CARRIERS)
