"""Calibrate the task regime on Scratch alone: how hard are our tasks next to the paper's?

    python -m experiments.calibrate                          # every regime, all six systems
    python -m experiments.calibrate --regime paper-like --systems pendulum,duffing
    python -m experiments.calibrate --candidates             # the candidate regimes below

Scratch (no meta-learning: a fresh model per test function, `jaxmeta.meta.Scratch` with its
defaults, 100 Adam steps at lr 2e-3 on the function's K support trajectories) at the paper's
width (4×100 tanh; HNN or GNN as in ``experiments.run``) is scored on the 10 test functions
with the paper's metrics: the velocity ("trajectory") error at the states of the novel test
trajectories, the field error on the uniform mesh and, for 2-D systems, SSIM. Seeds are model
seeds (the dataset is ``load_or_generate(system, 0, ...)``); the adaptation key of seed ``s``
is every run's (`experiments.scoring.adaptation_key`). Two properties of the data
come with every row: the relative error of the finite-difference training velocities against
the exact ones (a floor under any method fitted to them) and the RMS speed of the test states.

Writes ``<out>/<regime>.md`` and ``.json`` per regime (``all``: every regime, plus
``all.md`` side by side), or ``<out>/candidates.md`` and ``.json`` with ``--candidates``.
Every measurement is also kept in ``<out>/measurements.json``, keyed by the system's fields
and the settings (seeds, width, depth, steps, mesh cap, package version): a system measured
before with the same settings (as a candidate, or under another regime) is read back, not run
again; ``--fresh`` measures everything anew.
"""

import argparse
import dataclasses
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxmeta import data, meta, systems
from jaxmeta.metrics import paper_scores

from ._cli import parse_seeds, parse_systems
from .config import PRESETS
from .paper import paper_value
from .pipeline import coarsen_mesh, make_model_factory
from .regimes import CANDIDATES, REGIMES, Candidate, regime_overrides
from .report import cell, number, summary, table
from .scoring import adaptation_key

METRICS = ("trajectory_error", "field_error", "ssim")


@eqx.filter_jit
def _scores(system, models, test: data.TaskSet, mesh) -> dict:
    """Per test function: the paper's metrics of the adapted ``models`` (batched)."""
    return paper_scores(system, models, test, mesh)


@eqx.filter_jit
def _data_properties(system, test: data.TaskSet) -> dict:
    """Per test function: the relative error of the finite-difference support velocities
    against the exact field at the same states, and the RMS speed of the test states."""
    field = lambda x, mu: system.vector_field(x, mu)
    exact = jax.vmap(lambda xs, mu: jax.vmap(lambda x: field(x, mu))(xs))
    flat = lambda a: a.reshape(a.shape[0], -1, a.shape[-1])
    xs, dxs = flat(test.xs), flat(test.dxs)
    true = exact(xs, test.mu)
    norm = lambda a: jnp.sqrt(jnp.sum(a**2, axis=(1, 2)))
    qdx = flat(test.query_dxs)
    return {
        "fd_error": norm(dxs - true) / norm(true),
        "rms_speed": jnp.sqrt(jnp.mean(jnp.sum(qdx**2, axis=-1), axis=-1)),
    }


def measure(
    system: systems.AbstractSystem,
    seeds: list[int],
    data_dir: Path,
    *,
    width: int,
    depth: int,
    steps: int = 100,
    max_mesh_points: int = 30_000,
) -> dict:
    """Scratch on the test functions of ``system``'s cached dataset, one run per seed.

    **Returns:** ``{metric: {"mean", "std", "per_seed"}}`` for the paper's metrics (the mean
    over the test functions per seed, then mean and population std over seeds), plus
    ``fd_error`` and ``rms_speed`` (means over the test functions), ``k`` and ``mesh_points``.
    """
    dataset = data.load_or_generate(system, 0, data_dir)
    scored = coarsen_mesh(system, max_mesh_points)
    mesh = scored.mesh() if scored.mesh_bounds is not None else None
    preset = dataclasses.replace(PRESETS["paper"], width=width, depth=depth)
    learner = meta.Scratch(adapt_steps=steps)
    state = learner.init(make_model_factory(system, preset), dataset.train.num_functions,
                         key=jax.random.key(0))  # fmt: skip
    per_seed: dict[str, list[float]] = {}
    for seed in seeds:
        adapted = meta.adapt(learner, state, dataset.test, adaptation_key(seed))
        scores = jax.device_get(_scores(scored, adapted.models, dataset.test, mesh))
        for name, values in scores.items():
            per_seed.setdefault(name, []).append(float(np.mean(values)))
    record: dict[str, Any] = {n: summary(per_seed[n]) for n in METRICS if n in per_seed}
    props = jax.device_get(_data_properties(system, dataset.test))
    record.update({k: float(np.mean(v)) for k, v in props.items()})
    record["k"] = dataset.test.num_trajectories
    record["mesh_points"] = scored.mesh_points if mesh is not None else None
    return record


