"""Training across processes for real: two CPU processes joined by `jax.distributed` (Gloo
collectives over 127.0.0.1), the task axis sharded over one device of each, train like one
process with two forced host devices: `fit_seeds` (with checkpoints written by process 0 and
resumed by both) in the default suite, the whole `experiments.run` command marked slow."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "experiments.run", "--system", "pendulum", "--methods", "ro",
       "--epochs", "2", "--val-every", "1", "--shots", "2", "--devices", "2", "--no-progress"]  # fmt: skip
METRICS = ("trajectory_error", "field_error", "ssim", "rollout_error", "energy_drift")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, "JAX_PLATFORMS": "cpu", **extra}


def _start(argv, env):
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


_FIT = """
import json, sys
import equinox as eqx, jax
if len(sys.argv) > 1:  # coordinator, process id
    jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from tests._helpers import LEARNER, leaves as _leaves, make_model, small_dataset as _dataset
from jaxmeta import meta
ds = _dataset(12, (2 / 3, 1 / 6, 1 / 6))  # 8 training functions, 4 per device
kw = dict(keys=[jax.random.key(1)], val_every=2, progress=False,
          devices=2, checkpoint_dir=sys.argv[3] if len(sys.argv) > 3 else None)
meta.fit_seeds(LEARNER, make_model, ds, epochs=2, **kw)
results = meta.fit_seeds(LEARNER, make_model, ds, epochs=4, **kw)  # resumes from epoch 2
print(json.dumps({
    "processes": jax.process_count(), "devices": jax.device_count(),
    "local": all(x.is_fully_addressable for r in results
                 for x in jax.tree.leaves(eqx.filter(r.state, eqx.is_array))),
    "state": [[x.tolist() for x in _leaves(r.state)] for r in results],
    "history": [r.history.to_dict() for r in results],
}))
"""


def _last_json(log: str) -> dict:
    return json.loads(log.strip().splitlines()[-1])


def test_two_processes_fit_like_one_process_with_two_devices(tmp_path):
    port, ckpt = _free_port(), tmp_path / "ckpt"
    procs = [_start([sys.executable, "-c", _FIT, f"127.0.0.1:{port}", str(i), str(ckpt)], _env())
             for i in range(2)]  # fmt: skip
    forced = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs.append(_start([sys.executable, "-c", _FIT], forced))
    logs = _wait(procs)
    (*two, one) = [_last_json(log) for log in logs]
    assert [o["processes"] for o in (*two, one)] == [2, 2, 1]
    assert all(o["devices"] == 2 and o["local"] for o in (*two, one))
    # Process 0 wrote the checkpoints; both resumed from them (the second call's history
    # starts with the first call's chunk).
    assert sorted(p.suffix for p in ckpt.iterdir()) == [".eqx", ".eqx", ".json", ".json"]
    for out in two:
        assert out["history"] == two[0]["history"]  # every process holds the whole result
        # The all-reduce of the meta-gradient runs in Gloo across processes and in XLA
        # within one; the two programs are compiled apart and may order float32 sums
        # differently: as `tests/test_scale.py::test_sharded_equals_unsharded`, rtol 1e-5.
        for a, b in zip(out["state"], one["state"], strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
        for got, want in zip(out["history"], one["history"], strict=True):
            assert got["val_epoch"] == want["val_epoch"] == [2, 4]
            for name in ("train_loss", "val_error"):
                np.testing.assert_allclose(got[name], want[name], rtol=1e-5)


def _wait(procs) -> list[str]:
    logs = []
    for proc in procs:
        try:
            logs.append(proc.communicate(timeout=600)[0])
        finally:
            proc.kill()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-3000:]
    return logs


@pytest.mark.slow  # about 5 minutes on 2 shared CPU cores: data, training and scoring, x3
def test_two_processes_train_like_one_process_with_two_devices(tmp_path):
    port = _free_port()
    two, one = tmp_path / "two", tmp_path / "one"
    flags = lambda i: ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                       "--process-id", str(i)]  # fmt: skip
    procs = [_start([*RUN, "--out", str(two), *flags(i)], _env()) for i in range(2)]
    forced = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs.append(_start([*RUN, "--out", str(one)], forced))
    lead, other, single = _wait(procs)
    assert "over 2 of 2 device(s) in 2 process(es)" in lead
    assert "over 2 of 2 device(s) in 1 process(es)" in single
    assert "| ro |" in lead and "| ro |" not in other  # process 0 reports, process 1 only trains
    assert (two / "ro" / "seed0" / "checkpoints" / "last.json").exists()
    got = json.loads((two / "ro" / "seed0" / "metrics.json").read_text())
    want = json.loads((one / "ro" / "seed0" / "metrics.json").read_text())
    assert got["config"] == want["config"]  # same identity, data digest included
    # The meta-gradient's all-reduce runs in Gloo across processes and in XLA within one, and
    # the programs (training, and scoring, which XLA compiles for 1 or 2 local devices) are
    # compiled apart and may order float32 sums differently: agreement to a few float32 ulps
    # grown over 2 epochs and 100 adaptation steps, hence rtol 1e-5. The energy drift is
    # itself a rounding-level number (|H(t) - H(0)| / |H(0)| ~ 3e-7, a few ulps of H), so one
    # ulp anywhere moves it by O(1) relatively: it is compared absolutely, to float32's eps.
    for name in METRICS:
        if name == "energy_drift":
            assert abs(got[name] - want[name]) < np.finfo(np.float32).eps, name
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)
    for name in ("train_loss", "val_error"):
        np.testing.assert_allclose(got["history"][name], want["history"][name], rtol=1e-5)
