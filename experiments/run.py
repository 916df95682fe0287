"""Meta-learn one benchmark system with every method and score it like the paper.

    python -m experiments.run --system pendulum                 # quick preset, all 8 methods
    python -m experiments.run --system kepler --preset paper --seeds 0,1,2
    python -m experiments.run --system dno --methods ro,mr --shots 5 --out runs/dno-k5
    python -m experiments.run --system duffing --regime ours     # jaxmeta's own ranges

The task regime (``--regime``, `experiments.regimes`; default ``paper-like``, calibrated on
Scratch by ``experiments.calibrate``) sets the system's ranges; ``--set`` overrides on top.

Writes, under ``--out``: ``results.json`` (config, data digest, versions, device, per-method
mean ± std of every metric, and under ``figures`` the (method, seed) its figures show),
``table.md`` (our numbers beside the paper's), figures, and
per-(method, seed) checkpoints, metrics and adapted models, so that the same command started
again resumes where it stopped (it says so: "resuming ro seed 0 from epoch 100"). Figures are
drawn from the files on disk, so a resumed run draws every method; where those trained
states are missing (a clone of results: they are not committed), the figures are kept as
last drawn and a line says so.

Stored work is reused only by the configuration that made it (`experiments.provenance`): a
(method, seed) made with other flags or other data is refused, naming the fields that differ;
``--restart`` discards it (and a corrupt checkpoint) and starts that (method, seed) over.

Several processes (hosts): ``--coordinator HOST:PORT --num-processes N --process-id I`` on
each, the same command otherwise and an ``--out`` every process reads; the training functions
are sharded over the devices of all processes (`jax.distributed`), process 0 writes.

Exit status: 0 when every method finished; 2 for a bad flag or stale or corrupt stored work
(a one-line ``error: ...``, nothing more trained); 3 when some method diverged (a non-finite
loss: the other methods go on, the results and table are written, the table says
``diverged``); 1 for a crash (a traceback, e.g. a lost process of a distributed run).
"""

import dataclasses
import inspect
import json
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from jaxmeta import data, io, meta, nn, systems

from . import plots, provenance
from .config import PRESETS as PRESETS, Preset, RunConfig, parse_args as _parse_args
from .evaluate import evaluate
from .paper import paper_value
from .registry import INNER_LR, METHODS as METHODS, MODULATIONS, make_learner as _make_learner

# The paper's three metrics (spec §5), then ours: rollout error, structure, time.
PAPER_METRICS = ("trajectory_error", "field_error", "ssim")
EXTRA_METRICS = ("rollout_error", "max_energy_drift", "min_entropy_rate")
METRICS = (*PAPER_METRICS, "rollout_error", "energy_drift", "max_energy_drift",
           "min_entropy_rate", "max_degeneracy", "mu_r2", "train_seconds")  # fmt: skip


# The dataset every run uses: `data.generate_dataset`'s default size and split, so that the
# number of training functions (which `--devices` must divide) is known before generating.
_DATASET = inspect.signature(data.generate_dataset).parameters
NUM_FUNCTIONS, SPLIT = _DATASET["num_functions"].default, _DATASET["split"].default
# Exit statuses (see the module docstring).
EXIT_ERROR, EXIT_DIVERGED = 2, 3


class FlagError(ValueError):
    """A flag whose value the run cannot use (the message names it)."""


# What a run reports as one line `error: ...` and `EXIT_ERROR`, not a traceback: the user's
# flags and the stored work they point at. Any other exception is a crash (exit status 1).
USER_ERRORS = (FlagError, provenance.StaleRunError, io.CheckpointError)


