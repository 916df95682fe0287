"""Meta-learn one benchmark system with every method and score it like the paper.

    python -m experiments.run --system pendulum                 # quick preset, all 8 methods
    python -m experiments.run --system kepler --preset paper --seeds 0,1,2
    python -m experiments.run --system dno --methods ro,mr --shots 5 --out runs/dno-k5

The one place in jaxmeta where strings become objects. Writes, under ``--out``:
``results.json`` (config, versions, device, per-method mean ± std of every metric),
``table.md`` (our numbers beside the paper's), figures, and per-(method, seed) checkpoints
and metrics, so that the same command started again resumes where it stopped.
"""

import argparse
import ast
import dataclasses
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import jax
import numpy as np

from jaxmeta import data, meta, modulation, nn, systems

from . import plots
from .evaluate import evaluate
from .paper import METHODS, paper_value


@dataclasses.dataclass(frozen=True)
class Preset:
    """Budgets and sizes; ``paper`` is the paper's (App. F), ``quick`` fits a laptop CPU."""

    width: int
    depth: int
    epochs: int
    val_every: int
    inner_steps: int
    mesh_points_3d: int | None  # coarser field-error mesh for DNO/TGC (None: the system's)


PRESETS = {
    "quick": Preset(width=32, depth=2, epochs=150, val_every=50, inner_steps=3, mesh_points_3d=12),
    "paper": Preset(width=100, depth=4, epochs=10_000, val_every=1, inner_steps=3,
                    mesh_points_3d=None),
}  # fmt: skip

MODULATIONS = {
    "shift": modulation.Shift,
    "fw": modulation.FullWeight,
    "ro": modulation.RankOne,
    "mr": lambda: modulation.MultiRank(rank=5),
}


def make_learner(name: str, preset: Preset, latent_init: str) -> meta.AbstractMetaLearner:
    """Method name -> learner, with the paper's learning rates (spec §4)."""
    common = dict(inner_steps=preset.inner_steps, adapt_steps=100, tasks_per_step=5)
    if name in MODULATIONS:
        return meta.AutoDecoding(MODULATIONS[name](), latent_init=latent_init, **common)
    return {"maml": meta.MAML, "reptile": meta.Reptile, "anil": meta.ANIL, "scratch": meta.Scratch}[
        name
    ](**common)


def make_model_factory(system, preset: Preset):
    """HNN for Hamiltonian systems, GENERIC NN (one (q, p) pair) for dissipative ones."""
    if isinstance(system, systems.AbstractHamiltonianSystem):
        return lambda key: nn.HNN(system.state_dim, width=preset.width, depth=preset.depth, key=key)
    return lambda key: nn.GNN(
        1, system.state_dim - 2, width=preset.width, depth=preset.depth, key=key
    )


