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

Finished work is reused only by the configuration that made it (`experiments.store`):
a (job, method, seed) made with, say, other ``--epochs`` is refused, naming what differs, and
``--restart`` discards it instead. Exit status: 0; 2 for a bad flag or stale or corrupt
stored work (``error: ...``, nothing trained); 3 when some unit diverged in this call (the
tables are written, with ``diverged``).

Jobs: ``main`` (Tables 1-2 and the K = 10 columns of 7-8: every system, every method),
``zero-init`` (Tables 9-10: modulations, latent initialised at zero; a test-time setting, so
it re-scores the main job's trained states where they are on disk), ``k<K>`` (Tables 4-8,
the other K of each system) and ``dno-targeted`` (App. G.2.1, a figure in the paper: ours
only).
"""

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import jax

from jaxmeta import systems

from . import pipeline, report, run, scoring, store
from ._cli import parse_names, parse_seeds, parse_systems
from .config import PRESETS, RunConfig
from .paper import varying_k
from .regimes import DEFAULT_REGIME, REGIMES
from .registry import METHODS, MODULATIONS

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
    def scores_main(self) -> bool:
        """Whether the job differs from its system's main job at test time only (so it
        re-scores the main job's trained states)."""
        return self.name == "zero-init"

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
    return store.metrics_path(config, method, seed)


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
        args.methods = parse_names(p, "--methods", args.methods, METHODS)
    if args.jobs is not None:
        names = sorted({j.name for j in jobs(list(systems.SYSTEMS))})
        args.jobs = parse_names(p, "--jobs", args.jobs, names)
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.time_budget is not None and not args.time_budget > 0:
        p.error(f"--time-budget must be > 0 minutes, got {args.time_budget}")
    args.out = args.out or f"runs/reproduce-{args.preset}-{args.regime}"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with store.hold(Path(args.out)):
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
    if not args.tables_only:  # the flags of all stored work, before any data
        for job, config in zip(selected, configs):
            for method in job.methods:
                store.check(config, method)
    stopped, ran, diverged = None, 0, False
    for job, config in [] if args.tables_only else zip(selected, configs):
        pending = {m: [s for s in config.seeds if not _finished(config, m, s).exists()]
                   for m in job.methods}  # fmt: skip
        if not any(pending.values()):
            continue
        prep = pipeline.prepare(config)
        for method in job.methods:  # and its data, before this job trains anything
            store.check(config, method, prep.data)
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


def _run_unit(job: Job, config: RunConfig, prep, method: str, seeds: list[int]) -> bool:
    """Train and score ``method`` for ``seeds`` (one vmapped program for several), the unit's
    wall time in each seed's ``metrics.json`` (`scoring.run_unit`; ``unit_seconds`` is the
    estimate of later units) or the divergence beside it. Returns False if the unit
    diverged."""
    one = dataclasses.replace(config, methods=(method,), seeds=tuple(seeds))
    unit_start = time.perf_counter()
    if job.scores_main:
        for seed in seeds:
            _from_main(config, method, seed)
    try:
        records = scoring.run_unit(one, prep, method, started=unit_start)
    except FloatingPointError as err:
        print(f"{job.system}/{job.name} {method} seeds {seeds} diverged: {err}", flush=True)
        return False
    for seed, record in zip(seeds, records):
        print(f"{job.system}/{job.name} {method} seed {seed}: trajectory error "
              f"{record['trajectory_error']:.4f} (unit of {len(seeds)} seed(s): "
              f"{record['unit_seconds']:.0f} s)", flush=True)  # fmt: skip
    return True


def _from_main(config: RunConfig, method: str, seed: int) -> None:
    """A job that only re-scores the main job's training (zero-init): copy the main job's
    finished (method, seed) here, so `scoring.run_method` re-scores it from its trained state
    instead of training it again (where the main job's state is not on disk, it trains: the
    same training gives the same state)."""
    main = dataclasses.replace(config, out=config.out.parent / f"{config.system}-main",
                               latent_init="mean")  # fmt: skip
    source = [store.metrics_path(main, method, seed), store.state_path(main, method, seed)]
    if store.metrics_path(config, method, seed).exists() or not all(p.exists() for p in source):
        return
    target = store.seed_dir(config, method, seed)
    target.mkdir(parents=True, exist_ok=True)
    for path in source:
        shutil.copy2(path, target / path.name)


def _records(config: RunConfig, method: str) -> dict:
    out = {}
    for seed in config.seeds:
        path = _finished(config, method, seed)
        if path.exists():
            out[seed] = json.loads(path.read_text())
        elif store.diverged_path(config, method, seed).exists():
            return store.diverged_path(config, method, seed).read_text()
    return out


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
        try:
            prep = pipeline.prepare(config)
            for method in job.methods:  # --restart may discard some
                store.check(config, method, prep.data)
        except store.StaleRunError as err:  # tables of this configuration's work only
            parts.append(f"## {job.title}\n\nNot re-made: {err}\n")
            print(f"{job.system}/{job.name}: not re-made: {err}", flush=True)
            continue
        done = {m: _records(config, m) for m in job.methods}
        if not any(done.values()):
            continue
        table = report.write_run(config, prep, done)
        counts = ", ".join(f"{m} {len(r) if isinstance(r, dict) else 'diverged'}"
                           for m, r in done.items())  # fmt: skip
        summary = json.loads((config.out / "results.json").read_text())["methods"]
        left = sum(len(config.seeds) - len(r) for r in done.values() if isinstance(r, dict))
        if left:
            units = len(job.methods) * len(config.seeds)
            verdicts = [f"Verdict withheld: {units - left} of {units} (method, seed) units "
                        "finished; the same command continues the job."]  # fmt: skip
        else:
            verdicts = report.verdict_lines(config.system, summary, **report.paper_settings(config))
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
        varying = report.varying_k_text(shots, partial=partial)
        (path.parent / "varying-k.md").write_text(varying)
        parts.insert(1, varying)
    if mains:
        summary = report.summary_text(mains, partial)
        (path.parent / "summary.md").write_text(summary)
        parts.insert(1, summary)
    text = "\n".join(parts)
    path.write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
