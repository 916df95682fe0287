"""Meta-learn one benchmark system with every method and score it like the paper.

    python -m experiments.run --system pendulum                 # quick preset, all 8 methods
    python -m experiments.run --system kepler --preset paper --seeds 0,1,2
    python -m experiments.run --system dno --methods ro,mr --shots 5 --out runs/dno-k5
    python -m experiments.run --system duffing --regime ours     # jaxmeta's own ranges

The task regime (``--regime``, `experiments.regimes`; default ``paper-like``, calibrated on
Scratch by ``experiments.calibrate``) sets the system's ranges; ``--set`` overrides on top.

Writes, under ``--out``: ``results.json`` (config, versions, device, per-method mean ± std of
every metric), ``table.md`` (our numbers beside the paper's), figures, and per-(method, seed)
checkpoints, metrics and adapted models, so that the same command started again resumes where
it stopped. Figures are drawn from the files on disk, so a resumed run draws every method.
"""

import dataclasses
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from jaxmeta import data, meta, nn, systems

from . import plots
from .config import PRESETS as PRESETS, Preset, RunConfig, parse_args as _parse_args
from .evaluate import evaluate
from .paper import paper_value
from .registry import METHODS as METHODS, make_learner as _make_learner

# The paper's three metrics (spec §5), then ours: rollout error, structure, time.
PAPER_METRICS = ("trajectory_error", "field_error", "ssim")
EXTRA_METRICS = ("rollout_error", "max_energy_drift", "min_entropy_rate")
METRICS = (*PAPER_METRICS, "rollout_error", "energy_drift", "max_energy_drift",
           "min_entropy_rate", "max_degeneracy", "mu_r2", "train_seconds")  # fmt: skip


def parse_args(argv=None) -> RunConfig:
    """Command line -> `experiments.config.RunConfig`."""
    return _parse_args(argv, doc=__doc__)


def make_learner(name: str, config: RunConfig) -> meta.AbstractMetaLearner:
    """The learner of method ``name`` at the run's preset (registry defaults otherwise)."""
    return _make_learner(name, inner_steps=config.budget.inner_steps,
                         latent_init=config.latent_init)  # fmt: skip


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


def _seed_dir(config: RunConfig, name: str, seed: int) -> Path:
    return config.out / name / f"seed{seed}"


def _skeletons(config: RunConfig, system, dataset: data.Dataset, name: str):
    """Shapes of a trained state and of its adapted models (for loading them from disk)."""
    learner = make_learner(name, config)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(measured))
    return json.loads(path.read_text())


def train(config: RunConfig, system, dataset: data.Dataset, name: str, seeds, devices) -> dict:
    """Train method ``name`` for ``seeds``: one seed with `meta.fit`, several as one vmapped
    program with `meta.fit_seeds` (their stacked checkpoint under
    ``out/<method>/seeds<a>-<b>-.../checkpoints``). Returns ``{seed: (result, seconds)}``,
    each seed's share of the group's wall time."""
    learner, factory = make_learner(name, config), make_model_factory(system, config.budget)
    common = dict(epochs=config.epochs, val_every=config.val_every, progress=config.progress,
                  devices=devices)  # fmt: skip
    start = time.perf_counter()
    if len(seeds) == 1:
        results = [meta.fit(learner, factory, dataset, key=jax.random.key(seeds[0]),
                            checkpoint_dir=_seed_dir(config, name, seeds[0]) / "checkpoints",
                            **common)]  # fmt: skip
    else:
        group = config.out / name / ("seeds" + "-".join(map(str, seeds))) / "checkpoints"
        results = meta.fit_seeds(learner, factory, dataset, checkpoint_dir=group,
                                 keys=[jax.random.key(s) for s in seeds], **common)  # fmt: skip
    seconds = (time.perf_counter() - start) / len(seeds)
    timing = lambda seed: _seed_dir(config, name, seed) / "train_seconds.json"
    return {s: (r, _training_seconds(timing(s), seconds)) for s, r in zip(seeds, results)}


def score(config: RunConfig, system, dataset, mesh, name: str, seed: int, result, seconds):
    """Adapt one trained (method, seed) to the test functions, score it, and write
    ``metrics.json``, ``best_state.eqx`` and ``adapted.eqx`` under its directory."""
    out = _seed_dir(config, name, seed)
    learner = make_learner(name, config)
    adapted = meta.adapt(learner, result.best_state, dataset.test, jax.random.key(10_000 + seed))
    scores = jax.device_get(evaluate(system, adapted.models, dataset.test, mesh))
    record = {k: float(np.mean(v)) for k, v in scores.items() if k not in ("min_entropy_rate",)}
    if "min_entropy_rate" in scores:
        record["min_entropy_rate"] = float(np.min(scores["min_entropy_rate"]))
        record["max_degeneracy"] = float(np.max(scores["max_degeneracy"]))
    record["max_energy_drift"] = float(np.max(scores["energy_drift"]))
    record["train_seconds"] = seconds
    record["best_epoch"] = result.best_epoch
    record["history"] = result.history.to_dict()
    if adapted.latents is not None and dataset.train.num_functions > adapted.latents.shape[1]:
        record.update(identification(system, result.best_state, dataset, adapted.latents))
    out.mkdir(parents=True, exist_ok=True)
    eqx.tree_serialise_leaves(out / "best_state.eqx", result.best_state)
    eqx.tree_serialise_leaves(out / "adapted.eqx", adapted.models)
    (out / "metrics.json").write_text(json.dumps(record, indent=1))


