"""Where ``experiments`` keeps its work, and what the stored work was made with.

Layout of a run directory (``--out``): ``results.json`` and ``table.md`` (the run's report),
``data/`` (the cached dataset), and per (method, seed) ``<method>/seed<s>/``: ``config.json``
while it trains (its identity, written before training starts), then ``metrics.json``
(written last: it marks the seed done and carries the identity, so ``config.json`` goes),
``best_state.eqx`` and ``adapted.eqx``, and a single seed's ``checkpoints/``; seeds trained
together as one vmapped program keep their stacked checkpoints in
``<method>/seeds<a>-<b>-.../checkpoints`` (with the training time, ``train_seconds.json``).

**Identity.** ``config.json`` holds the *training identity* of a (method, seed): every
`RunConfig` field that changes the trained state (system, ``--set``, preset sizes, epochs,
validation interval, K, data seed, the latent state and regulariser), the method, the seed(s)
and the SHA-256 of the dataset's arrays (`jaxmeta.io.data_digest`); not `NOT_IDENTITY`, and
not the test-time fields (`TEST_TIME`). ``metrics.json`` carries the training identity and
the test-time fields under ``"config"``: its *scoring identity*.

- Stored work of another training identity is refused with a message naming the fields that
  differ (`StaleRunError`); ``--restart`` deletes it instead. One exception: a finished run
  asked for *more* epochs, everything else equal, is extended from its last checkpoint
  (`check` lets it through; the pipeline resumes it), which equals an uninterrupted run.
- A finished (method, seed) asked for other test-time values is re-scored from its trained
  state (``best_state.eqx``), never retrained (`same_scoring`).

``--devices`` is not identity: a run resumed on another device count continues the same run,
equal to float tolerance. A run directory is held by one process at a time (`hold`).
"""

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
from jax.experimental import multihost_utils

from .config import RunConfig, stored_regime as stored_regime

# RunConfig fields (as in `RunConfig.to_json`) that do not change a (method, seed)'s numbers.
NOT_IDENTITY = ("methods", "seeds", "out", "progress", "devices", "restart", "coordinator",
                "num_processes", "process_id")  # fmt: skip
# Fields that change how a trained state is scored, not the training.
TEST_TIME = ("latent_init", "converged")
TEST_TIME_DEFAULTS = {"latent_init": "mean", "converged": False}
# Training fields added later: left out of the identity at these defaults, so stored work of
# earlier versions (made with them) is still this run's.
LATER_DEFAULTS = {"latent_state": "fresh", "latent_penalty": 0.0, "hypernet_penalty": 0.0,
                  "system_source": None}  # fmt: skip
# The preset's sizes that are identity (its epochs and val_every are the config's own).
_PRESET = ("width", "depth", "inner_steps", "mesh_points_3d")


class StaleRunError(ValueError):
    """Stored work under ``--out`` was made with another configuration, or cannot be used."""


class RunLockedError(ValueError):
    """Another process holds the run directory."""


# Paths ----------------------------------------------------------------------------------


def seed_dir(config: RunConfig, name: str, seed: int) -> Path:
    return config.out / name / f"seed{seed}"


def group_dir(config: RunConfig, name: str, seeds) -> Path:
    """Where seeds trained together as one program keep their stacked checkpoints."""
    return config.out / name / ("seeds" + "-".join(map(str, seeds)))


def checkpoint_dir(config: RunConfig, name: str, seeds) -> Path:
    """The checkpoints of ``seeds`` trained together (one seed: its own directory)."""
    one = len(seeds) == 1
    return (
        seed_dir(config, name, seeds[0]) if one else group_dir(config, name, seeds)
    ) / "checkpoints"


def metrics_path(config: RunConfig, name: str, seed: int) -> Path:
    return seed_dir(config, name, seed) / "metrics.json"


def diverged_path(config: RunConfig, name: str, seed: int) -> Path:
    """Where a (method, seed) that diverged records why, under its identity."""
    return seed_dir(config, name, seed) / "diverged.txt"


def state_path(config: RunConfig, name: str, seed: int) -> Path:
    """The trained (best-on-validation) state of a (method, seed)."""
    return seed_dir(config, name, seed) / "best_state.eqx"


def adapted_path(config: RunConfig, name: str, seed: int) -> Path:
    """The adapted test models of a (method, seed), as scored."""
    return seed_dir(config, name, seed) / "adapted.eqx"


# JSON -----------------------------------------------------------------------------------


def write_json(path: Path, record) -> None:
    """``path`` holds ``record`` or its old contents, never a part (process 0 only)."""
    write_text(path, json.dumps(record, indent=1))