def user_error(err: Exception) -> int:
    """Print ``err`` as one line ``error: ...`` on stderr; returns `EXIT_ERROR`."""
    hint = " Use --restart to discard it." if isinstance(err, io.CheckpointError) else ""
    print(f"error: {err}{hint}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def _lead() -> bool:
    """Process 0, the one that prints and writes (the only one without `jax.distributed`)."""
    return jax.process_index() == 0


def _say(text: str) -> None:
    if _lead():
        print(text, flush=True)


def parse_args(argv=None) -> RunConfig:
    """Command line -> `experiments.config.RunConfig`."""
    return _parse_args(argv, doc=__doc__)


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
              "hypernet_penalty": config.hypernet_penalty * loss_scale} if name in MODULATIONS else {}  # fmt: skip
    return _make_learner(name, inner_steps=config.budget.inner_steps,
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


def _summary(values: list) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "per_seed": arr.tolist()}


_seed_dir = provenance.seed_dir


def _skeletons(config: RunConfig, system, dataset: data.Dataset, name: str):
    """Shapes of a trained state and of its adapted models (for loading them from disk)."""
    learner = make_learner(name, config, scoring=False)
    factory = make_model_factory(system, config.budget)
    num_train = dataset.train.num_functions
    state = eqx.filter_eval_shape(
        lambda k: learner.init(factory, num_train, key=k), jax.random.key(0)
    )
    adapted = eqx.filter_eval_shape(meta.adapt, learner, state, dataset.test, jax.random.key(0))
    return state, adapted.models


def _training_seconds(path: Path, measured: float) -> float:
    """The seed's training time, recorded once when its training first finishes: a later call
    that only loads the finished checkpoint (e.g. to score again) keeps the original time."""
    if not path.exists():
        provenance.write_json(path, measured)
        return measured
    return json.loads(path.read_text())


