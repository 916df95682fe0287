"""The pipeline of ``experiments``: prepare a run (system, mesh policy, dataset, device
layout), build its learners and models, train, and hand trained states to scoring. Every
command line goes through here; paths and identities are `experiments.store`'s."""

import dataclasses
import inspect
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxmeta import data, io, meta, nn, systems

from . import registry, store
from .config import Preset, RunConfig

# The dataset every run uses: `data.generate_dataset`'s default size and split, so that the
# number of training functions (which `--devices` must divide) is known before generating.
_DATASET = inspect.signature(data.generate_dataset).parameters
NUM_FUNCTIONS, SPLIT = _DATASET["num_functions"].default, _DATASET["split"].default


class FlagError(ValueError):
    """A flag whose value the run cannot use (the message names it)."""


def lead() -> bool:
    """Process 0, the one that prints and writes (the only one without `jax.distributed`)."""
    return jax.process_index() == 0


def say(text: str) -> None:
    if lead():
        print(text, flush=True)


def make_learner(name: str, config: RunConfig, loss_scale: float = 1.0, *,
                 scoring: bool = True) -> meta.AbstractMetaLearner:  # fmt: skip
    """The learner of method ``name`` at the run's preset (registry defaults otherwise).

    The regulariser weights of ``config`` are in units of ``loss_scale`` (`loss_scale` of the
    training data). Training (``scoring=False``) validates with the mean latent
    initialisation whatever ``--latent-init`` says, so the trained state does not depend on
    a test-time setting; scoring uses the run's.
    """
    latent = {"latent_state": config.latent_state,
              "latent_penalty": config.latent_penalty * loss_scale,
              "hypernet_penalty": config.hypernet_penalty * loss_scale} if name in registry.MODULATIONS else {}  # fmt: skip
    return registry.make_learner(name, inner_steps=config.budget.inner_steps,
                         latent_init=config.latent_init if scoring else "mean", **latent)  # fmt: skip


def loss_scale(dataset: data.Dataset) -> float:
    """The data's loss scale: the mean squared support velocity of the training functions,
    the field MSE of the zero field. The regulariser weights of ``--latent-penalty`` and
    ``--hypernet-penalty`` are in its units, so that they weigh the same against the data
    loss on every system."""
    return float(jnp.mean(jnp.sum(dataset.train.dxs**2, axis=-1)))


def make_model_factory(system, preset: Preset):
    """HNN for Hamiltonian systems, GENERIC NN (one (q, p) pair) for dissipative ones."""
    if isinstance(system, systems.AbstractHamiltonianSystem):
        return lambda key: nn.HNN(system.state_dim, width=preset.width, depth=preset.depth, key=key)
    return lambda key: nn.GNN(
        1, system.state_dim - 2, width=preset.width, depth=preset.depth, key=key
    )


def build_system(config: RunConfig) -> systems.AbstractSystem:
    """The run's system: its regime's and ``--set``'s fields, and the mesh policy (the
    preset's coarser field-error mesh for 3-D and 4-D systems). A bad field is a `FlagError`
    naming ``--set``."""
    try:
        system = systems.get_system(config.system, **config.system_overrides)
    except (ValueError, TypeError) as err:
        raise FlagError(f"--set: {err} (regime {config.regime!r})") from err
    preset = config.budget
    if system.state_dim > 2 and preset.mesh_points_3d is not None and system.mesh_bounds:
        system = dataclasses.replace(system, mesh_points=preset.mesh_points_3d)
    return system


def coarsen_mesh(system: systems.AbstractSystem, max_points: int) -> systems.AbstractSystem:
    """The system with its field-error mesh coarsened to at most ``max_points`` points (the
    most points per axis that fit), or unchanged if it has no mesh or fits already (the
    calibration's mesh policy; a run's is `build_system`'s)."""
    if system.mesh_bounds is None or system.mesh_points**system.state_dim <= max_points:
        return system
    per_axis = max(2, int(math.floor(max_points ** (1 / system.state_dim) + 1e-9)))
    return dataclasses.replace(system, mesh_points=per_axis)