def write_text(path: Path, text: str) -> None:
    """``path`` holds ``text`` or its old contents, never a part (process 0 only)."""
    if jax.process_index() != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def json_roundtrip(record):
    """``record`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(record))


def finish(config: RunConfig, name: str, seed: int) -> None:
    """A seed's ``metrics.json`` is written: its ``config.json`` (the identity it carries
    too) moves beside its own checkpoints (which stay local), or goes, and a
    ``train_seconds.json`` of earlier versions goes, so a finished seed keeps one JSON."""
    directory = seed_dir(config, name, seed)
    with contextlib.suppress(FileNotFoundError):
        if (directory / "checkpoints").is_dir():
            os.replace(directory / "config.json", directory / "checkpoints" / "config.json")
        else:
            os.remove(directory / "config.json")
    with contextlib.suppress(FileNotFoundError):
        os.remove(directory / "train_seconds.json")


def finished_records(config: RunConfig, name: str) -> dict:
    """``{seed: metrics.json}`` of the finished seeds of ``name``."""
    paths = {s: metrics_path(config, name, s) for s in config.seeds}
    return {s: read_json(p) for s, p in paths.items() if p.exists()}


# Identity -------------------------------------------------------------------------------


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
    """A stored identity without its test-time fields. Stored work from before the training
    identity left them out (no ``"converged"`` field) and made with ``latent_init`` other than
    ``"mean"`` keeps that field: its best state was picked by zero-initialised validation, so
    it differs from every current identity and is refused."""
    old = "converged" not in stored
    keep = lambda k, v: k not in TEST_TIME or (old and k == "latent_init" and v != "mean")
    return {k: v for k, v in stored.items() if keep(k, v)}


def _show(key, value) -> str:
    if value is _ABSENT:
        return f"no {key}"
    if key == "data" and isinstance(value, str):
        return f"data=sha256:{value[:12]}…"
    return f"{key}={value!r}"


_ABSENT = object()


def _mismatch(path: Path, expected: dict) -> str | None:
    """Why ``path`` is not ``expected``'s (None if it is, holds nothing, or is the same run
    with fewer epochs: an extension)."""
    if not path.exists() or not any(p.name != ".lock" for p in path.iterdir()):
        return None
    try:
        stored = training_part(_stored_identity(path))
    except (OSError, ValueError, KeyError, TypeError):
        return (f"{path} holds results with no readable identity (config.json, or metrics.json's "
                f"\"config\"; made by an older jaxmeta?), so this run cannot tell whether they "
                f"are its own")  # fmt: skip
    keys = set(stored) | set(expected)
    if "data" not in expected:  # checked before the data is loaded
        keys.discard("data")
    differ = sorted(k for k in keys if stored.get(k, _ABSENT) != expected.get(k, _ABSENT))
    if differ == ["epochs"] and stored["epochs"] < expected["epochs"]:
        return None  # the same run, extended
    if not differ:
        return None
    was = ", ".join(_show(k, stored.get(k, _ABSENT)) for k in differ)
    now = ", ".join(_show(k, expected.get(k, _ABSENT)) for k in differ)
    return f"{path} was made with {was}; this run has {now}"


def _stored_identity(path: Path) -> dict:
    """A directory's identity: its ``config.json`` (written before training), else, for a
    finished seed, its ``metrics.json``'s ``"config"`` (the one JSON a finished seed keeps),
    else the copy beside its checkpoints (`finish`)."""
    for candidate in (path / "config.json", path / "checkpoints" / "config.json"):
        if candidate.exists() and not (path / "metrics.json").exists():
            return read_json(candidate)
    if (path / "config.json").exists():
        return read_json(path / "config.json")
    return dict(read_json(path / "metrics.json")["config"])


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


def pending_seeds(config: RunConfig, name: str) -> list[int]:
    """The seeds of ``name`` to train: no ``metrics.json``, or one of fewer epochs (to
    extend)."""
    records = finished_records(config, name)
    return [s for s in config.seeds
            if s not in records or records[s]["config"]["epochs"] < config.epochs]  # fmt: skip


def check(config: RunConfig, name: str, data: str | None = None) -> None:
    """Refuse, or with ``--restart`` delete, every directory of method ``name`` that this run
    would read and that was made with another training identity: each seed's, then the group
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
    pending = pending_seeds(config, name)
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


# Reading a run back ---------------------------------------------------------------------


def run_config(run_dir) -> RunConfig:
    """The configuration of the finished run in ``run_dir`` (its ``results.json``); a
    `StaleRunError` names the directory if it holds none."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise StaleRunError(f"--run {run_dir}: no results.json (not a finished run)")
    return RunConfig.from_json(read_json(path)["config"], Path(run_dir))


# Lock -----------------------------------------------------------------------------------


@contextlib.contextmanager
def hold(directory: Path, what: str = "--out"):
    """Hold ``directory`` for this process (a lock file, ``fcntl.flock``; released however
    the process ends). Raises `RunLockedError` naming it and the holder's process id if
    another process holds it."""
    if jax.process_index() != 0:  # several processes of one run: process 0 holds it
        yield
        return
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise RunLockedError(
                f"{what} {directory} is in use by another process (pid {holder}); wait for it "
                f"to finish, or use another {what}"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
