"""What the store does with finished work, end to end through ``experiments.run``: a larger
``--epochs`` extends a run (equal to an uninterrupted one), a test-time setting re-scores it
(training nothing), and a second process on the same ``--out`` is refused by name."""

import json
import shutil
import subprocess
import sys

import pytest

from experiments import pipeline, run
from experiments.regimes import regime_overrides
from jaxmeta import systems

FAST = ["--system", "pendulum", "--val-every", "1", "--shots", "2", "--no-progress"]


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cache")
    pendulum = systems.get_system("pendulum", **regime_overrides("paper-like", "pendulum"))
    pipeline.load_dataset(pendulum, None, 0, directory)
    return directory


def _outs(tmp_path, data_cache, *names):
    for name in names:
        shutil.copytree(data_cache, tmp_path / name / "data")
    return [tmp_path / name for name in names]


def _metrics(out, method="ro", seed=0):
    return json.loads((out / method / f"seed{seed}" / "metrics.json").read_text())


SCORES = ("trajectory_error", "field_error", "ssim", "rollout_error", "max_energy_drift")


def test_more_epochs_extend_a_finished_run(tmp_path, data_cache, capsys):
    a, b = _outs(tmp_path, data_cache, "a", "b")
    argv = [*FAST, "--methods", "ro", "--seeds", "0,1"]
    assert run.main([*argv, "--epochs", "2", "--out", str(a)]) == 0
    capsys.readouterr()
    assert run.main([*argv, "--epochs", "4", "--out", str(a)]) == 0
    assert "resuming ro seeds 0, 1 from epoch 2 to 4" in capsys.readouterr().out
    assert run.main([*argv, "--epochs", "4", "--out", str(b)]) == 0
    for seed in (0, 1):
        extended, straight = _metrics(a, seed=seed), _metrics(b, seed=seed)
        assert extended["history"] == straight["history"]  # every epoch's loss, to the bit
        assert extended["best_epoch"] == straight["best_epoch"]
        assert {k: extended[k] for k in SCORES} == {k: straight[k] for k in SCORES}
        assert extended["config"]["epochs"] == 4
    # Fewer epochs than stored: refused, naming them.
    assert run.main([*argv, "--epochs", "3", "--out", str(a)]) == run.EXIT_ERROR
    assert "was made with epochs=4; this run has epochs=3" in capsys.readouterr().err


def test_a_test_time_change_rescores_without_training(
    tmp_path, data_cache, capsys, short_converged
):
    a, b = _outs(tmp_path, data_cache, "a", "b")
    argv = [*FAST, "--methods", "ro", "--epochs", "2"]
    assert run.main([*argv, "--out", str(a)]) == 0
    history = _metrics(a)["history"]
    capsys.readouterr()
    zero = ["--latent-init", "zero", "--converged"]
    assert run.main([*argv, "--out", str(a), *zero]) == 0
    log = capsys.readouterr().out
    assert ("ro       re-scoring seed 0 from its trained state (latent_init 'mean' -> 'zero', "
            "converged False -> True); nothing is trained") in log  # fmt: skip
    assert "resuming" not in log and "loading the finished training" not in log
    rescored = _metrics(a)
    assert rescored["history"] == history  # the training record is carried over
    assert rescored["config"]["latent_init"] == "zero" and rescored["config"]["converged"]
    # A fresh zero-init run with the converged protocol scores the same, bit for bit.
    assert run.main([*argv, "--out", str(b), *zero]) == 0
    fresh = _metrics(b)
    assert {k: rescored[k] for k in SCORES} == {k: fresh[k] for k in SCORES}
    assert rescored["converged"]["support_loss"] == fresh["converged"]["support_loss"]
    assert {k: rescored["converged"][k] for k in SCORES} == {
        k: fresh["converged"][k] for k in SCORES
    }
    conv = rescored["converged"]
    assert all(x <= y for x, y in zip(conv["support_loss"], conv["paper_support_loss"]))
    # results.json holds both identities: the run's config and each seed's scoring.
    results = json.loads((a / "results.json").read_text())
    assert results["config"]["latent_init"] == "zero" and results["config"]["converged"]
    # Without its trained state, the real cause is named.
    (a / "ro" / "seed0" / "best_state.eqx").unlink()
    assert run.main([*argv, "--out", str(a)]) == run.EXIT_ERROR
    err = capsys.readouterr().err
    assert "needs its trained state" in err and "which is not on disk" in err


def test_a_second_process_on_the_same_out_is_refused(tmp_path, data_cache, capsys):
    (out,) = _outs(tmp_path, data_cache, "a")
    argv = [*FAST, "--methods", "ro", "--epochs", "2", "--out", str(out)]
    second = []

    def start_another(event, epoch):  # while the first run trains, a second one starts
        if event == "chunk" and not second:
            cmd = [sys.executable, "-m", "experiments.run", *argv]
            second.append(subprocess.run(cmd, capture_output=True, text=True, timeout=300))

    assert run.main(argv, callback=start_another) == 0
    (refused,) = second
    assert refused.returncode == run.EXIT_ERROR, refused.stderr
    assert f"error: --out {out} is in use by another process (pid " in refused.stderr
    # The first run finished, its results intact.
    assert _metrics(out)["config"]["epochs"] == 2
    assert json.loads((out / "results.json").read_text())["methods"]["ro"]["seeds"] == [0]
