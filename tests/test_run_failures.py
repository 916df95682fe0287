"""experiments.run when things go wrong: stored work of another configuration is refused by
name (or discarded with --restart), a killed run resumes and says so, a corrupt checkpoint is
a one-line error, a diverged method exits 3, and bad flags are refused before any data."""

import json
import shutil

import jax
import pytest

from experiments import pipeline, run, scoring, store
from jaxmeta import systems

FAST = ["--system", "pendulum", "--val-every", "1", "--shots", "2", "--no-progress"]
OTHER_FAMILY = "param_ranges=((1.0, 2.0), (1.0, 2.0))"


class Killed(BaseException):
    """The process dies (not an `Exception`: no handler runs)."""


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """The pendulum dataset's cache, made once and copied into each run's --out."""
    directory = tmp_path_factory.mktemp("cache")
    pipeline.load_dataset(systems.Pendulum(), None, 0, directory)
    return directory


def _out(tmp_path, data_cache):
    out = tmp_path / "pend"
    shutil.copytree(data_cache, out / "data")
    return out


def test_stored_results_are_reused_only_by_their_own_configuration(tmp_path, data_cache, capsys):
    out = _out(tmp_path, data_cache)
    base = [*FAST, "--methods", "scratch", "--epochs", "2", "--out", str(out)]
    assert run.main(base) == 0
    metrics = out / "scratch" / "seed0" / "metrics.json"
    record, stamp = json.loads(metrics.read_text()), metrics.stat().st_mtime_ns
    results = json.loads((out / "results.json").read_text())
    assert record["config"]["epochs"] == 2 and record["config"]["seed"] == 0
    assert record["config"]["data"] == results["data_sha256"] and len(results["data_sha256"]) == 64
    capsys.readouterr()
    # Another --val-every (a training setting; --latent-init is a test-time one): refused,
    # naming it, the old metrics untouched.
    assert run.main([*base, "--val-every", "2", "--latent-init", "zero"]) == run.EXIT_ERROR
    assert (
        f"error: {out / 'scratch' / 'seed0'} was made with val_every=1; this run has "
        "val_every=2. Use --restart to discard it, or another --out.\n"
    ) == capsys.readouterr().err
    assert metrics.stat().st_mtime_ns == stamp
    # Another family of the same shapes: refused before its data is generated.
    caches = sorted((out / "data").iterdir())
    assert run.main([*base, "--set", OTHER_FAMILY]) == run.EXIT_ERROR
    assert "was made with set={}; this run has set={'param_ranges'" in capsys.readouterr().err
    assert sorted((out / "data").iterdir()) == caches
    # --restart discards the stale seed and redoes it under the new configuration.
    assert run.main([*base, "--val-every", "2", "--restart"]) == 0
    assert f"discarding {out / 'scratch' / 'seed0'}: was made with val_every=1" in (
        capsys.readouterr().out
    )
    assert json.loads(metrics.read_text())["config"]["val_every"] == 2
    # --devices, --out's spelling and --no-progress are not identity: the work is reused.
    stamp = metrics.stat().st_mtime_ns
    assert run.main([*base, "--val-every", "2", "--devices", "1"]) == 0
    assert "scratch  reusing 1 finished seed(s)" in capsys.readouterr().out
    assert metrics.stat().st_mtime_ns == stamp
    # A finished seed keeps one JSON, its metrics, which carry its identity.
    assert sorted(p.name for p in (out / "scratch" / "seed0").iterdir() if p.suffix == ".json") == [
        "metrics.json"
    ]
    # Results without a recorded configuration (an older jaxmeta) are not trusted either.
    record = json.loads(metrics.read_text())
    del record["config"]
    metrics.write_text(json.dumps(record))
    assert run.main([*base, "--val-every", "2"]) == run.EXIT_ERROR
    assert "holds results with no readable identity" in capsys.readouterr().err


def test_a_killed_run_resumes_and_a_corrupt_checkpoint_needs_restart(tmp_path, data_cache, capsys):
    out = _out(tmp_path, data_cache)
    base = [*FAST, "--methods", "ro", "--epochs", "2", "--out", str(out)]

    def killed_after_the_first_checkpoint(event, epoch):
        if event == "last":
            raise Killed

    with pytest.raises(Killed):
        run.main(base, callback=killed_after_the_first_checkpoint)
    seed = out / "ro" / "seed0"
    assert not (seed / "metrics.json").exists() and (seed / "checkpoints" / "last.json").exists()
    # The killed process's training time up to its checkpoint is kept beside it...
    killed = json.loads((seed / "checkpoints" / "train_seconds.json").read_text())
    assert killed > 0
    capsys.readouterr()
    # Restarted as another family, the unfinished run is refused (by name, before any data).
    assert run.main([*base, "--set", OTHER_FAMILY]) == run.EXIT_ERROR
    assert f"error: {seed} was made with set={{}}" in capsys.readouterr().err
    # Restarted as itself, it says where it resumes and finishes.
    assert run.main(base) == 0
    assert "resuming ro seed 0 from epoch 1 to 2 (" in capsys.readouterr().out
    resumed = json.loads((seed / "metrics.json").read_text())
    assert resumed["history"]["val_epoch"] == [1, 2]
    # ...and counted in the finished run's (the one seed's share is all of it).
    assert resumed["train_seconds"] > killed
    # A corrupt checkpoint: a one-line error naming it, until --restart discards it.
    (seed / "metrics.json").unlink()
    header = json.loads((seed / "checkpoints" / "last.json").read_text())
    (seed / "checkpoints" / header["payload"]).write_bytes(b"corrupt")
    assert run.main(base) == run.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: `checkpoint_dir`=") and err.count("\n") == 1
    assert "truncated or corrupt (SHA-256 mismatch); refusing it. Use --restart" in err
    assert run.main([*base, "--restart"]) == 0
    assert f"discarding {seed / 'checkpoints'}: " in capsys.readouterr().out
    assert (seed / "metrics.json").exists()