def identification(system, state: meta.MetaState, dataset, test_latents) -> dict:
    """How well an affine map from latents to μ, fitted on the training functions, reads off
    the test functions' parameters from their adapted latents: R² per parameter (``mu_r2`` its
    mean) and RMSE per parameter."""
    latent_map = meta.fit_latent_map(state.latents, dataset.train.mu)
    r2 = np.asarray(latent_map.r2(test_latents, dataset.test.mu)).tolist()
    rmse = np.asarray(latent_map.rmse(test_latents, dataset.test.mu)).tolist()
    return {"mu_r2": float(np.mean(r2)), "mu_r2_params": dict(zip(system.param_names, r2)),
            "mu_rmse_params": dict(zip(system.param_names, rmse))}  # fmt: skip


def run_method(config: RunConfig, prep: "Prepared", name: str) -> list[dict]:
    """Train and score the seeds of ``name`` whose metrics are missing; returns every seed's
    record as read back from ``metrics.json`` (cached and fresh results have one shape)."""
    metrics = lambda seed: _seed_dir(config, name, seed) / "metrics.json"
    pending = [s for s in config.seeds if not metrics(s).exists()]
    done = len(config.seeds) - len(pending)
    if done:
        print(f"{name:8s} reusing {done} finished seed(s) in {config.out / name}", flush=True)
    system, dataset = prep.system, prep.dataset
    trained = train(config, system, dataset, name, pending, prep.devices) if pending else {}
    for seed, (result, seconds) in trained.items():
        score(config, system, dataset, prep.mesh, name, seed, result, seconds)
    return [json.loads(metrics(s).read_text()) for s in config.seeds]


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


def draw_figures(config: RunConfig, system, dataset, firsts: dict) -> None:
    """Every figure, from the adapted models and trained states on disk (``firsts``: method ->
    the seed to draw, its first finished one)."""
    adapted = {}
    kshot = next((m for m in ("mr", "ro", "fw", "shift") if m in firsts), None)
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


def check_out_regime(config: RunConfig) -> None:
    """Refuse an ``--out`` holding a run of another regime (a run from before regimes existed
    is of ``ours``): its finished (method, seed) results would be reused as this run's."""
    previous = config.out / "results.json"
    if not previous.exists():
        return
    stored = json.loads(previous.read_text())["config"].get("regime", "ours")
    if stored != config.regime:
        raise SystemExit(
            f"error: --out {config.out} holds a run of regime {stored!r}, not "
            f"{config.regime!r}; its finished results would be reused: pass another --out "
            f"(or --regime {stored})"
        )


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What every (method, seed) of a run shares: the system (with the preset's mesh), the
    cached dataset, the field-error mesh and the number of devices to shard over."""

    system: systems.AbstractSystem
    dataset: data.Dataset
    mesh: object
    devices: int


def prepare(config: RunConfig) -> Prepared:
    """Build the system, load (or generate) the dataset and pick the device layout."""
    try:
        system = systems.get_system(config.system, **config.system_overrides)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: --set: {err} (regime {config.regime!r})") from err
    check_out_regime(config)
    preset = config.budget
    if system.state_dim > 2 and preset.mesh_points_3d is not None and system.mesh_bounds:
        system = dataclasses.replace(system, mesh_points=preset.mesh_points_3d)
    config.out.mkdir(parents=True, exist_ok=True)
    try:
        dataset = load_dataset(system, config.shots, config.data_seed, config.out / "data")
    except MemoryError as err:  # refused before allocating (`data.generate_dataset`'s max_bytes)
        raise SystemExit(f"error: {err} On the command line: lower --shots, or raise "
                         "--set dt=... or shorten --set t1=...") from err  # fmt: skip
    mesh = system.mesh() if system.mesh_bounds is not None else None
    num_train, available = dataset.train.num_functions, jax.device_count()
    devices = config.devices or meta.largest_divisor(num_train, available)
    try:
        layout = meta.task_mesh(devices, num_train)
    except ValueError as err:
        raise SystemExit(f"error: --devices: {err}") from err
    print(f"mesh {dict(layout.shape)}: {num_train} training functions over {devices} of "
          f"{available} device(s)", flush=True)  # fmt: skip
    return Prepared(system, dataset, mesh, devices)


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
        "versions": {p: version(p) for p in ("jaxmeta", "jax", "equinox", "optax", "diffrax")},
        "device": str(jax.devices()[0]),
        "mesh": {"tasks": prep.devices},
        "k": prep.dataset.train.num_trajectories,
        "methods": summary,
    }
    (config.out / "results.json").write_text(json.dumps(results, indent=1))
    draw_figures(config, prep.system, prep.dataset, firsts)
    plots.validation_curves(histories, config.out / "validation.png")
    return table


def main(argv=None) -> int:
    config = parse_args(argv)
    print(f"jaxmeta {version('jaxmeta')} | jax {jax.__version__} | {jax.devices()}", flush=True)
    prep = prepare(config)
    done = {}
    for name in config.methods:
        try:
            records = run_method(config, prep, name)
        except FloatingPointError as err:  # one diverging method must not sink the others
            print(f"{name:8s} diverged: {err}", flush=True)
            done[name] = str(err)
            continue
        done[name] = dict(zip(config.seeds, records))
        errors = [r["trajectory_error"] for r in records]
        print(f"{name:8s} trajectory error {np.mean(errors):.4f} ± {np.std(errors):.4f}",
              flush=True)  # fmt: skip
    print(report(config, prep, done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