class _Store:
    """Measurements on disk (``measurements.json``), keyed by system fields and settings."""

    def __init__(self, path: Path, fresh: bool):
        self.path = path
        self.records = {} if fresh or not path.exists() else json.loads(path.read_text())

    @staticmethod
    def key(system: systems.AbstractSystem, seeds, settings: dict) -> str:
        fields = {f.name: getattr(system, f.name) for f in dataclasses.fields(system)}
        return json.dumps({"system": system.name, "fields": fields, "seeds": list(seeds),
                           "settings": settings, "jaxmeta": version("jaxmeta")},
                          sort_keys=True)  # fmt: skip

    def measure(self, system, seeds, data_dir: Path, settings: dict) -> dict:
        key = self.key(system, seeds, settings)
        if key not in self.records:
            self.records[key] = measure(system, seeds, data_dir, **settings)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.records, indent=1))
        return self.records[key]


def _fmt(record: dict, metric: str) -> str:
    return cell(record.get(metric))


def _paper(system: str, metric: str) -> str:
    return number(paper_value(system, "scratch", metric))


def _overrides_text(overrides: dict) -> str:
    return "; ".join(f"`{k}={v!r}`" for k, v in overrides.items()) or "(defaults)"


_HEAD = ["velocity error (ours)", "(paper)", "field error (ours)", "(paper)", "SSIM (ours)",
         "(paper)", "FD error", "RMS speed"]  # fmt: skip


def _cells(system: str, record: dict) -> list[str]:
    cells = [x for metric in METRICS for x in (_fmt(record, metric), _paper(system, metric))]
    return cells + [f"{record['fd_error']:.1e}", f"{record['rms_speed']:.3g}"]


def _caption(seeds, width: int, depth: int, steps: int) -> str:
    return (f"Scratch ({depth}×{width} tanh, {steps} Adam steps at lr 2e-3 from a fresh init), "
            f"mean ± std over model seeds {list(seeds)}; paper: its Scratch row (Tables 1-2, "
            f"7-8 at K = 10). FD error: relative error of the finite-difference training "
            f"velocities against the exact ones; RMS speed: of the test states.")  # fmt: skip


def regime_table(regime: str, records: dict, caption: str) -> str:
    """Markdown: one row per system of ``regime`` beside the paper's Scratch row."""
    rows = [[name, _overrides_text(regime_overrides(regime, name)), record["k"],
             *_cells(name, record)] for name, record in records.items()]  # fmt: skip
    head = f"### Scratch under the `{regime}` regime\n\n{caption}\n\n"
    return head + table(["system", "overrides", "K", *_HEAD], rows)


def candidates_table(records: list[tuple[Candidate, dict]], caption: str) -> str:
    """Markdown: one row per candidate, grouped by system."""
    rows = [[cand.name, _overrides_text(cand.overrides), *_cells(cand.system, record)]
            for cand, record in records]  # fmt: skip
    head = f"### Scratch under each candidate regime\n\n{caption}\n\n"
    return head + table(["candidate", "overrides", *_HEAD], rows)


def side_by_side(tables: dict[str, dict], caption: str) -> str:
    """Markdown: the velocity and field errors of every regime beside the paper's."""
    regimes = list(tables)
    cols = ["system", *(f"{r}: {m}" for r in regimes for m in ("velocity", "field")),
            "paper: velocity", "paper: field"]  # fmt: skip
    rows = []
    for name in next(iter(tables.values())):
        ours = [_fmt(tables[r][name], m) for r in regimes
                for m in ("trajectory_error", "field_error")]  # fmt: skip
        rows.append([name, *ours, _paper(name, "trajectory_error"), _paper(name, "field_error")])
    return f"### Scratch: regimes beside the paper\n\n{caption}\n\n" + table(cols, rows)


