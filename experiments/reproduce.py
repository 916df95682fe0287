"""Every table of the paper in one command, resumable under a time budget.

    python -m experiments.reproduce --preset quick --systems pendulum --time-budget 10
    python -m experiments.reproduce --preset paper --seeds 0,1,2        # the paper's budget

Runs the jobs below as ``experiments.run`` directories under ``--out`` (default
``runs/reproduce-<preset>-<regime>``), a (job, method) at a time, its pending seeds as one vmapped
program (`jaxmeta.meta.fit_seeds`), and writes ``tables.md``: each table with our mean ± std
beside the paper's numbers and a verdict line computed from them. With ``--time-budget
MINUTES`` a unit starts only if its estimated time (the longest finished unit of the same
method, else of any method, times its seeds) still fits, keeping ``RESERVE`` seconds to write
the tables; where all pending seeds do not fit, one seed runs alone; then it stops cleanly,
and the same command again continues where it stopped (finishing at least one unit a call).
``--tables-only`` trains nothing: it writes the tables of whatever the selected jobs have
finished (a job with nothing finished is left out; one with a (method, seed) still to run
gets its numbers but no verdict).

Finished work is reused only by the configuration that made it (`experiments.provenance`):
a (job, method, seed) made with, say, other ``--epochs`` is refused, naming what differs, and
``--restart`` discards it instead. Exit status: 0; 2 for a bad flag or stale or corrupt
stored work (``error: ...``, nothing trained); 3 when some unit diverged in this call (the
tables are written, with ``diverged``).

Jobs: ``main`` (Tables 1-2 and the K = 10 columns of 7-8: every system, every method),
``zero-init`` (Tables 9-10: modulations, latent initialised at zero), ``k<K>`` (Tables 4-8,
the other K of each system) and ``dno-targeted`` (App. G.2.1, a figure in the paper: ours
only).
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax

from jaxmeta import systems

from . import provenance, run
from ._cli import parse_seeds, parse_systems
from .config import PRESETS, RunConfig
from .paper import paper_value, varying_k
from .regimes import DEFAULT_REGIME, REGIMES
from .registry import METHODS, MODULATIONS
from .verdict import verdict_lines, verdict_table, verdicts

TARGETED_DNO = (("ic_bounds", ((-0.5, 0.5), (-0.5, 0.5), (1.0, 2.0))),)
# Seconds kept at the end of a --time-budget for writing the tables and figures.
RESERVE = 60.0


@dataclasses.dataclass(frozen=True)
class Job:
    """One ``experiments.run`` directory: a system under one setting, and its methods."""

    name: str
    system: str
    methods: tuple[str, ...]
    shots: int | None = None
    latent_init: str = "mean"
    overrides: tuple = ()

    @property
    def title(self) -> str:
        what = {"main": "Tables 1-2, 7-8", "zero-init": "Tables 9-10 (zero latent init)",
                "dno-targeted": "DNO targeted sampling (App. G.2.1; no paper numbers)"}  # fmt: skip
        return f"{self.system}: " + what.get(self.name, f"Tables 4-8 (K = {self.shots})")


def jobs(system_names) -> list[Job]:
    """Every job for ``system_names``, the main table of every system first."""
    modulations = tuple(MODULATIONS)
    out = [Job("main", s, METHODS) for s in system_names]
    out += [Job("zero-init", s, modulations, latent_init="zero")
            for s in system_names if s in ("mass-spring", "pendulum", "duffing", "kepler")]  # fmt: skip
    for s in system_names:
        default = systems.SYSTEMS[s].default_num_trajectories
        out += [Job(f"k{k}", s, METHODS, shots=k) for k in varying_k(s) if k != default]
    if "dno" in system_names:
        out.append(Job("dno-targeted", "dno", modulations, overrides=TARGETED_DNO))
    return out


def job_config(job: Job, args) -> RunConfig:
    preset = PRESETS[args.preset]
    return RunConfig(
        system=job.system, regime=args.regime, methods=job.methods, seeds=tuple(args.seeds),
        shots=job.shots,
        overrides=job.overrides, preset=args.preset, epochs=args.epochs or preset.epochs,
        val_every=preset.val_every, latent_init=job.latent_init,
        out=Path(args.out) / f"{job.system}-{job.name}", progress=not args.no_progress,
        restart=args.restart,
    )  # fmt: skip


def _finished(config: RunConfig, method: str, seed: int) -> Path:
    return config.out / method / f"seed{seed}" / "metrics.json"


def _estimate(configs: list[RunConfig], method: str) -> float | None:
    """Seconds one (method, seed) is expected to take (training, scoring, compiling): the
    longest finished unit of ``method`` in these jobs, else of any method, None if none has
    finished. Conservative: a unit of several vmapped seeds takes longer than one of one."""
    seen = {}
    for config in configs:
        for path in config.out.glob("*/seed*/metrics.json"):
            record = json.loads(path.read_text())
            wall = record.get("unit_seconds", record["train_seconds"])
            seen.setdefault(path.parts[-3], []).append(wall)
    pool = seen.get(method) or [t for ts in seen.values() for t in ts]
    return max(pool) if pool else None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.reproduce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    p.add_argument("--regime", default=DEFAULT_REGIME, choices=tuple(REGIMES),
                   help=f"task regime of experiments.regimes (default {DEFAULT_REGIME})")  # fmt: skip
    p.add_argument("--systems", default=",".join(systems.SYSTEMS),
                   help=f"comma-separated subset of: {', '.join(systems.SYSTEMS)}")  # fmt: skip
    p.add_argument("--seeds", default="0,1,2", help="comma-separated model seeds (default 0,1,2)")
    p.add_argument("--jobs", default=None,
                   help="comma-separated job names to run (main, zero-init, k<K>, dno-targeted; "
                        "default: all)")  # fmt: skip
    p.add_argument("--methods", default=None,
                   help=f"comma-separated subset of: {', '.join(METHODS)} (default: every "
                        "method of each job)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop cleanly before a (job, method, seed) that would not fit")  # fmt: skip
    p.add_argument(
        "--out", default=None, help="output directory (default runs/reproduce-<preset>-<regime>)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--tables-only", action="store_true",
                   help="train nothing: write the tables from the selected jobs' finished work")  # fmt: skip
    p.add_argument("--restart", action="store_true",
                   help="discard stored work made with another configuration (or a corrupt "
                        "checkpoint) and redo it (default: refuse, naming what differs)")  # fmt: skip
    args = p.parse_args(argv)
    args.systems = parse_systems(p, args.systems)
    args.seeds = parse_seeds(p, args.seeds)
    if args.methods is not None:
        args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        bad = [m for m in args.methods if m not in METHODS]
        if bad or not args.methods:
            p.error(f"--methods: unknown {bad or args.methods!r}; valid: {', '.join(METHODS)}")
    if args.jobs is not None:
        args.jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
        names = {j.name for j in jobs(list(systems.SYSTEMS))}
        bad = [j for j in args.jobs if j not in names]
        if bad or not args.jobs:
            p.error(f"--jobs: unknown {bad or args.jobs!r}; valid: {', '.join(sorted(names))}")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.time_budget is not None and not args.time_budget > 0:
        p.error(f"--time-budget must be > 0 minutes, got {args.time_budget}")
    args.out = args.out or f"runs/reproduce-{args.preset}-{args.regime}"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return _reproduce(args)
    except run.USER_ERRORS as err:  # stale or corrupt stored work, bad settings: no traceback
        return run.user_error(err)


def _reproduce(args) -> int:
    start = time.perf_counter()
    budget = None if args.time_budget is None else 60 * args.time_budget
    selected = [j for j in jobs(args.systems) if args.jobs is None or j.name in args.jobs]
    if args.methods is not None:
        keep = lambda j: tuple(m for m in j.methods if m in args.methods)
        selected = [dataclasses.replace(j, methods=keep(j)) for j in selected if keep(j)]
    configs = [job_config(j, args) for j in selected]
    print(f"jax {jax.__version__} | {jax.devices()} | {len(selected)} job(s) in {args.out}")
    for job, config in zip(selected, configs):  # the flags of all stored work, before any data
        for method in job.methods:
            provenance.check(config, method)
    stopped, ran, diverged = None, 0, False
    for job, config in [] if args.tables_only else zip(selected, configs):
        pending = {m: [s for s in config.seeds if not _finished(config, m, s).exists()]
                   for m in job.methods}  # fmt: skip
        if not any(pending.values()):
            continue
        prep = run.prepare(config)
        for method in job.methods:  # and its data, before this job trains anything
            provenance.check(config, method, prep.data)
        for method, seeds in pending.items():
            while seeds and not stopped:
                estimate = _estimate(configs, method)
                left = None if budget is None else budget - RESERVE - (time.perf_counter() - start)
                # All pending seeds as one vmapped program where it fits (or without a budget),
                # else one seed; a call always finishes at least one unit.
                if left is None or (estimate is not None and estimate * len(seeds) <= left):
                    group = seeds
                elif not ran or (estimate is not None and estimate <= left):
                    group = seeds[:1]
                else:
                    stopped = (job.name, job.system, method, seeds[0], estimate)
                    break
                seeds = seeds[len(group) :]
                ran += 1
                diverged |= not _run_unit(job, config, prep, method, group)
        if stopped:
            break
    text = write_tables(selected, configs, Path(args.out) / "tables.md")
    print(text)
    if stopped:
        name, system, method, seed, estimate = stopped
        left = sum(not _finished(c, m, s).exists() for j, c in zip(selected, configs)
                   for m in j.methods for s in c.seeds)  # fmt: skip
        print(f"time budget reached after {(time.perf_counter() - start) / 60:.1f} min: next "
              f"{system}/{name} {method} seed {seed} (~{estimate or 0:.0f} s) would not fit; "
              f"{left} (job, method, seed) left. Run the same command again to continue.")  # fmt: skip
    return run.EXIT_DIVERGED if diverged else 0


def _diverged(config: RunConfig, method: str, seed: int) -> Path:
    """Where a divergence is recorded: in the seed's directory, under its identity."""
    return provenance.seed_dir(config, method, seed) / "diverged.txt"