def _announce(name: str, seeds, checkpoints: Path, epochs: int) -> None:
    """Say whether training ``seeds`` resumes a checkpoint, or only loads a finished one."""
    try:
        epoch = json.loads((checkpoints / "last.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # nothing to resume (or unreadable: `fit` refuses it, naming it)
    which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    if epoch >= epochs:
        _say(f"{name:8s} loading the finished training of {which} from {checkpoints}")
    else:
        _say(f"resuming {name} {which} from epoch {epoch} ({checkpoints})")


def train(config: RunConfig, prep: "Prepared", name: str, seeds) -> dict:
    """Train method ``name`` for ``seeds``: one seed with `meta.fit`, several as one vmapped
    program with `meta.fit_seeds` (their stacked checkpoint under
    ``out/<method>/seeds<a>-<b>-.../checkpoints``). Returns ``{seed: (result, seconds)}``,
    each seed's share of the group's wall time. With ``--restart``, a checkpoint that cannot
    be used (`jaxmeta.io.CheckpointError`) is deleted and training starts over."""
    system, dataset = prep.system, prep.dataset
    learner = make_learner(name, config, prep.loss_scale, scoring=False)
    factory = make_model_factory(system, config.budget)
    common = dict(epochs=config.epochs, val_every=config.val_every, devices=prep.devices,
                  progress=config.progress and _lead())  # fmt: skip
    if len(seeds) == 1:
        checkpoints = _seed_dir(config, name, seeds[0]) / "checkpoints"
        fit = lambda: [meta.fit(learner, factory, dataset, key=jax.random.key(seeds[0]),
                                checkpoint_dir=checkpoints, **common)]  # fmt: skip
    else:
        checkpoints = provenance.group_dir(config, name, seeds) / "checkpoints"
        fit = lambda: meta.fit_seeds(learner, factory, dataset, checkpoint_dir=checkpoints,
                                     keys=[jax.random.key(s) for s in seeds], **common)  # fmt: skip
    _announce(name, seeds, checkpoints, config.epochs)
    start = time.perf_counter()
    try:
        results = fit()
    except io.CheckpointError as err:
        if not config.restart:
            raise
        _say(f"discarding {checkpoints}: {err}")
        if _lead():
            shutil.rmtree(checkpoints)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("restart-checkpoints")
        start, results = time.perf_counter(), fit()
    seconds = (time.perf_counter() - start) / len(seeds)
    timing = lambda seed: _seed_dir(config, name, seed) / "train_seconds.json"
    return {s: (r, _training_seconds(timing(s), seconds)) for s, r in zip(seeds, results)}


#: The converged test-time protocol of ``--converged`` (`jaxmeta.meta.Converged`'s defaults).
CONVERGED = meta.Converged()


def adaptation_key(seed: int):
    """The key of a (method, seed)'s test-time adaptation: every score of it uses this one."""
    return jax.random.key(10_000 + seed)


def _scores(system, models, test, mesh) -> dict:
    """`evaluate`'s per-function arrays as a record: means, the worst drift and entropy rate."""
    scores = jax.device_get(evaluate(system, models, test, mesh))
    record = {k: float(np.mean(v)) for k, v in scores.items() if k not in ("min_entropy_rate",)}
    if "min_entropy_rate" in scores:
        record["min_entropy_rate"] = float(np.min(scores["min_entropy_rate"]))
        record["max_degeneracy"] = float(np.max(scores["max_degeneracy"]))
    record["max_energy_drift"] = float(np.max(scores["energy_drift"]))
    return record


def latent_moves(start, adapted, reach: float) -> dict:
    """How far test-time adaptation moved the latents from ``start`` (F, d): the median over
    functions of the largest coordinate move, and the fractions of coordinates moved by at
    least 90% of ``reach`` (at the paper protocol's bound) and by more than ``reach``."""
    move = np.abs(np.asarray(adapted) - np.asarray(start))
    return {"median_max_move": float(np.median(move.max(axis=1))),
            "at_reach": float(np.mean(move >= 0.9 * reach)),
            "beyond_reach": float(np.mean(move > reach))}  # fmt: skip


def latent_statistics(learner, state: meta.MetaState, adapted, reach: float) -> dict:
    """The training latents' spread (median distance from their mean; mean per-coordinate
    std) and how far the paper protocol moved the test latents (`latent_moves`; ``reach``:
    the most ``adapt_steps`` Adam steps move a coordinate, steps × learning rate)."""
    z = np.asarray(state.latents)
    start = np.broadcast_to(np.asarray(learner._test_start(state, key=None)), adapted.shape)
    return {"train_spread": float(np.median(np.linalg.norm(z - z.mean(0), axis=1))),
            "train_std": float(np.mean(z.std(0))), "reach": reach,
            "paper": latent_moves(start, adapted, reach)}  # fmt: skip


def converged_scores(prep: "Prepared", learner, state, seed: int, reach: float) -> dict:
    """The converged protocol (`CONVERGED`) on the test functions: its scores, each
    function's support loss after it and after the paper's steps, the steps and seconds it
    used, and (modulations) how far it moved the latents."""
    fit = meta.adapt_converged(
        learner, state, prep.dataset.test, CONVERGED, key=adaptation_key(seed)
    )
    record = _scores(prep.system, fit.models, prep.dataset.test, prep.mesh)
    per = lambda a: np.asarray(a).tolist()
    record.update(support_loss=per(fit.loss), paper_support_loss=per(fit.paper_loss),
                  steps=per(fit.steps), seconds=per(fit.seconds),
                  converged=per(fit.converged), compile_seconds=fit.compile_seconds)  # fmt: skip
    if fit.latents is not None:
        start = np.broadcast_to(np.asarray(learner._test_start(state, key=None)), fit.latents.shape)
        record["latents"] = latent_moves(start, fit.latents, reach)
    return record


def score(config: RunConfig, prep: "Prepared", name: str, seed: int, state, trained: dict) -> dict:
    """Adapt one trained (method, seed) to the test functions, score it, and write
    ``metrics.json`` (``trained``, the training's own record: ``train_seconds``,
    ``best_epoch``, ``history``; and the scoring identity under ``"config"``),
    ``best_state.eqx`` and ``adapted.eqx`` under its directory (process 0). Returns the
    record."""
    system, dataset = prep.system, prep.dataset
    out = _seed_dir(config, name, seed)
    learner = make_learner(name, config, prep.loss_scale)
    adapted = meta.adapt(learner, state, dataset.test, adaptation_key(seed))
    record = _scores(system, adapted.models, dataset.test, prep.mesh)
    record.update(trained)
    if adapted.latents is not None and dataset.train.num_functions > adapted.latents.shape[1]:
        record.update(identification(system, state, dataset, adapted.latents))
    reach = learner.adapt_steps * INNER_LR[name]
    if adapted.latents is not None:
        record["latents"] = latent_statistics(learner, state, adapted.latents, reach)
    if config.converged:
        record["converged"] = converged_scores(prep, learner, state, seed, reach)
    record["config"] = {**provenance.identity(config, name, prep.data, scoring=True), "seed": seed}
    record = json.loads(json.dumps(record))  # the shape it has when read back
    if _lead():
        out.mkdir(parents=True, exist_ok=True)
        eqx.tree_serialise_leaves(out / "best_state.eqx", state)
        eqx.tree_serialise_leaves(out / "adapted.eqx", adapted.models)
        provenance.write_json(out / "metrics.json", record)  # last: it marks the seed done
    return record


def identification(system, state: meta.MetaState, dataset, test_latents) -> dict:
    """How well an affine map from latents to μ, fitted on the training functions, reads off
    the test functions' parameters from their adapted latents: R² per parameter (``mu_r2`` its
    mean) and RMSE per parameter."""
    latent_map = meta.fit_latent_map(state.latents, dataset.train.mu)
    r2 = np.asarray(latent_map.r2(test_latents, dataset.test.mu)).tolist()
    rmse = np.asarray(latent_map.rmse(test_latents, dataset.test.mu)).tolist()
    return {"mu_r2": float(np.mean(r2)), "mu_r2_params": dict(zip(system.param_names, r2)),
            "mu_rmse_params": dict(zip(system.param_names, rmse))}  # fmt: skip


#: The training record a score keeps (re-scoring carries it over from ``metrics.json``).
TRAINED = ("train_seconds", "best_epoch", "history", "unit_seconds")


def _rescore(config: RunConfig, prep: "Prepared", name: str, seed: int, record: dict) -> dict:
    """Score a finished (method, seed) again under this run's test-time settings, from its
    trained state on disk; nothing is trained."""
    path = _seed_dir(config, name, seed) / "best_state.eqx"
    was = {
        k: record["config"].get(k, provenance.TEST_TIME_DEFAULTS[k]) for k in provenance.TEST_TIME
    }
    now = {k: getattr(config, k) for k in provenance.TEST_TIME}
    if not path.is_file():
        raise provenance.StaleRunError(
            f"{name} seed {seed} in {config.out} was scored with "
            f"{', '.join(f'{k}={v!r}' for k, v in was.items() if now[k] != v)}; re-scoring it "
            f"needs its trained state {path}, which is not on disk (trained states are not "
            f"in a clone of the results). Use --restart to train it again, or another --out."
        )  # fmt: skip
    _say(f"{name:8s} re-scoring seed {seed} from its trained state ("
         + ", ".join(f"{k} {was[k]!r} -> {now[k]!r}" for k in now if now[k] != was[k])
         + "); nothing is trained")  # fmt: skip
    like, _ = _skeletons(config, prep.system, prep.dataset, name)
    state = eqx.tree_deserialise_leaves(path, like)
    return score(config, prep, name, seed, state, {k: record[k] for k in TRAINED if k in record})


def run_method(config: RunConfig, prep: "Prepared", name: str) -> list[dict]:
    """Train and score the seeds of ``name`` whose metrics are missing, re-score those scored
    with other test-time settings (`provenance.TEST_TIME`); returns every seed's record (fresh
    ones as written, finished ones read back from ``metrics.json``). Stored work made with
    another training configuration is refused first (`provenance.check`), or deleted with
    ``--restart``."""
    provenance.check(config, name, prep.data)
    metrics = lambda seed: _seed_dir(config, name, seed) / "metrics.json"
    pending = [s for s in config.seeds if not metrics(s).exists()]
    records = {s: json.loads(metrics(s).read_text()) for s in config.seeds if s not in pending}
    stale = [s for s, r in records.items() if not provenance.same_scoring(r["config"], config)]
    if len(records) > len(stale):
        _say(f"{name:8s} reusing {len(records) - len(stale)} finished seed(s) in "
             f"{config.out / name}")  # fmt: skip
    for seed in stale:
        records[seed] = _rescore(config, prep, name, seed, records[seed])
    if pending:
        provenance.record(config, name, pending, prep.data)
        trained = train(config, prep, name, pending)
        for seed, (result, seconds) in trained.items():
            done = {"train_seconds": seconds, "best_epoch": result.best_epoch,
                    "history": result.history.to_dict()}  # fmt: skip
            records[seed] = score(config, prep, name, seed, result.best_state, done)
    return [records[s] for s in config.seeds]


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


def paper_settings(config: RunConfig) -> dict:
    """`paper_value`'s keywords for a run: its K, latent initialisation and the user's
    ``--set`` overrides only. A named regime keeps the paper's values: it is our reading of
    the paper's lost ranges, not a departure from them; ``--set`` is."""
    return {"k": config.shots, "latent_init": config.latent_init, "overrides": config.set}


def table_header(config: RunConfig, k: int) -> str:
    """The table's title: system, budget, K, seeds, device, and any non-default setting."""
    preset = config.budget
    budget = (f"preset {config.preset}: {config.epochs} epochs, width {preset.width}, "
              f"depth {preset.depth}, K = {k}, seeds {list(config.seeds)}")  # fmt: skip
    header = (f"### {config.system} (regime {config.regime}; {budget}; "
              f"device {jax.devices()[0].platform})")  # fmt: skip
    if config.latent_init != "mean":
        header += f"; latent init {config.latent_init}"
    if config.overrides:
        header += "; system overrides " + ", ".join(f"{f} = {v!r}" for f, v in config.overrides)
    return header


def write_table(system_name: str, summary: dict, path: Path, header: str, **paper) -> str:
    """The paper's metrics, ours (mean ± std over seeds) beside the paper's value (``paper``:
    `paper_value`'s ``k``, ``latent_init``, ``overrides``), then our extras (rollout error,
    max energy drift, min dS/dt) for each method; writes and returns the Markdown."""
    present = lambda names: [m for m in names if any(m in s for s in summary.values())]
    cols, extras = present(PAPER_METRICS), present(EXTRA_METRICS)
    head = [f"{c} (ours) | {c} (paper)" for c in cols] + [f"{c} (ours)" for c in extras]
    lines = [header, "", "| method | " + " | ".join(head) + " |",
             "|---|" + "---|---|" * len(cols) + "---|" * len(extras)]  # fmt: skip
    fmt = lambda s, c, spec: f"{s[c]['mean']:{spec}} ± {s[c]['std']:{spec}}" if c in s else "–"
    for method, s in summary.items():
        cells = []
        for c in cols:
            ref = paper_value(system_name, method, c, **paper)
            ours = "diverged" if "diverged" in s else fmt(s, c, ".3f")
            cells += [ours, "–" if ref is None else f"{ref:.3f}"]
        cells += ["diverged" if "diverged" in s else fmt(s, c, ".2e" if c != "rollout_error"
                                                         else ".3f") for c in extras]  # fmt: skip
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def draw_figures(config: RunConfig, system, dataset, firsts: dict) -> bool:
    """Every figure, from the adapted models and trained states on disk (``firsts``: method ->
    the seed to draw, its first finished one). Trained states stay on the machine that made
    them (``.gitignore``), so a clone holds the records but not the states: then no figure is
    redrawn, the files there are kept (each names the methods it shows), and a line says so.
    Returns whether the figures were drawn."""
    kshot = next((m for m in ("mr", "ro", "fw", "shift") if m in firsts), None)
    needed = [_seed_dir(config, n, s) / "adapted.eqx" for n, s in firsts.items()]
    if kshot is not None:
        needed.append(_seed_dir(config, kshot, firsts[kshot]) / "best_state.eqx")
    missing = [p for p in needed if not p.exists()]
    if missing:
        _say(f"figures in {config.out} not redrawn: {len(missing)} trained state(s) are not on "
             f"disk, e.g. {missing[0]} (states stay where they were trained); the figures "
             "there are kept as last drawn")  # fmt: skip
        return False
    adapted = {}
    for name, seed in firsts.items():
        state_like, models_like = _skeletons(config, system, dataset, name)
        path = _seed_dir(config, name, seed)
        adapted[name] = eqx.tree_deserialise_leaves(path / "adapted.eqx", models_like)
        if name == kshot:
            state = eqx.tree_deserialise_leaves(path / "best_state.eqx", state_like)
            plots.kshot_fields(system, dataset.test, make_learner(name, config), state,
                               config.out / f"kshot_{name}.png")  # fmt: skip
    if adapted:
        plots.phase_portraits(system, dataset.test, adapted, config.out / "fields.png")
        plots.trajectories(system, dataset.test, adapted, config.out / "trajectories.png")
    return True


def check_out_regime(config: RunConfig) -> None:
    """Refuse an ``--out`` holding a run of another regime (a run from before regimes existed
    is of ``ours``): its finished (method, seed) results would be reused as this run's."""
    previous = config.out / "results.json"
    if not previous.exists():
        return
    stored = json.loads(previous.read_text())["config"].get("regime", "ours")
    if stored != config.regime:
        raise FlagError(
            f"--out {config.out} holds a run of regime {stored!r}, not "
            f"{config.regime!r}; its finished results would be reused: pass another --out "
            f"(or --regime {stored})"
        )


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


def prepare(config: RunConfig) -> Prepared:
    """Build the system, pick the device layout (both checked before any data is made), then
    load (or generate) the dataset. A bad ``--set`` or ``--devices`` is a `FlagError`
    naming the flag."""
    try:
        system = systems.get_system(config.system, **config.system_overrides)
    except (ValueError, TypeError) as err:
        raise FlagError(f"--set: {err} (regime {config.regime!r})") from err
    check_out_regime(config)
    preset = config.budget
    if system.state_dim > 2 and preset.mesh_points_3d is not None and system.mesh_bounds:
        system = dataclasses.replace(system, mesh_points=preset.mesh_points_3d)
    num_train, available = data.split_counts(NUM_FUNCTIONS, SPLIT)[0], jax.device_count()
    try:
        devices = config.devices or meta.largest_divisor(
            num_train, available, multiple_of=jax.process_count()
        )
        layout = meta.task_mesh(devices, num_train)
    except ValueError as err:
        raise FlagError(f"--devices: {err}") from err
    config.out.mkdir(parents=True, exist_ok=True)
    if not _lead():  # process 0 makes the cache, the others read it
        multihost_utils.sync_global_devices("dataset")
    try:
        dataset = load_dataset(system, config.shots, config.data_seed, config.out / "data")
    except MemoryError as err:  # refused before allocating (`data.generate_dataset`'s max_bytes)
        raise FlagError(f"{err} On the command line: lower --shots, or raise --set dt=... or "
                         "shorten --set t1=...") from err  # fmt: skip
    if _lead() and jax.process_count() > 1:
        multihost_utils.sync_global_devices("dataset")
    assert dataset.train.num_functions == num_train, (dataset.train.num_functions, num_train)
    digest = io.data_digest(dataset)
    if jax.process_count() > 1:
        multihost_utils.assert_equal(
            np.frombuffer(bytes.fromhex(digest), np.uint8),
            f"the processes loaded different datasets from {config.out / 'data'}",
        )
    mesh = system.mesh() if system.mesh_bounds is not None else None
    _say(f"mesh {dict(layout.shape)}: {num_train} training functions over {devices} of "
         f"{available} device(s) in {jax.process_count()} process(es)")  # fmt: skip
    return Prepared(system, dataset, mesh, devices, digest, loss_scale(dataset))


def report(config: RunConfig, prep: Prepared, done: dict) -> str:
    """Write ``results.json``, ``table.md`` and the figures from ``done``: method -> the
    records of its finished seeds (``{seed: record}``, possibly fewer than ``config.seeds``)
    or the message of its divergence. Returns the table."""
    summary, histories, firsts = {}, {}, {}
    for name, records in done.items():
        if isinstance(records, str):
            summary[name] = {"diverged": records}
            continue
        if not records:
            continue
        rows = list(records.values())
        summary[name] = {m: _summary([r[m] for r in rows]) for m in METRICS if m in rows[0]}
        summary[name]["seeds"] = list(records)
        histories.update({f"{name}/seed{s}": r["history"] for s, r in records.items()})
        firsts[name] = next(iter(records))
    header = table_header(config, prep.dataset.train.num_trajectories)
    table = write_table(config.system, summary, config.out / "table.md", header,
                        **paper_settings(config))  # fmt: skip
    results = {
        "system": config.system,
        "config": config.to_json(),
        "data_sha256": prep.data,
        "versions": {p: version(p) for p in ("jaxmeta", "jax", "equinox", "optax", "diffrax")},
        "device": str(jax.devices()[0]),
        "mesh": {"tasks": prep.devices},
        "k": prep.dataset.train.num_trajectories,
        "methods": summary,
    }
    # "figures": the (method, seed) the figures on disk show; kept from the run that drew them
    # where this one cannot redraw them (None: not known).
    path = config.out / "results.json"
    previous = json.loads(path.read_text()).get("figures") if path.exists() else None
    drawn = draw_figures(config, prep.system, prep.dataset, firsts)
    results["figures"] = firsts if drawn else previous
    path.write_text(json.dumps(results, indent=1))
    plots.validation_curves(histories, config.out / "validation.png")
    return table


def start_processes(config: RunConfig) -> None:
    """Join the `jax.distributed` runtime of ``--coordinator`` (before anything touches the
    devices). CPU processes reach each other through Gloo (JAX 0.10's default for
    ``jax_cpu_collectives_implementation``, set explicitly here)."""
    if config.coordinator is None:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(config.coordinator, num_processes=config.num_processes,
                               process_id=config.process_id)  # fmt: skip


def main(argv=None) -> int:
    config = parse_args(argv)
    start_processes(config)
    _say(f"jaxmeta {version('jaxmeta')} | jax {jax.__version__} | {jax.devices()}")
    try:
        for name in config.methods:  # flags only: before any data is made
            provenance.check(config, name)
        prep = prepare(config)
        for name in config.methods:  # and the data: before anything is trained
            provenance.check(config, name, prep.data)
        done = {}
        for name in config.methods:
            try:
                records = run_method(config, prep, name)
            except FloatingPointError as err:  # one diverging method must not sink the others
                _say(f"{name:8s} diverged: {err}")
                done[name] = str(err)
                continue
            done[name] = dict(zip(config.seeds, records))
            errors = [r["trajectory_error"] for r in records]
            _say(f"{name:8s} trajectory error {np.mean(errors):.4f} ± {np.std(errors):.4f}")
    except USER_ERRORS as err:  # bad flags, stale or corrupt stored work: no traceback
        return user_error(err)
    if _lead():
        print(report(config, prep, done))
    return EXIT_DIVERGED if any(isinstance(r, str) for r in done.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