def test_a_diverged_method_exits_3_with_the_others_reported(tmp_path, data_cache):
    # The NaN guard's error (its detection is tested in test_meta), raised in ro's first
    # chunk through the `callback` hook; Scratch trains no chunk.
    def diverging(event, epoch):
        raise FloatingPointError(f"Non-finite training loss at epoch {epoch - 1}, meta-step 0")

    out = _out(tmp_path, data_cache)
    argv = [*FAST, "--methods", "scratch,ro", "--epochs", "1", "--out", str(out)]
    assert run.main(argv, callback=diverging) == run.EXIT_DIVERGED == 3
    methods = json.loads((out / "results.json").read_text())["methods"]
    assert "Non-finite training loss at epoch 0" in methods["ro"]["diverged"]
    assert "trajectory_error" in methods["scratch"]
    assert "| ro | diverged |" in (out / "table.md").read_text()


def test_a_unit_stamps_its_wall_time_with_the_killed_processes_and_records_a_divergence(
    tmp_path, data_cache
):
    # The bookkeeping the study and experiments.reproduce share (scoring.run_unit).
    argv = [*FAST, "--methods", "ro", "--epochs", "2", "--seeds", "0,1"]
    config = run.parse_args([*argv, "--out", str(_out(tmp_path, data_cache))])
    prep = pipeline.prepare(config)

    def killed_after_the_first_checkpoint(event, epoch):
        if event == "last":
            raise Killed

    with pytest.raises(Killed):
        scoring.run_unit(config, prep, "ro", callback=killed_after_the_first_checkpoint)
    killed = pipeline.training_seconds(store.checkpoint_dir(config, "ro", config.seeds))
    assert killed > 0
    records = scoring.run_unit(config, prep, "ro")
    for seed, record in zip(config.seeds, records):
        assert record == store.read_json(store.metrics_path(config, "ro", seed))
        assert record["unit_seconds_earlier"] == killed < record["unit_seconds"]
    assert records[0]["unit_seconds"] == records[1]["unit_seconds"]  # one unit, one time
    # ...and the machine it ran on, as this process sees it.
    assert records[0]["machine"] == records[1]["machine"] == scoring.machine()
    assert records[0]["machine"]["jax"] == jax.__version__

    def diverging(event, epoch):
        raise FloatingPointError(f"Non-finite training loss at epoch {epoch - 1}, meta-step 0")

    shutil.copytree(data_cache, tmp_path / "diverges" / "data")
    config = run.parse_args([*argv, "--out", str(tmp_path / "diverges")])
    with pytest.raises(FloatingPointError, match="Non-finite"):
        scoring.run_unit(config, pipeline.prepare(config), "ro", callback=diverging)
    for seed in config.seeds:
        why = store.diverged_path(config, "ro", seed).read_text()
        assert why.startswith("Non-finite training loss at epoch")
        assert not store.metrics_path(config, "ro", seed).exists()


def test_bad_devices_are_refused_before_any_data(tmp_path, capsys):
    for devices, message in (("3", "`devices`=3 does not divide the F=70 training functions"),
                             ("7", "`devices`=7 exceeds the 1 available CPU")):  # fmt: skip
        out = tmp_path / f"d{devices}"
        assert run.main([*FAST, "--devices", devices, "--out", str(out)]) == run.EXIT_ERROR
        assert f"error: --devices: {message}" in capsys.readouterr().err
        assert not (out / "data").exists()


def test_process_flags_are_checked(capsys):
    for argv, message in (
        (["--coordinator", "127.0.0.1:1234"], "go together; got only --coordinator"),
        (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
         "--coordinator must be HOST:PORT, got 'localhost'"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
         "--process-id must be in [0, 2), got 2"),
        (["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"],
         "--num-processes must be >= 1, got 0"),
    ):  # fmt: skip
        with pytest.raises(SystemExit):
            run.parse_args(argv)
        assert message in capsys.readouterr().err
    config = run.parse_args(["--coordinator", "h:1", "--num-processes", "2", "--process-id", "1"])
    assert (config.coordinator, config.num_processes, config.process_id) == ("h:1", 2, 1)


def test_training_seconds_are_unknown_for_a_checkpoint_without_its_time(tmp_path):
    assert pipeline.training_seconds(tmp_path) == 0.0  # nothing trained yet
    (tmp_path / "last.json").write_text("{}")  # an unfinished checkpoint of an older version
    assert pipeline.training_seconds(tmp_path) is None
    (tmp_path / "train_seconds.json").write_text("12.5")
    assert pipeline.training_seconds(tmp_path) == 12.5
