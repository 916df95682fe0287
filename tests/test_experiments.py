import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import pipeline, report, run
from experiments.registry import METHODS
from jaxmeta import systems


# One method of each kind (no meta-training, optimisation-based, auto-decoding) in the default
# run; every method in the slow one (each method's training, 2 epochs, costs ~20 s of compiling
# on 2 cores; every learner's own contract is tested on every method in test_meta).
@pytest.mark.parametrize("methods", [
    ("scratch", "maml", "mr"),  # MR: the k-shot figure is of MR
    pytest.param(tuple(METHODS), marks=pytest.mark.slow, id="every-method"),
])  # fmt: skip
def test_cli_runs_end_to_end_and_resumes(tmp_path, methods):
    out = tmp_path / "pend"
    argv = ["--system", "pendulum", "--epochs", "2", "--val-every", "1", "--shots", "2",
            "--methods", ",".join(methods), "--out", str(out), "--no-progress"]  # fmt: skip
    assert run.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == set(methods)
    for method, metrics in results["methods"].items():
        for name in ("trajectory_error", "field_error", "ssim", "energy_drift"):
            assert math.isfinite(metrics[name]["mean"]), (method, name)
    for name in ("table.md", "fields.png", "trajectories.png", "validation.png", "kshot_mr.png"):
        assert (out / name).stat().st_size > 0
    assert "| mr |" in (out / "table.md").read_text()
    # Started again with the same --out, every (method, seed) is already done: nothing retrains.
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/metrics.json")}
    assert run.main(argv) == 0
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/metrics.json")}
    # Scored again (metrics.json deleted): the finished checkpoint is loaded, not retrained,
    # and the recorded training time is the original one, not the load time.
    mr = out / "mr" / "seed0"
    first = json.loads((mr / "metrics.json").read_text())
    recorded = json.loads((mr / "checkpoints" / "train_seconds.json").read_text())
    assert first["train_seconds"] == recorded > 0  # kept beside the checkpoints
    (mr / "metrics.json").unlink()
    assert run.main(argv) == 0
    again = json.loads((mr / "metrics.json").read_text())
    assert again["train_seconds"] == first["train_seconds"]
    assert again["trajectory_error"] == pytest.approx(first["trajectory_error"], rel=1e-5)


def test_cli_bad_input(capsys):
    with pytest.raises(SystemExit):
        run.parse_args(["--system", "spring"])
    assert ("--system: unknown 'spring' (did you mean 'mass-spring'?); valid: mass-spring"
            in capsys.readouterr().err)  # fmt: skip
    # The example: a bad flag exits 2 (argparse's status), naming the flag.
    with pytest.raises(SystemExit) as exit_:
        run.parse_args(["--methods", "ro,mrr"])
    assert exit_.value.code == 2
    assert ("--methods: unknown 'mrr' (did you mean 'mr'?); valid: scratch, maml"
            in capsys.readouterr().err)  # fmt: skip
    with pytest.raises(SystemExit):
        run.parse_args(["--epochs", "0"])
    assert "--epochs must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.parse_args(["--seeds", "a,b"])
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err


def test_cli_more_shots_than_default_and_system_overrides(tmp_path):
    args = run.parse_args(["--system", "pendulum", "--shots", "12", "--set", "t1=0.3",
                           "--set", "param_ranges=((0.5, 1.0), (0.5, 1.0))",
                           "--latent-init", "zero"])  # fmt: skip
    assert args.set == {"t1": 0.3, "param_ranges": ((0.5, 1.0), (0.5, 1.0))}
    system = systems.get_system(args.system, **args.system_overrides)  # the regime, then --set
    more = pipeline.load_dataset(system, args.shots, 0, tmp_path)  # above the default K = 10
    assert more.train.xs.shape[1] == 12 and more.test.xs.shape[1] == 12
    assert more.train.xs.shape[2] == 4  # t1 = 0.3 at dt = 0.1: 4 points
    assert float(more.train.mu.min()) >= 0.5 and float(more.train.mu.max()) <= 1.0
    fewer = pipeline.load_dataset(system, 3, 0, tmp_path)  # below: the default dataset's first 3
    default = pipeline.load_dataset(system, None, 0, tmp_path)
    assert fewer.train.xs.shape[1] == 3
    assert (fewer.train.xs == default.train.xs[:, :3]).all()
    header = report.table_header(args, 12, "cpu")
    assert "K = 12" in header and "latent init zero" in header and "t1 = 0.3" in header