def load_dataset(system, shots: int | None, seed: int, directory: Path) -> data.Dataset:
    """The cached dataset with ``shots`` support trajectories per function: the first
    ``shots`` of the default dataset when fewer than the system's default K, a dataset
    generated with ``shots`` trajectories per function when more."""
    k_default = system.default_num_trajectories
    extra = {} if (shots or 0) <= k_default else {"num_trajectories": shots}
    dataset = data.load_or_generate(system, seed, directory, **extra)
    if shots is not None and shots < k_default:
        dataset = data.Dataset(
            *(s.shots(shots) for s in (dataset.train, dataset.val, dataset.test))
        )
    return dataset


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What every (method, seed) of a run shares: the system (with the preset's mesh), the
    cached dataset and its `jaxmeta.io.data_digest`, the field-error mesh, the number of
    devices to shard over and the data's `loss_scale`."""

    system: systems.AbstractSystem
    dataset: data.Dataset
    mesh: object
    devices: int
    data: str
    loss_scale: float = 1.0


def check_out_regime(config: RunConfig) -> None:
    """Refuse an ``--out`` holding a run of another regime: its finished (method, seed)
    results would be reused as this run's."""
    previous = config.out / "results.json"
    if not previous.exists():
        return
    stored = store.stored_regime(store.read_json(previous)["config"])
    if stored != config.regime:
        raise FlagError(
            f"--out {config.out} holds a run of regime {stored!r}, not "
            f"{config.regime!r}; its finished results would be reused: pass another --out "
            f"(or --regime {stored})"
        )


def _devices(config: RunConfig, num_train: int) -> int:
    available = jax.device_count()
    try:
        devices = config.devices or meta.largest_divisor(
            num_train, available, multiple_of=jax.process_count()
        )
        meta.task_mesh(devices, num_train)
    except ValueError as err:
        raise FlagError(f"--devices: {err}") from err
    return devices


def _load(config: RunConfig, system) -> data.Dataset:
    """The run's dataset: process 0 makes the cache, the others read it."""
    if not lead():
        multihost_utils.sync_global_devices("dataset")
    try:
        dataset = load_dataset(system, config.shots, config.data_seed, config.out / "data")
    except MemoryError as err:  # refused before allocating (`data.generate_dataset`'s max_bytes)
        raise FlagError(f"{err} On the command line: lower --shots, or raise --set dt=... or "
                         "shorten --set t1=...") from err  # fmt: skip
    if lead() and jax.process_count() > 1:
        multihost_utils.sync_global_devices("dataset")
    return dataset


def prepare(config: RunConfig) -> Prepared:
    """Build the system, pick the device layout (both checked before any data is made), then
    load (or generate) the dataset. A bad ``--set`` or ``--devices`` is a `FlagError`
    naming the flag."""
    system = build_system(config)
    check_out_regime(config)
    num_train = data.split_counts(NUM_FUNCTIONS, SPLIT)[0]
    devices = _devices(config, num_train)
    config.out.mkdir(parents=True, exist_ok=True)
    dataset = _load(config, system)
    assert dataset.train.num_functions == num_train, (dataset.train.num_functions, num_train)
    digest = io.data_digest(dataset)
    if jax.process_count() > 1:
        multihost_utils.assert_equal(
            np.frombuffer(bytes.fromhex(digest), np.uint8),
            f"the processes loaded different datasets from {config.out / 'data'}",
        )
    mesh = system.mesh() if system.mesh_bounds is not None else None
    say(f"mesh {{'tasks': {devices}}}: {num_train} training functions over {devices} of "
        f"{jax.device_count()} device(s) in {jax.process_count()} process(es)")  # fmt: skip
    return Prepared(system, dataset, mesh, devices, digest, loss_scale(dataset))


def load_run(run_dir) -> tuple[RunConfig, Prepared]:
    """The configuration and prepared data of the finished run in ``run_dir``, as
    ``experiments.run`` built them (from its ``results.json`` and cached ``data/``)."""
    config = store.run_config(run_dir)
    return config, prepare(config)


def skeletons(config: RunConfig, prep: Prepared, name: str):
    """Shapes of a trained state and of its adapted test models (to load them from disk)."""
    learner = make_learner(name, config, scoring=False)
    factory = make_model_factory(prep.system, config.budget)
    num_train = prep.dataset.train.num_functions
    state = eqx.filter_eval_shape(
        lambda k: learner.init(factory, num_train, key=k), jax.random.key(0)
    )
    test = prep.dataset.test
    adapted = eqx.filter_eval_shape(meta.adapt, learner, state, test, jax.random.key(0))
    return state, adapted.models


def load_state(config: RunConfig, prep: Prepared, name: str, seed: int) -> meta.MetaState:
    """The trained (best-on-validation) state of (``name``, ``seed``) of the run; a
    `StaleRunError` names the real cause when it is not on disk."""
    path = store.state_path(config, name, seed)
    if not path.is_file():
        done = store.metrics_path(config, name, seed).is_file()
        why = ("it finished, but trained states are not in a clone of the results (they stay "
               "where they were trained)") if done else "it never finished"  # fmt: skip
        raise store.StaleRunError(f"{path} is missing: {name} seed {seed}: {why}")
    like, _ = skeletons(config, prep, name)
    return eqx.tree_deserialise_leaves(path, like)


def load_adapted(config: RunConfig, prep: Prepared, name: str, seed: int) -> meta.Adapted:
    """The adapted test models of (``name``, ``seed``) as scored (``adapted.eqx``)."""
    path = store.adapted_path(config, name, seed)
    if not path.is_file():
        raise store.StaleRunError(f"{path} is missing: {name} seed {seed} has no adapted models")
    _, like = skeletons(config, prep, name)
    models = eqx.tree_deserialise_leaves(path, like)
    f = prep.dataset.test.num_functions
    return meta.Adapted(models=models, losses=jnp.zeros((f, 0)))


def training_seconds(checkpoints: Path) -> float | None:
    """Training seconds of a checkpoint directory so far, over every process that trained it
    (``train_seconds.json`` beside the checkpoints; 0 if there is no checkpoint yet, None if
    one has no recorded time: an unfinished one of a version that recorded it at the end).
    Brought up to date at each saved checkpoint, so a run killed between two keeps the time
    of what it saved, and re-scoring or only loading a finished checkpoint adds nothing."""
    path = checkpoints / "train_seconds.json"
    if path.exists():
        return store.read_json(path)
    return None if (checkpoints / "last.json").exists() else 0.0


def _timed(checkpoints: Path, callback: Callable | None):
    """``callback`` (or none) preceded, at each saved ``last`` checkpoint, by recording the
    training seconds so far (`training_seconds`, plus this process's since the call).
    Returns (the callback, a function that records and returns the total now)."""
    earlier, start = training_seconds(checkpoints) or 0.0, time.perf_counter()

    def record() -> float:
        total = earlier + time.perf_counter() - start
        store.write_json(checkpoints / "train_seconds.json", total)
        return total

    def timed(event: str, epoch: int) -> None:
        if event == "last":
            record()
        if callback is not None:
            callback(event, epoch)

    return timed, record


def checkpoint_epoch(checkpoints: Path) -> int:
    """The epoch of the ``last`` checkpoint in ``checkpoints``: 0 if there is none to resume
    (or it is unreadable: `meta.fit` refuses it, naming it)."""
    try:
        return int(json.loads((checkpoints / "last.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _announce(name: str, seeds, checkpoints: Path, epochs: int) -> int:
    """Say whether training ``seeds`` resumes (or extends) a checkpoint, or only loads a
    finished one; returns the checkpoint's epoch (0: none)."""
    epoch = checkpoint_epoch(checkpoints)
    if not epoch:
        return 0
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    if epoch >= epochs:
        say(f"{name:8s} loading the finished training of {which} from {checkpoints}")
    else:
        say(f"resuming {name} {which} from epoch {epoch} to {epochs} ({checkpoints})")
    return epoch


def train(config: RunConfig, prep: Prepared, name: str, seeds, *,
          callback: Callable | None = None) -> dict:  # fmt: skip
    """Train method ``name`` for ``seeds``: one seed with `meta.fit`, several as one vmapped
    program with `meta.fit_seeds` (`store.checkpoint_dir`). Returns ``{seed: (result,
    seconds)}``, each seed's share of the training time. With ``--restart``, a checkpoint
    that cannot be used (`jaxmeta.io.CheckpointError`) is deleted and training starts over.
    ``callback`` goes to `meta.fit`."""
    learner = make_learner(name, config, prep.loss_scale, scoring=False)
    factory = make_model_factory(prep.system, config.budget)
    checkpoints = store.checkpoint_dir(config, name, seeds)
    common = dict(epochs=config.epochs, val_every=config.val_every, devices=prep.devices,
                  progress=config.progress and lead(), checkpoint_dir=checkpoints)  # fmt: skip
    keys = [jax.random.key(s) for s in seeds]

    def fit():
        timed, record = _timed(checkpoints, callback)
        return meta.fit_seeds(learner, factory, prep.dataset, keys=keys, callback=timed,
                              **common), record  # fmt: skip

    epoch = _announce(name, seeds, checkpoints, config.epochs)
    try:
        results, record = fit()
    except io.CheckpointError as err:
        if not config.restart:
            raise
        say(f"discarding {checkpoints}: {err}")
        if lead():
            shutil.rmtree(checkpoints)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("restart-checkpoints")
        epoch = 0
        results, record = fit()
    total = record() if epoch < config.epochs else training_seconds(checkpoints) or 0.0
    seconds = total / len(seeds)
    return {s: (r, seconds) for s, r in zip(seeds, results)}