def _write(out: Path, stem: str, text: str, payload) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=1))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--regime", default="all", choices=(*REGIMES, "all"),
                   help="regime to measure (default: all)")  # fmt: skip
    p.add_argument("--systems", default=",".join(systems.SYSTEMS),
                   help=f"comma-separated subset of: {', '.join(systems.SYSTEMS)}")  # fmt: skip
    p.add_argument("--seeds", default="0,1,2", help="comma-separated model seeds (default 0,1,2)")
    p.add_argument("--candidates", action="store_true",
                   help="measure the candidate regimes (CANDIDATES) instead of --regime")  # fmt: skip
    p.add_argument("--steps", type=int, default=100,
                   help="Scratch's Adam steps (default 100, the paper's test-time budget; "
                        "other values write <name>-steps<N>.md)")  # fmt: skip
    p.add_argument("--width", type=int, default=PRESETS["paper"].width,
                   help="MLP width (default the paper's 100; smaller only for smoke tests)")  # fmt: skip
    p.add_argument("--depth", type=int, default=PRESETS["paper"].depth,
                   help="MLP hidden layers (default the paper's 4)")  # fmt: skip
    p.add_argument("--max-mesh-points", type=int, default=30_000,
                   help="largest field-error mesh; a larger one (TGC's 30^4) is coarsened to "
                        "the most points per axis within it (default 30000: TGC 13^4)")  # fmt: skip
    p.add_argument("--data-dir", default="runs/calibration/data", help="dataset cache")
    p.add_argument("--out", default="results/calibration", help="output directory")
    p.add_argument("--fresh", action="store_true",
                   help="measure anew, ignoring <out>/measurements.json")  # fmt: skip
    args = p.parse_args(argv)
    args.systems = parse_systems(p, args.systems)
    args.seeds = parse_seeds(p, args.seeds)
    for flag in ("steps", "width", "depth", "max_mesh_points"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    return args


def _candidates(args, store, settings: dict, caption: str, suffix: str) -> str:
    records = []
    for cand in (c for c in CANDIDATES if c.system in args.systems):
        system = systems.get_system(cand.system, **cand.overrides)
        record = store.measure(system, args.seeds, Path(args.data_dir), settings)
        print(f"{cand.name:55s} velocity error {_fmt(record, 'trajectory_error')}", flush=True)
        records.append((cand, record))
    text = candidates_table(records, caption)
    payload = [{"system": c.system, "label": c.label, "overrides": c.overrides, **r}
               for c, r in records]  # fmt: skip
    _write(Path(args.out), "candidates" + suffix, text, payload)
    return text


def _regimes(args, store, settings: dict, caption: str, suffix: str) -> str:
    tables, texts = {}, []
    for regime in list(REGIMES) if args.regime == "all" else [args.regime]:
        records = {}
        for name in args.systems:
            system = systems.get_system(name, **regime_overrides(regime, name))
            records[name] = store.measure(system, args.seeds, Path(args.data_dir), settings)
            print(f"{regime}: {name:12s} velocity error "
                  f"{_fmt(records[name], 'trajectory_error')}", flush=True)  # fmt: skip
        tables[regime] = records
        texts.append(regime_table(regime, records, caption))
        payload = {"regime": regime, "seeds": args.seeds, "steps": args.steps,
                   "width": args.width, "depth": args.depth,
                   "systems": {n: {"overrides": regime_overrides(regime, n), **r}
                               for n, r in records.items()}}  # fmt: skip
        _write(Path(args.out), regime + suffix, texts[-1], payload)
    if len(tables) > 1:
        texts.append(side_by_side(tables, caption))
        _write(Path(args.out), "all" + suffix, texts[-1], dict(tables))
    return "\n".join(texts)


def main(argv=None) -> int:
    args = parse_args(argv)
    suffix = "" if args.steps == 100 else f"-steps{args.steps}"
    caption = _caption(args.seeds, args.width, args.depth, args.steps)
    settings = dict(width=args.width, depth=args.depth, steps=args.steps,
                    max_mesh_points=args.max_mesh_points)  # fmt: skip
    store = _Store(Path(args.out) / "measurements.json", args.fresh)
    measure_all = _candidates if args.candidates else _regimes
    print(measure_all(args, store, settings, caption, suffix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