def _run_unit(job: Job, config: RunConfig, prep, method: str, seeds: list[int]) -> bool:
    """Train and score ``method`` for ``seeds`` (one vmapped program for several); records the
    unit's wall time in each seed's ``metrics.json`` (``unit_seconds``, the estimate of later
    units) or the divergence beside it. Returns False if the unit diverged."""
    one = dataclasses.replace(config, methods=(method,), seeds=tuple(seeds))
    unit_start = time.perf_counter()
    try:
        run.run_method(one, prep, method)
    except FloatingPointError as err:
        print(f"{job.system}/{job.name} {method} seeds {seeds} diverged: {err}", flush=True)
        for seed in seeds:
            _diverged(config, method, seed).write_text(str(err))
        return False
    wall = time.perf_counter() - unit_start
    for seed in seeds:
        path = _finished(config, method, seed)
        record = json.loads(path.read_text())
        record["unit_seconds"] = wall
        provenance.write_json(path, record)
        print(f"{job.system}/{job.name} {method} seed {seed}: trajectory error "
              f"{record['trajectory_error']:.4f} (unit of {len(seeds)} seed(s): {wall:.0f} s)",
              flush=True)  # fmt: skip
    return True


def _records(config: RunConfig, method: str) -> dict:
    out = {}
    for seed in config.seeds:
        path = _finished(config, method, seed)
        if path.exists():
            out[seed] = json.loads(path.read_text())
        elif _diverged(config, method, seed).exists():
            return _diverged(config, method, seed).read_text()
    return out


