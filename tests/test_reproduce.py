"""experiments.reproduce: the job list, the verdict lines, and a time budget that stops cleanly
and resumes where it stopped."""

import json

import pytest

from experiments import report, reproduce
from experiments.report import verdict_lines, verdict_table
from experiments.verdict import verdicts


def test_jobs_cover_every_paper_table():
    names = {(j.system, j.name) for j in reproduce.jobs(list(reproduce.systems.SYSTEMS))}
    for system in ("mass-spring", "pendulum", "duffing", "kepler", "dno", "tgc"):
        assert (system, "main") in names
    for system in ("mass-spring", "pendulum", "duffing", "kepler"):
        assert (system, "zero-init") in names
    # The other K of each varying-K table (Tables 4-8); K = default is the main job.
    assert {n for s, n in names if s == "mass-spring" and n.startswith("k")} == {"k10", "k30"}
    assert {n for s, n in names if s == "duffing" and n.startswith("k")} == {"k5", "k20"}
    assert {n for s, n in names if s == "kepler" and n.startswith("k")} == set()
    assert ("dno", "dno-targeted") in names


def _summary(values: dict, metric="trajectory_error") -> dict:
    return {m: {metric: {"mean": v}} for m, v in values.items()}


def test_verdict_counts_the_papers_orderings_in_ours_and_theirs():
    ordered = {"scratch": 0.9, "maml": 0.5, "reptile": 0.6, "anil": 0.7,
               "shift": 0.3, "fw": 0.2, "ro": 0.1, "mr": 0.15}  # fmt: skip
    (line,) = verdict_lines("pendulum", _summary(ordered))
    assert "ordering holds here" in line
    assert "modulations beating the best optimisation-based method 4/4 (paper 4/4)" in line
    # Paper Table 1, pendulum: ANIL (2.227) loses to Scratch (0.839); MR (0.146) is best.
    assert "optimisation-based beating Scratch 3/3 (paper 2/3)" in line
    assert "best ro (paper mr)" in line
    reversed_ = {m: 1.0 - v for m, v in ordered.items()}
    (line,) = verdict_lines("pendulum", _summary(reversed_))
    assert "does not hold" in line and "4/4" not in line.split("(paper")[0]
    # SSIM: higher is better.
    (line,) = verdict_lines("pendulum", _summary(reversed_, "ssim"))
    assert "ordering holds here" in line
    # The table form: the same counts, a row per (system, metric).
    table = verdict_table({"pendulum": verdicts("pendulum", _summary(ordered)),
                           "dno": verdicts("dno", _summary(reversed_))})  # fmt: skip
    assert "| pendulum | trajectory_error | holds | 4/4 / 4/4 | 3/3 / 2/3 | ro / mr |" in table
    assert "| dno | trajectory_error | does not hold | 0/4 / " in table
    assert len(table.splitlines()) == 4


def test_time_budget_stops_cleanly_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(reproduce, "RESERVE", 0.0)
    out = tmp_path / "rep"
    argv = ["--systems", "pendulum", "--jobs", "main", "--methods", "scratch,ro", "--seeds",
            "0", "--epochs", "1", "--time-budget", "0.001", "--out", str(out), "--no-progress"]  # fmt: skip
    run_dir = out / "pendulum-main"
    assert reproduce.main(argv) == 0  # one (job, method, seed) per call at the least
    assert "time budget reached" in capsys.readouterr().out
    assert (run_dir / "scratch" / "seed0" / "metrics.json").exists()
    assert not (run_dir / "ro" / "seed0" / "metrics.json").exists()
    tables = (out / "tables.md").read_text()
    assert (
        "| scratch |" in tables
        and "| ro |" not in tables
        and "Seeds finished: scratch 1, ro 0" in tables
    )
    # A partial job gets no verdict, in tables.md nor in summary.md's verdict table.
    assert "Verdict withheld: 1 of 2 (method, seed) units finished" in tables
    assert "the paper's ordering" not in tables
    summary = (out / "summary.md").read_text()
    assert "No verdict for pendulum: its job is partial." in summary
    assert "| pendulum | trajectory_error |" not in summary
    # --tables-only, without a budget: the tables of what is finished, nothing trained.
    tables_only = [a for a in argv if a not in ("--time-budget", "0.001")] + ["--tables-only"]
    assert reproduce.main(tables_only) == 0
    assert not (run_dir / "ro" / "seed0" / "metrics.json").exists()
    assert (out / "tables.md").read_text() == tables
    first = (run_dir / "scratch" / "seed0" / "metrics.json").stat().st_mtime_ns
    assert reproduce.main(argv) == 0  # continues with ro; scratch untouched; nothing left
    assert (run_dir / "scratch" / "seed0" / "metrics.json").stat().st_mtime_ns == first
    assert "time budget reached" not in capsys.readouterr().out
    tables = (out / "tables.md").read_text()
    assert "| ro |" in tables and "Seeds finished: scratch 1, ro 1" in tables
    assert "Verdict withheld" not in tables and "the paper's ordering" in tables
    summary = (out / "summary.md").read_text()
    assert "No verdict" not in summary
    assert tables.startswith("# Our numbers beside the paper's\n\n" + summary)
    assert "At a glance: trajectory_error of the main tables (ours / paper)" in summary
    assert "| ro | " in summary and "| pendulum | trajectory_error | does not hold | " in summary
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["methods"]) == {"scratch", "ro"}
    assert results["methods"]["ro"]["seeds"] == [0]
    assert results["figures"] == {"scratch": 0, "ro": 0}
    # A clone holds the records but not the trained states (.gitignore): --tables-only still
    # writes every table, keeps the figures as last drawn, and says why.
    (run_dir / "ro" / "seed0" / "adapted.eqx").unlink()
    drawn = (run_dir / "fields.png").stat().st_mtime_ns
    capsys.readouterr()
    assert reproduce.main(tables_only) == 0
    assert f"figures in {run_dir} not redrawn: 1 trained state(s)" in capsys.readouterr().out
    assert (run_dir / "fields.png").stat().st_mtime_ns == drawn
    assert (out / "tables.md").read_text() == tables
    assert json.loads((run_dir / "results.json").read_text()) == results


