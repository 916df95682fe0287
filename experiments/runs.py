"""Read a finished ``experiments.run`` directory back: its configuration, system, dataset and
trained states."""

import dataclasses
import json
from pathlib import Path

import equinox as eqx

from jaxmeta import data, meta, systems

from . import run
from .config import RunConfig


def _tuples(value):
    """JSON lists back to the tuples the systems' fields and `RunConfig` hold."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def config_from_json(record: dict, out: Path) -> RunConfig:
    """`RunConfig.to_json` inverted (``out`` replaces the recorded directory, so a moved run
    still loads); keys `RunConfig` does not have (``preset_values``) are dropped."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    values = {k: _tuples(v) for k, v in record.items() if k in fields}
    values["overrides"] = tuple((k, _tuples(v)) for k, v in record.get("set", {}).items())
    values.setdefault("regime", "ours")  # runs made before regimes existed used jaxmeta's own
    values["out"] = Path(out)
    return RunConfig(**values)


def load_run(run_dir) -> tuple[RunConfig, systems.AbstractSystem, data.Dataset]:
    """The configuration, system and dataset of the run in ``run_dir`` (from its
    ``results.json`` and cached ``data/``), as `experiments.run.main` built them."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.is_file():
        raise SystemExit(f"error: --run {run_dir}: no results.json (not a finished run)")
    config = config_from_json(json.loads(path.read_text())["config"], run_dir)
    system = systems.get_system(config.system, **config.system_overrides)
    preset = config.budget
    if system.state_dim > 2 and preset.mesh_points_3d is not None and system.mesh_bounds:
        system = dataclasses.replace(system, mesh_points=preset.mesh_points_3d)
    dataset = run.load_dataset(system, config.shots, config.data_seed, run_dir / "data")
    return config, system, dataset


def load_state(config: RunConfig, system, dataset, method: str, seed: int) -> meta.MetaState:
    """The trained (best-on-validation) state of ``method``, ``seed`` of the run."""
    path = config.out / method / f"seed{seed}" / "best_state.eqx"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: {method} seed {seed} never finished")
    like, _ = run._skeletons(config, system, dataset, method)
    return eqx.tree_deserialise_leaves(path, like)