def glance(mains: dict, metric="trajectory_error", *, title="the main tables", paper=None) -> str:
    """One table, methods × columns, of ``metric`` (``mains``: column label, a system for the
    main jobs -> (results.json's ``methods``, its config)): ours (mean ± std), with the
    paper's beside it where the paper reports the metric (`paper_value` with the keywords
    ``paper[label]``, else the run's own `run.paper_settings`). Methods without the metric are
    left out."""
    methods = [m for m in dict.fromkeys(m for summary, _ in mains.values() for m in summary)
               if any(metric in summary.get(m, {}) or "diverged" in summary.get(m, {})
                      for summary, _ in mains.values())]  # fmt: skip
    settings = {label: (paper or {}).get(label) or run.paper_settings(config)
                for label, (_, config) in mains.items()}  # fmt: skip
    ref = {(label, m): paper_value(config.system, m, metric, **settings[label])
           for label, (_, config) in mains.items() for m in methods}  # fmt: skip
    papered = any(v is not None for v in ref.values())
    lines = [f"## At a glance: {metric} of {title} (ours{' / paper' * papered})\n",
             "| method | " + " | ".join(mains) + " |", "|---|" + "---|" * len(mains)]  # fmt: skip
    for method in methods:
        cells = []
        for label, (summary, _) in mains.items():
            s = summary.get(method, {})
            ours = ("diverged" if "diverged" in s else
                    f"{s[metric]['mean']:.3f} ± {s[metric]['std']:.3f}" if metric in s else "–")  # fmt: skip
            value = ref[label, method]
            cells.append(
                ours + (f" / {'–' if value is None else f'{value:.3f}'}" if papered else "")
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(selected, configs, path: Path) -> str:
    """``tables.md``: every job with any finished (method, seed), its verdict lines, and how
    many seeds each method has; ``summary.md`` (`summary_text`) and, where a system has a
    ``k<K>`` job, ``varying-k.md`` (`varying_k_text`) beside it, both also at its top. A job
    with a (method, seed) still to run gets no verdict: an ordering over some of the methods
    would read as one over all."""
    parts = ["# Our numbers beside the paper's\n"]
    mains, shots, partial = {}, {}, []  # partial: the column labels of unfinished jobs
    for job, config in zip(selected, configs):
        done = {m: _records(config, m) for m in job.methods}
        if not any(done.values()):
            continue
        prep = run.prepare(config)
        for method in job.methods:  # --restart may discard some
            provenance.check(config, method, prep.data)
        done = {m: _records(config, m) for m in job.methods}
        if not any(done.values()):
            continue
        table = run.report(config, prep, done)
        counts = ", ".join(f"{m} {len(r) if isinstance(r, dict) else 'diverged'}"
                           for m, r in done.items())  # fmt: skip
        summary = json.loads((config.out / "results.json").read_text())["methods"]
        left = sum(len(config.seeds) - len(r) for r in done.values() if isinstance(r, dict))
        if left:
            units = len(job.methods) * len(config.seeds)
            verdicts = [f"Verdict withheld: {units - left} of {units} (method, seed) units "
                        "finished; the same command continues the job."]  # fmt: skip
        else:
            verdicts = verdict_lines(config.system, summary, **run.paper_settings(config))
        labels = []  # the columns this job fills in summary.md and varying-k.md
        if job.name == "main":
            mains[config.system] = (summary, config)
            labels.append(config.system)
        if job.name == "main" or job.shots is not None:
            k = job.shots or systems.SYSTEMS[job.system].default_num_trajectories
            shots.setdefault(config.system, {})[k] = (summary, config)
            labels.append(f"{config.system} K={k}")
        if left:
            partial += labels
        parts.append(f"## {job.title}\n\n{table}\nSeeds finished: {counts}.\n\n"
                     + "".join(f"- {v}\n" for v in verdicts))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    shots = {system: by_k for system, by_k in shots.items() if len(by_k) > 1}
    if shots:
        varying = varying_k_text(shots, partial=partial)
        (path.parent / "varying-k.md").write_text(varying)
        parts.insert(1, varying)
    if mains:
        summary = summary_text(mains, partial)
        (path.parent / "summary.md").write_text(summary)
        parts.insert(1, summary)
    text = "\n".join(parts)
    path.write_text(text)
    return text


def _withheld(labels, partial) -> str:
    """The lines that say which of the columns ``labels`` get no verdict (``partial``)."""
    return "".join(f"\nNo verdict for {x}: its job is partial.\n" for x in labels if x in partial)


def summary_text(mains: dict, partial=()) -> str:
    """``summary.md``: the main tables side by side (trajectory and field error, ours beside
    the paper's; the R² of the latent -> mu map) and one table of the verdicts of every system
    not in ``partial`` (those with a main-job (method, seed) still to run)."""
    parts = [glance(mains, m) for m in ("trajectory_error", "field_error", "mu_r2")]
    table = verdict_table({system: verdicts(system, summary, **run.paper_settings(config))
                           for system, (summary, config) in mains.items()
                           if system not in partial})  # fmt: skip
    return (
        "\n".join(parts) + "\n## Verdicts of the main tables\n\n" + table
        + _withheld(mains, partial)
    )  # fmt: skip


def varying_k_text(shots: dict, metric: str = "trajectory_error", partial=()) -> str:
    """``varying-k.md``: Tables 4-8 side by side (``shots``: system -> K -> (results.json's
    ``methods``, its config); the main job is the system's default K): ``metric``, ours
    beside the paper's at the same K, and the verdict on it of every (system, K) whose label
    ``"<system> K=<K>"`` is not in ``partial``. Each job's full table (every metric, every
    verdict) is in ``tables.md``."""
    columns, paper = {}, {}
    for system, by_k in shots.items():
        for k in sorted(by_k):
            label = f"{system} K={k}"
            columns[label] = by_k[k]
            paper[label] = {**run.paper_settings(by_k[k][1]), "k": k}
    text = glance(columns, metric, title="the varying-K tables 4-8", paper=paper)
    table = verdict_table({
        label: {metric: verdicts(config.system, summary, **paper[label])[metric]}
        for label, (summary, config) in columns.items() if label not in partial
    })  # fmt: skip
    verdict_title = f"## Verdicts of the varying-K tables ({metric})"
    return f"{text}\n{verdict_title}\n\n{table}" + _withheld(columns, partial)


if __name__ == "__main__":
    sys.exit(main())
