import json
import math

import pytest

from experiments import run


def test_cli_runs_every_method_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "pend"
    argv = ["--system", "pendulum", "--epochs", "2", "--val-every", "1", "--shots", "2",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert run.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == set(run.METHODS)
    for method, metrics in results["methods"].items():
        for name in ("trajectory_error", "field_error", "ssim", "energy_drift"):
            assert math.isfinite(metrics[name]["mean"]), (method, name)
    for name in ("table.md", "fields.png", "trajectories.png", "validation.png", "kshot_mr.png"):
        assert (out / name).stat().st_size > 0
    assert "| ro |" in (out / "table.md").read_text()
    # Started again with the same --out, every (method, seed) is already done: nothing retrains.
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/metrics.json")}
    assert run.main(argv) == 0
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*/seed0/metrics.json")}


def test_cli_bad_input(capsys):
    with pytest.raises(SystemExit):
        run.parse_args(["--system", "spring"])
    assert "unknown system 'spring'; valid: mass-spring" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown method.*'sgd'.*valid: scratch, maml"):
        run.parse_args(["--methods", "ro,sgd"])
    with pytest.raises(SystemExit):
        run.parse_args(["--epochs", "0"])
    assert "--epochs must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.parse_args(["--seeds", "a,b"])
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err
