"""What a stored result of ``experiments.run`` was made with, so that no run reports another
run's numbers as its own.

Every directory a (method, seed) writes, ``<out>/<method>/seed<s>/`` (metrics, adapted models,
a single seed's checkpoints) and ``<out>/<method>/seeds<a>-<b>-.../`` (the stacked checkpoints
of seeds trained together), holds ``config.json``: the run's *training identity*, written
before its training starts. It is every `RunConfig` field that changes the trained state
(system, ``--set``, preset sizes, epochs, validation interval, K, data seed, the latent state
and regulariser), the method, the seed(s) and the SHA-256 of the dataset's arrays
(`jaxmeta.io.data_digest`); not `NOT_IDENTITY`, and not the test-time fields (`TEST_TIME`:
the latent initialisation and the converged protocol). A directory made with another
training identity, or with none recorded, is refused with a message naming the fields that
differ; ``--restart`` deletes it instead, so its (method, seed) starts over.

``metrics.json`` carries the training identity and the test-time fields under ``"config"``
(its *scoring identity*): a finished (method, seed) asked for other test-time values is
re-scored from its trained state (``best_state.eqx``), not retrained.

``--devices`` is not identity: a run resumed on another device count continues the same run,
equal to float tolerance (the all-reduce of the meta-gradient may sum in another order).
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
from jax.experimental import multihost_utils

from .config import RunConfig

# RunConfig fields (as in `RunConfig.to_json`) that do not change a (method, seed)'s numbers.
NOT_IDENTITY = ("methods", "seeds", "out", "progress", "devices", "restart", "coordinator",
                "num_processes", "process_id")  # fmt: skip
# Fields that change how a trained state is scored, not the training: a finished (method,
# seed) asked for other values is re-scored from its trained state, never retrained.
TEST_TIME = ("latent_init", "converged")
TEST_TIME_DEFAULTS = {"latent_init": "mean", "converged": False}
# Training fields added later: left out of the identity at these defaults, so stored work of
# earlier versions (made with them) is still this run's.
LATER_DEFAULTS = {"latent_state": "fresh", "latent_penalty": 0.0, "hypernet_penalty": 0.0}
# The preset's sizes that are identity (its epochs and val_every are the config's own).
_PRESET = ("width", "depth", "inner_steps", "mesh_points_3d")


class StaleRunError(ValueError):
    """A directory under ``--out`` was made with another configuration."""


def seed_dir(config: RunConfig, name: str, seed: int) -> Path:
    return config.out / name / f"seed{seed}"


def group_dir(config: RunConfig, name: str, seeds) -> Path:
    """Where seeds trained together as one program keep their stacked checkpoints."""
    return config.out / name / ("seeds" + "-".join(map(str, seeds)))


def identity(config: RunConfig, name: str, data: str | None = None, *,
             scoring: bool = False) -> dict:  # fmt: skip
    """The training identity of method ``name`` in run ``config`` (JSON values), with the
    dataset's digest ``data`` when known (without it, comparisons skip the data); with
    ``scoring``, the test-time fields (`TEST_TIME`) too: the identity of its scores."""
    record = {k: v for k, v in config.to_json().items() if k not in NOT_IDENTITY}
    preset = record.pop("preset_values")
    record.update({k: preset[k] for k in _PRESET}, method=name)
    for key, default in LATER_DEFAULTS.items():
        if record[key] == default:
            del record[key]
    if not scoring:
        for key in TEST_TIME:
            del record[key]
    if data is not None:
        record["data"] = data
    return json.loads(json.dumps(record))


def same_scoring(stored: dict, config: RunConfig) -> bool:
    """Whether a ``metrics.json`` identity (``stored``) was scored with ``config``'s
    test-time settings (a field it lacks holds its default: it predates the field)."""
    return all(stored.get(k, TEST_TIME_DEFAULTS[k]) == getattr(config, k) for k in TEST_TIME)


def training_part(stored: dict) -> dict:
    """A stored identity without its test-time fields. Stored work from before validation
    ignored the test-time latent initialisation (a ``config.json`` with ``latent_init``
    ``"zero"``: its best state was picked by zero-initialised validation) keeps the field,
    so it differs from every current identity and is refused."""
    keep = lambda k, v: k not in TEST_TIME or (k == "latent_init" and v != "mean")
    return {k: v for k, v in stored.items() if keep(k, v)}


def write_json(path: Path, record) -> None:
    """``path`` holds ``record`` or its old contents, never a part (process 0 only)."""
    if jax.process_index() != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=1)
    os.replace(tmp, path)


def _show(key, value) -> str:
    if value is _ABSENT:
        return f"no {key}"
    if key == "data" and isinstance(value, str):
        return f"data=sha256:{value[:12]}…"
    return f"{key}={value!r}"


_ABSENT = object()


def _mismatch(path: Path, expected: dict) -> str | None:
    """Why ``path`` is not ``expected``'s (None if it is, or holds nothing)."""
    if not path.exists() or not any(path.iterdir()):
        return None
    try:
        stored = training_part(json.loads((path / "config.json").read_text()))
    except (OSError, ValueError):
        return (f"{path} holds results with no readable config.json (made by an older jaxmeta?), "
                f"so this run cannot tell whether they are its own")  # fmt: skip
    keys = set(stored) | set(expected)
    if "data" not in expected:  # checked before the data is loaded
        keys.discard("data")
    differ = sorted(k for k in keys if stored.get(k, _ABSENT) != expected.get(k, _ABSENT))
    if not differ:
        return None
    was = ", ".join(_show(k, stored.get(k, _ABSENT)) for k in differ)
    now = ", ".join(_show(k, expected.get(k, _ABSENT)) for k in differ)
    return f"{path} was made with {was}; this run has {now}"


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def _discard(config: RunConfig, path: Path, why: str) -> None:
    """Refuse ``path`` (`StaleRunError`) or, with ``--restart``, delete it."""
    if not config.restart:
        raise StaleRunError(f"{why}. Use --restart to discard it, or another --out.")
    if jax.process_index() == 0:
        print(f"discarding {path}: {why.removeprefix(str(path) + ' ')}", flush=True)
        shutil.rmtree(path)