def _parse_list(text: str, valid, what: str, cast=str) -> list:
    items = [cast(t.strip()) for t in text.split(",") if t.strip()]
    bad = [t for t in items if valid is not None and t not in valid]
    if not items or bad:
        raise SystemExit(
            f"error: unknown {what} {bad or text!r}; valid: {', '.join(map(str, valid))}"
        )
    return items


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--system", default="pendulum", help=f"one of: {', '.join(systems.SYSTEMS)}")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated subset of: {', '.join(METHODS)} (default: all)")  # fmt: skip
    p.add_argument("--seeds", default="0", help="comma-separated model seeds (default: 0)")
    p.add_argument("--shots", type=int, default=None,
                   help="support trajectories K per function (default: the paper's K, 20 for "
                        "mass-spring, 10 otherwise); a K above it generates a dataset with K "
                        "trajectories per function, one below it uses the first K")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a field of the system (repeatable), a Python literal, e.g. "
                        "--set 'ic_bounds=((-0.5, 0.5), (-0.5, 0.5), (1.0, 2.0))'")  # fmt: skip
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS),
                   help="budget: quick (minutes on a laptop CPU) or paper (App. F)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--val-every", type=int, default=None, help="override validation interval")
    p.add_argument("--latent-init", default="mean", choices=("mean", "zero"),
                   help="test-time latent initialisation (zero: Tables 9-10 ablation)")  # fmt: skip
    p.add_argument("--data-seed", type=int, default=0, help="seed of the dataset (default 0)")
    p.add_argument("--out", default=None, help="output directory (default: runs/<system>)")
    p.add_argument("--devices", type=int, default=None,
                   help="devices to shard the training functions over (default: the most "
                        "available devices dividing their number)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = p.parse_args(argv)
    if args.system not in systems.SYSTEMS:
        p.error(f"unknown system {args.system!r}; valid: {', '.join(systems.SYSTEMS)}")
    args.methods = _parse_list(args.methods, METHODS, "method(s)")
    try:
        args.seeds = _parse_list(args.seeds, None, "seeds", int)
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    for flag in ("shots", "epochs", "val_every", "devices"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    args.set = _parse_overrides(p, args.system, args.set)
    return args


def _parse_overrides(parser, system_name: str, items: list[str]) -> dict:
    """``["field=literal", ...]`` -> ``{field: value}``, checked against the system's fields."""
    fields = [f.name for f in dataclasses.fields(systems.SYSTEMS[system_name])]
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            parser.error(f"--set {item!r}: expected FIELD=VALUE with FIELD one of: "
                         f"{', '.join(fields)}")  # fmt: skip
        try:
            overrides[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            parser.error(f"--set {item!r}: {text.strip()!r} is not a Python literal")
    return overrides


def _summary(values: list) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "per_seed": arr.tolist()}


def train_seeds(args, preset, system, dataset, name, seeds, out: Path, progress, devices):
    """Train the (method, seeds) whose metrics are missing: one seed with `meta.fit`, several
    as one vmapped program with `meta.fit_seeds` (their stacked checkpoint under
    ``out/<method>/seeds<a>-<b>-.../checkpoints``). Returns ``{seed: result}`` and writes
    each seed's training time, the group's wall time shared equally among its seeds, to
    ``out/<method>/seed<s>/train_seconds.json``."""
    learner = make_learner(name, preset, args.latent_init)
    common = dict(epochs=args.epochs or preset.epochs, val_every=args.val_every or preset.val_every,
                  progress=progress, devices=devices)  # fmt: skip
    start = time.perf_counter()
    if len(seeds) == 1:
        results = [meta.fit(learner, make_model_factory(system, preset), dataset,
                            key=jax.random.key(seeds[0]),
                            checkpoint_dir=out / name / f"seed{seeds[0]}" / "checkpoints", **common)]  # fmt: skip
    else:
        results = meta.fit_seeds(learner, make_model_factory(system, preset), dataset,
                                 keys=[jax.random.key(s) for s in seeds],
                                 checkpoint_dir=out / name / ("seeds" + "-".join(map(str, seeds)))
                                 / "checkpoints", **common)  # fmt: skip
    seconds = (time.perf_counter() - start) / len(seeds)
    for seed in seeds:
        # The training time survives a run stopped before scoring (or scored again after
        # deleting metrics.json): a later call only loads the finished checkpoint.
        timing = out / name / f"seed{seed}" / "train_seconds.json"
        if not timing.exists():
            timing.parent.mkdir(parents=True, exist_ok=True)
            timing.write_text(json.dumps(seconds))
    return dict(zip(seeds, results))


def run_one(args, preset, system, dataset, mesh, name, seed, out: Path, trained):
    """Adapt and score one trained (method, seed); cached in ``out/metrics.json``."""
    done = out / "metrics.json"
    if done.exists():
        return json.loads(done.read_text()), None
    learner = make_learner(name, preset, args.latent_init)
    result = trained[seed]
    train_s = json.loads((out / "train_seconds.json").read_text())
    adapted = meta.adapt(learner, result.best_state, dataset.test, jax.random.key(10_000 + seed))
    scores = jax.device_get(evaluate(system, adapted.models, dataset.test, mesh))
    record = {k: float(np.mean(v)) for k, v in scores.items() if k not in ("min_entropy_rate",)}
    if "min_entropy_rate" in scores:
        record["min_entropy_rate"] = float(np.min(scores["min_entropy_rate"]))
        record["max_degeneracy"] = float(np.max(scores["max_degeneracy"]))
    record["max_energy_drift"] = float(np.max(scores["energy_drift"]))
    record["train_seconds"] = train_s
    record["best_epoch"] = result.best_epoch
    record["history"] = result.history
    out.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(record, indent=1))
    return record, adapted.models


METRICS = ("trajectory_error", "field_error", "ssim", "energy_drift", "max_energy_drift",
           "min_entropy_rate", "max_degeneracy", "train_seconds")  # fmt: skip


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


def table_header(args, preset: Preset, k: int) -> str:
    """The table's title: system, budget, K, seeds, device, and any non-default setting."""
    budget = (f"preset {args.preset}: {args.epochs or preset.epochs} epochs, width {preset.width}, "
              f"depth {preset.depth}, K = {k}, seeds {args.seeds}")  # fmt: skip
    header = f"### {args.system} ({budget}; device {jax.devices()[0].platform})"
    if args.latent_init != "mean":
        header += f"; latent init {args.latent_init}"
    if args.set:
        header += "; system overrides " + ", ".join(f"{f} = {v!r}" for f, v in args.set.items())
    return header


def write_table(system_name: str, summary: dict, path: Path, header: str, **paper) -> str:
    """Our mean ± std beside the paper's value (``paper``: `paper_value`'s ``k``,
    ``latent_init``) for each method; writes and returns the Markdown."""
    cols = [m for m in ("trajectory_error", "field_error", "ssim")
            if any(m in s for s in summary.values())]  # fmt: skip
    lines = [header, "", "| method | " + " | ".join(f"{c} (ours) | {c} (paper)" for c in cols) + " |",
             "|---|" + "---|---|" * len(cols)]  # fmt: skip
    for method, s in summary.items():
        cells = []
        for c in cols:
            if "diverged" in s:
                ours = "diverged"
            else:
                ours = f"{s[c]['mean']:.3f} ± {s[c]['std']:.3f}" if c in s else "–"
            ref = paper_value(system_name, method, c, **paper)
            cells += [ours, "–" if ref is None else f"{ref:.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    preset = PRESETS[args.preset]
    try:
        system = systems.get_system(args.system, **args.set)
    except (ValueError, TypeError) as err:
        raise SystemExit(f"error: --set: {err}") from err
    if system.state_dim > 2 and preset.mesh_points_3d is not None and system.mesh_bounds:
        system = dataclasses.replace(system, mesh_points=preset.mesh_points_3d)
    out = Path(args.out or f"runs/{args.system}")
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    print(f"jaxmeta {version('jaxmeta')} | jax {jax.__version__} | {jax.devices()}", flush=True)
    dataset = load_dataset(system, args.shots, args.data_seed, out / "data")
    mesh = system.mesh() if system.mesh_bounds is not None else None
    num_train, available = dataset.train.num_functions, jax.device_count()
    devices = args.devices or meta.largest_divisor(num_train, available)
    try:
        layout = meta.task_mesh(devices, num_train)
    except ValueError as err:
        raise SystemExit(f"error: --devices: {err}") from err
    print(f"mesh {dict(layout.shape)}: {num_train} training functions over {devices} of "
          f"{available} device(s)", flush=True)  # fmt: skip
    summary, adapted, histories = {}, {}, {}
    kshot_method = next((m for m in ("mr", "ro", "fw", "shift") if m in args.methods), None)
    for name in args.methods:
        records = []
        pending = [s for s in args.seeds if not (out / name / f"seed{s}" / "metrics.json").exists()]
        try:
            trained = train_seeds(args, preset, system, dataset, name, pending, out, progress,
                                  devices) if pending else {}  # fmt: skip
        except FloatingPointError as err:  # one diverging method must not sink the others
            print(f"{name:8s} diverged: {err}", flush=True)
            summary[name] = {"diverged": str(err)}
            continue
        for seed in args.seeds:
            record, models = run_one(args, preset, system, dataset, mesh, name, seed,
                                     out / name / f"seed{seed}", trained)  # fmt: skip
            records.append(record)
            if models is not None and seed == args.seeds[0]:
                adapted[name] = models
                if name == kshot_method:
                    learner = make_learner(name, preset, args.latent_init)
                    plots.kshot_fields(system, dataset.test, learner, trained[seed].best_state,
                                       out / f"kshot_{name}.png")  # fmt: skip
            histories[f"{name}/seed{seed}"] = record["history"]
        summary[name] = {m: _summary([r[m] for r in records]) for m in METRICS if m in records[0]}
        line = f"{name:8s} trajectory error {summary[name]['trajectory_error']['mean']:.4f}"
        print(line + f" ± {summary[name]['trajectory_error']['std']:.4f}", flush=True)
    header = table_header(args, preset, dataset.train.num_trajectories)
    paper = {"k": args.shots, "latent_init": args.latent_init, "overrides": args.set}
    table = write_table(args.system, summary, out / "table.md", header, **paper)
    results = {
        "system": args.system,
        "config": {**vars(args), "preset_values": dataclasses.asdict(preset)},
        "versions": {p: version(p) for p in ("jaxmeta", "jax", "equinox", "optax", "diffrax")},
        "device": str(jax.devices()[0]),
        "mesh": {"tasks": devices},
        "k": dataset.train.num_trajectories,
        "methods": summary,
    }
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if adapted:
        plots.phase_portraits(system, dataset.test, adapted, out / "fields.png")
        plots.trajectories(system, dataset.test, adapted, out / "trajectories.png")
    plots.validation_curves(histories, out / "validation.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