def test_bad_flags_are_named(capsys):
    for argv, message in ((["--systems", "spring"], "--systems: unknown 'spring'"),
                          (["--seeds", "0,0"], "--seeds must not repeat a seed"),
                          (["--methods", "sgd"], "--methods: unknown 'sgd'"),
                          (["--jobs", "table3"], "--jobs: unknown 'table3'"),
                          (["--time-budget", "0"], "--time-budget must be > 0")):  # fmt: skip
        with pytest.raises(SystemExit):
            reproduce.parse_args(argv)
        assert message in capsys.readouterr().err


def test_finished_work_of_other_flags_is_refused_until_restart(tmp_path, capsys):
    out = tmp_path / "rep"
    argv = ["--systems", "pendulum", "--jobs", "main", "--methods", "scratch", "--seeds", "0",
            "--epochs", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    assert reproduce.main(argv) == 0
    metrics = out / "pendulum-main" / "scratch" / "seed0" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    capsys.readouterr()
    # Fewer epochs than finished (more would extend the run from its checkpoint).
    assert reproduce.main([*argv, "--epochs", "1"]) == 2
    assert (
        f"error: {metrics.parent} was made with epochs=2; this run has epochs=1. Use --restart"
        in capsys.readouterr().err
    )
    assert metrics.stat().st_mtime_ns == stamp
    assert reproduce.main([*argv, "--epochs", "1", "--restart"]) == 0
    assert json.loads(metrics.read_text())["config"]["epochs"] == 1


def test_glance_puts_every_main_table_side_by_side():
    from experiments.config import RunConfig
    from experiments.paper import paper_value

    cell = lambda m: {"trajectory_error": {"mean": m, "std": 0.01, "per_seed": [m]}}
    mains = {
        "pendulum": ({"scratch": cell(0.8), "ro": cell(0.2)}, RunConfig(system="pendulum")),
        "dno": ({"scratch": cell(0.5), "ro": {"diverged": "epoch 3"}}, RunConfig(system="dno")),
    }
    text = report.glance(mains)
    assert "| method | pendulum | dno |" in text
    p, d = (
        paper_value("pendulum", "ro", "trajectory_error"),
        paper_value("dno", "ro", "trajectory_error"),
    )
    assert f"| ro | 0.200 ± 0.010 / {p:.3f} | diverged / {d:.3f} |" in text
    assert text.count("\n| ") == 3  # the header and one row per method
    # R² of the latent -> mu map: no paper column, and Scratch (no latent) has no row.
    r2 = lambda v: {"mu_r2": {"mean": v, "std": 0.0, "per_seed": [v]}}
    mains = {"pendulum": ({"scratch": cell(0.8), "ro": r2(0.9)}, RunConfig(system="pendulum")),
             "dno": ({"scratch": cell(0.5), "ro": r2(0.5)}, RunConfig(system="dno"))}  # fmt: skip
    text = report.glance(mains, "mu_r2")
    assert "| ro | 0.900 ± 0.000 | 0.500 ± 0.000 |" in text and "scratch" not in text


def test_varying_k_puts_each_k_beside_the_paper_at_that_k():
    from experiments.config import RunConfig
    from experiments.paper import paper_value

    cell = lambda m: {name: {"mean": m, "std": 0.0, "per_seed": [m]}
                      for name in ("trajectory_error", "field_error", "ssim")}  # fmt: skip
    main = RunConfig(system="pendulum")  # the default K = 10: the main job
    k20 = RunConfig(system="pendulum", shots=20)
    shots = {"pendulum": {20: ({"scratch": cell(0.7), "ro": cell(0.1)}, k20),
                          10: ({"scratch": cell(0.8), "ro": cell(0.2)}, main)}}  # fmt: skip
    text = report.varying_k_text(shots)
    assert "| method | pendulum K=10 | pendulum K=20 |" in text  # K ascending
    for k, ours in ((10, 0.2), (20, 0.1)):
        paper = paper_value("pendulum", "ro", "trajectory_error", k=k)
        assert f" {ours:.3f} ± 0.000 / {paper:.3f} " in text
    # Table 5's K = 10 column, not Table 1's, is the main job's reference here.
    assert paper_value("pendulum", "ro", "trajectory_error", k=10) != paper_value(
        "pendulum", "ro", "trajectory_error")  # fmt: skip
    assert "## Verdicts of the varying-K tables (trajectory_error)" in text
    assert text.count("| pendulum K=20 | trajectory_error |") == 1
    assert "field_error" not in text  # one metric: each job's full table is in tables.md
    # A K whose job is partial keeps its numbers but gets no verdict.
    text = report.varying_k_text(shots, partial=["pendulum K=20"])
    assert " 0.100 ± 0.000 / " in text and "| pendulum K=20 | trajectory_error |" not in text
    assert text.count("| pendulum K=10 | trajectory_error |") == 1
    assert "No verdict for pendulum K=20: its job is partial." in text