def check(config: RunConfig, name: str, data: str | None = None) -> None:
    """Refuse, or with ``--restart`` delete, every directory of method ``name`` that this run
    would read and that was made with another identity: each seed's, then the group
    directory of the seeds still to train.

    With several processes every process reads the same files (``--out`` is shared) and
    takes the same decisions; process 0 deletes, between two barriers.
    """
    expected = identity(config, name, data)
    stale = [(p, why) for s in config.seeds
             if (why := _mismatch(p := seed_dir(config, name, s), {**expected, "seed": s}))]  # fmt: skip
    _sync("provenance-read")
    for path, why in stale:
        _discard(config, path, why)
    _sync("provenance-seeds")
    pending = [s for s in config.seeds if not (seed_dir(config, name, s) / "metrics.json").exists()]
    if len(pending) > 1:
        group = group_dir(config, name, pending)
        why = _mismatch(group, {**expected, "seeds": pending})
        _sync("provenance-group")
        if why:
            _discard(config, group, why)
        _sync("provenance-done")


def record(config: RunConfig, name: str, seeds, data: str) -> dict:
    """Write ``config.json`` into the directories that training ``seeds`` of ``name`` will
    fill (before it starts); returns the identity of one seed, without ``"seed"``."""
    expected = identity(config, name, data)
    for s in seeds:
        write_json(seed_dir(config, name, s) / "config.json", {**expected, "seed": s})
    if len(seeds) > 1:
        write_json(group_dir(config, name, seeds) / "config.json", {**expected, "seeds": seeds})
    return expected