def test_cli_system_override_errors(capsys):
    with pytest.raises(SystemExit):
        run.parse_args(["--set", "gravity=3"])
    assert "--set 'gravity=3': expected FIELD=VALUE with FIELD one of: param_ranges" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        run.parse_args(["--set", "dt=fast"])
    assert "'fast' is not a Python literal" in capsys.readouterr().err
    argv = ["--system", "dno", "--set", "ic_bounds=((0, 1), (0, 1))"]
    assert run.main(argv) == run.EXIT_ERROR  # a one-line error, no traceback
    assert "error: --set: `ic_bounds` of dno needs 3 (low, high)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ('dt="0.1"', "`dt` must be a number, got dt='0.1'"),
        ("param_ranges=5", r"`param_ranges` of pendulum must be a tuple of \(low, high\) pairs"),
        ("mesh_points=2.5", "`mesh_points` must be an int, got mesh_points=2.5"),
        ("t1=0.1", r"`t1`=0.1 and `dt`=0.1 of pendulum give 2 saved time\(s\); at least 3"),
        ("dt=1e-9", "`dt`=1e-09 .* more than the 100,000 allowed: raise `dt` or shorten `t1`"),
        ("g=None", "`g` of pendulum must be a number, got g=None"),
    ],
)
def test_cli_bad_system_fields_are_one_line_errors(setting, match, tmp_path, capsys):
    assert run.main(["--set", setting, "--out", str(tmp_path / "out")]) == run.EXIT_ERROR
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: --set: ") and "\n" not in message
    assert re.search(match, message), message
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_cli_refuses_a_dataset_too_large_for_memory(tmp_path, capsys):
    argv = ["--shots", "1000000", "--out", str(tmp_path / "out"), "--no-progress"]
    assert run.main(argv) == run.EXIT_ERROR
    message = capsys.readouterr().err.strip()
    assert "\n" not in message
    assert re.match(r"error: The pendulum dataset needs about \d+ GiB .*1000000 support.*"
                    r"lower --shots, or raise --set dt=", message), message  # fmt: skip
    assert not list((tmp_path / "out").rglob("*.npz"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0,0"], "--seeds must not repeat a seed, got '0,0' (0 twice)"),
        (["--seeds", "2,1,2"], "--seeds must not repeat a seed, got '2,1,2' (2 twice)"),
        (["--seeds", "0,1.5"], "--seeds must be comma-separated integers, got '0,1.5'"),
        (["--seeds", "0,,1"], "--seeds must be comma-separated integers, got '0,,1'"),
        (["--seeds", ""], "--seeds must be comma-separated integers, got ''"),
        (["--seeds", "0,4294967296"], "--seeds must lie in [0, 2**32), got 4294967296"),
        (["--seeds", "-1"], "--seeds must lie in [0, 2**32), got -1"),
        (["--data-seed", "-1"], "--data-seed must lie in [0, 2**32), got -1"),
    ],
)
def test_cli_seed_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        run.parse_args(argv)
    assert message in capsys.readouterr().err


def test_cli_seeds_parse_as_given():
    assert run.parse_args(["--seeds", "3, 1,2"]).seeds == (3, 1, 2)
    assert run.parse_args(["--seeds", "4294967295"]).seeds == (2**32 - 1,)


@pytest.mark.parametrize("argv", [["--set", "dt=1e-9"], ["--shots", "1000000"]])
def test_cli_errors_print_one_line_and_no_traceback(argv, tmp_path):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", *argv, "--out", str(tmp_path / "out")],
        cwd=root, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2  # run.EXIT_ERROR: a bad flag or field, nothing trained
    # One line of ours (JAX may log its own lines first, e.g. about absent accelerators).
    assert "Traceback" not in proc.stderr and proc.stderr.count("error: ") == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: "), proc.stderr


def _fake_run(path, system, config, k, values):
    path.mkdir(parents=True)
    methods = {m: {"trajectory_error": {"mean": v, "std": 0.0}} for m, v in values.items()}
    config = {"shots": None, "latent_init": "mean", "set": {}, "preset": "quick",
              "epochs": None, "preset_values": {"epochs": 150}, "seeds": [0], **config}  # fmt: skip
    record = {"system": system, "config": config, "k": k, "methods": methods}
    (path / "results.json").write_text(json.dumps(record))
    return str(path)


def test_compare_labels_runs_and_picks_the_matching_paper_table(tmp_path):
    from experiments import compare

    k10 = _fake_run(tmp_path / "a", "pendulum", {}, 10, {"mr": 0.5, "maml": 0.25})
    k30 = _fake_run(tmp_path / "b", "pendulum", {"shots": 30}, 30, {"mr": 0.125})
    table = compare.compare([k10, k30], ("trajectory_error",))
    assert "K = 10: trajectory_error (ours / paper)" in table
    assert "K = 30: trajectory_error (ours / paper)" in table
    # Table 5 (varying K) of the paper: pendulum MR 0.1021 at K = 10, 0.0582 at K = 30.
    assert "| mr | 0.500 ± 0.000 / 0.102 | 0.125 ± 0.000 / 0.058 |" in table
    assert "| maml | 0.250 ± 0.000 / 0.527 | – / 0.296 |" in table
    zero = _fake_run(tmp_path / "c", "pendulum", {"latent_init": "zero"}, 10, {"mr": 0.375})
    table = compare.compare([k10, zero], ("trajectory_error",))
    # Table 1 (mean init) and Table 9 (zero init): pendulum MR 0.146 and 0.268.
    assert "| mr | 0.500 ± 0.000 / 0.146 | 0.375 ± 0.000 / 0.268 |" in table
    longer = _fake_run(tmp_path / "g", "pendulum", {"epochs": 1000}, 10, {"mr": 0.25})
    table = compare.compare([k10, longer], ("trajectory_error",))
    assert "150 epochs: trajectory_error" in table and "1000 epochs: trajectory_error" in table
    # A system changed by --set (DNO targeted sampling) has no paper value; the default has.
    dno = _fake_run(tmp_path / "e", "dno", {}, 10, {"mr": 0.25})
    narrow = _fake_run(
        tmp_path / "f", "dno", {"set": {"ic_bounds": [[-0.5, 0.5]]}}, 10, {"mr": 0.1}
    )
    table = compare.compare([dno, narrow], ("trajectory_error",))
    assert "| mr | 0.250 ± 0.000 / 0.167 | 0.100 ± 0.000 / – |" in table
    other = _fake_run(tmp_path / "d", "dno", {}, 10, {"mr": 0.1})
    with pytest.raises(SystemExit, match="different systems"):
        compare.compare([k10, other])
    with pytest.raises(SystemExit, match="has no results.json"):
        compare.compare([str(tmp_path / "missing")])
