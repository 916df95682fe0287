"""The pre-registered study of why the paper's ordering fails here (``results/study/PROTOCOL.md``).

    python -m experiments.study --stage e2000 --time-budget 600     # resumable
    python -m experiments.study --stage e10000 --time-budget 600
    python -m experiments.study --tables-only                       # tables and figure of finished work

Three choices the paper's text leaves open, crossed as the protocol fixes them: the test-time
protocol (the paper's 100 Adam steps, or each function's fit run to convergence, for every
method: `jaxmeta.meta.adapt_converged`), the training latents' optimiser state (fresh or
persistent) and the later version's locality regulariser (weights in units of the data's
loss scale, `experiments.pipeline.loss_scale`). Every unit, one (stage, system, variant, method)
with its seeds as one vmapped program, is an ``experiments.run`` directory
``<out>/<stage>/<system>/<variant>/`` scored under both protocols (``--converged``).

With ``--time-budget MINUTES`` a unit starts while one checkpoint interval of it still fits
(its estimate: the longest finished unit of the same system and method, scaled to the stage's
epochs, else the protocol's measured projection; per epoch, times the epochs between
checkpoints). It trains until its next checkpoint would pass the budget and stops there; the
same command continues from that checkpoint, so a unit longer than any one call (DNO's MAML
at 10,000 epochs) advances call by call. Units run in
the protocol's order. Several processes may run the same command at once (one per core):
each unit is claimed with a lock file, so each is run by one of them.
``tables.md`` under ``--out``: every unit finished so far, both protocols, the latent
statistics, and the verdicts the protocol's rules compute; ``<stage>-protocols.png`` beside
it: each method's error under both protocols (base variant). Exit status: 0; 2 for a bad flag
or stale stored work; 3 when a unit diverged.

``--systems``, ``--variants``, ``--methods`` and ``--epochs`` select or shrink the work for a
trial run (into another ``--out``); the protocol's runs use none of them.
"""

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax

from . import pipeline, run, scoring, store
from ._cli import parse_names, parse_systems
from .config import PRESETS, RunConfig
from .registry import METHODS

SEEDS = (0, 1, 2)
# Order of the systems in every stage: cheapest first (`PROJECTION`).
SYSTEMS = ("pendulum", "duffing", "mass-spring", "kepler", "dno", "tgc")
STAGES = {"e2000": 2000, "e10000": 10_000}
LONG_SYSTEMS = ("pendulum", "dno")
# Modulations that carry the variants (the protocol narrows the variants, not the systems).
CARRIERS = ("ro", "fw")
RESERVE = 60.0  # seconds kept for the tables at the end of a --time-budget
# The pilot's measured seconds per epoch of one unit (3 seeds vmapped, quick width, validation
# every 10 epochs, one process on the quiet 2-core CPU; PROTOCOL.md): the estimate of a unit
# until one of its system and method has finished. Scratch trains nothing.
PROJECTION = {
    "pendulum": {"maml": 0.429, "reptile": 0.143, "anil": 0.169, "shift": 0.103, "fw": 0.169,
                 "ro": 0.167, "mr": 0.165},
    "mass-spring": {"maml": 0.855, "reptile": 0.284, "anil": 0.338, "shift": 0.225, "fw": 0.323,
                    "ro": 0.319, "mr": 0.333},
    "duffing": {"maml": 0.387, "reptile": 0.132, "anil": 0.15, "shift": 0.101, "fw": 0.169,
                "ro": 0.176, "mr": 0.204},
    "kepler": {"maml": 1.58, "reptile": 0.519, "anil": 0.776, "shift": 0.545, "fw": 0.834,
               "ro": 0.773, "mr": 0.675},
    "dno": {"maml": 3.578, "reptile": 1.25, "anil": 1.57, "shift": 0.928, "fw": 1.363,
            "ro": 1.315, "mr": 1.317},
    "tgc": {"maml": 3.25, "reptile": 1.095, "anil": 1.289, "shift": 0.871, "fw": 1.316,
            "ro": 1.234, "mr": 1.314},
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Variant:
    """A training variant of the modulations: the latent state and the regulariser weights
    (in units of the data's loss scale)."""

    name: str
    latent_state: str = "fresh"
    latent_penalty: float = 0.0
    hypernet_penalty: float = 0.0

    @property
    def label(self) -> str:
        reg = (f"λ_z {self.latent_penalty:g}, λ_φ {self.hypernet_penalty:g}"
               if self.latent_penalty or self.hypernet_penalty else "no regulariser")  # fmt: skip
        return f"{self.name} ({self.latent_state}, {reg})"


BASE = Variant("base")
# In the order they run: the latent state, the level that contracts the latents, then the
# later version's grid (paired) from strong to weak. No cross of the two factors.
VARIANTS = (
    BASE,
    Variant("persistent", latent_state="persistent"),
    Variant("contract", latent_penalty=1.0, hypernet_penalty=1e-2),
    Variant("reg-strong", latent_penalty=1e-1, hypernet_penalty=1e-2),
    Variant("reg-mid", latent_penalty=1e-2, hypernet_penalty=1e-3),
    Variant("reg-weak", latent_penalty=1e-3, hypernet_penalty=1e-4),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


@dataclasses.dataclass(frozen=True)
class Unit:
    stage: str
    system: str
    variant: Variant
    method: str

    @property
    def label(self) -> str:
        return f"{self.stage}/{self.system}/{self.variant.name}/{self.method}"


def stage_systems(stage: str) -> tuple[str, ...]:
    """The systems ``stage`` trains: all six at e2000, pendulum and DNO at e10000."""
    return SYSTEMS if stage == "e2000" else LONG_SYSTEMS


def stage_variants(stage: str, long_variant: str | None = None) -> tuple[Variant, ...]:
    """The variants ``stage`` trains, base first: every one at e2000; at e10000 the base and
    ``long_variant``, rule 3's pick (None while undecided)."""
    return tuple(v for v in VARIANTS if stage == "e2000" or v is BASE or v.name == long_variant)


def units(stage: str, system_names, long_variant: str | None = None) -> list[Unit]:
    """The protocol's units of ``stage`` in its order: every method of the base variant on
    every system of the stage, then each other variant of the stage for the carriers."""
    names = [s for s in stage_systems(stage) if s in system_names]
    out = [Unit(stage, system, BASE, m) for system in names for m in METHODS]
    for v in stage_variants(stage, long_variant)[1:]:
        out += [Unit(stage, system, v, m) for system in names for m in CARRIERS]
    return out


def unit_config(unit: Unit, out: Path, *, progress: bool, epochs: int | None = None) -> RunConfig:
    preset = PRESETS["quick"]
    v = unit.variant
    return RunConfig(
        system=unit.system, methods=(unit.method,), seeds=SEEDS, preset="quick",
        epochs=epochs or STAGES[unit.stage], val_every=min(preset.val_every, epochs or STAGES[unit.stage]),
        latent_state=v.latent_state,
        latent_penalty=v.latent_penalty, hypernet_penalty=v.hypernet_penalty, converged=True,
        out=out / unit.stage / unit.system / v.name, progress=progress,
    )  # fmt: skip


def finished(config: RunConfig, method: str) -> bool:
    """Whether every seed of the unit has its metrics, or the unit diverged (recorded)."""
    paths = (store.metrics_path, store.diverged_path)
    return all(any(p(config, method, s).exists() for p in paths) for s in config.seeds)


def estimate(unit: Unit, out: Path, epochs: int) -> float:
    """Seconds the unit should take at ``epochs``: the longest finished unit of its system and
    method (any variant or stage, scaled to ``epochs``), else the protocol's `PROJECTION`."""
    seen = []
    for path in out.glob(f"*/{unit.system}/*/{unit.method}/seed0/metrics.json"):
        record = json.loads(path.read_text())
        seen.append(record.get("unit_seconds", 0.0) * epochs / record["config"]["epochs"])
    if seen:
        return max(seen)
    return PROJECTION[unit.system].get(unit.method, 0.0) * epochs


def remaining(unit: Unit, config: RunConfig, out: Path) -> float:
    """Seconds the unit still needs: its `estimate`, less the share of the epochs its
    checkpoint has already trained (a unit resumed across calls or sessions)."""
    checkpoints = store.checkpoint_dir(config, unit.method, config.seeds)
    done = min(pipeline.checkpoint_epoch(checkpoints), config.epochs)
    return estimate(unit, out, config.epochs) * (1 - done / config.epochs)


class OutOfTime(Exception):
    """Training stopped at a saved checkpoint (its epoch: ``args[0]``) for the time budget."""


def deadline_callback(deadline: float, epochs: int, clock=time.perf_counter):
    """A `jaxmeta.meta.fit` callback that stops training at a saved ``last`` checkpoint when
    the next one, as far apart as the last two (the first: since this call), would end after
    ``deadline`` (a ``clock`` reading). It raises `OutOfTime` with the checkpoint's epoch, and
    the same command resumes from it. At ``epochs`` training is over and nothing is raised."""
    previous = clock()

    def callback(event: str, epoch: int) -> None:
        nonlocal previous
        if event != "last" or epoch >= epochs:
            return
        now = clock()
        if now + (now - previous) > deadline:
            raise OutOfTime(epoch)
        previous = now

    return callback


@contextlib.contextmanager
def claimed(config: RunConfig, method: str):
    """Hold the unit's lock (`store.hold` on its method directory) while it runs; yields
    False, holding nothing, if another process holds it."""
    try:
        with store.hold(config.out / method, what="unit"):
            yield True
            return
    except store.RunLockedError:
        pass
    yield False


def run_unit(unit: Unit, config: RunConfig, callback=None) -> bool:
    """Train and score one unit, its wall time in each seed's ``metrics.json``
    (`scoring.run_unit`: data preparation included; ``callback`` goes to `jaxmeta.meta.fit`).
    Returns False if it diverged (recorded beside the seeds)."""
    tic = time.perf_counter()
    prep = pipeline.prepare(config)
    try:
        records = scoring.run_unit(config, prep, unit.method, started=tic, callback=callback)
    except FloatingPointError as err:
        print(f"{unit.label} diverged: {err}", flush=True)
        return False
    errors = [r["trajectory_error"] for r in records]
    wall = records[0]["unit_seconds"]
    print(f"{unit.label}: trajectory error {sum(errors) / len(errors):.4f} ({wall:.0f} s)",
          flush=True)  # fmt: skip
    return True


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--stage", default="e2000", choices=tuple(STAGES),
                   help="e2000: every system at 2000 epochs; e10000: pendulum and DNO at the "
                        "paper's 10,000 (default e2000)")  # fmt: skip
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of: {', '.join(SYSTEMS)} (default: all)",
    )
    p.add_argument("--out", default="results/study", help="default results/study")
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        metavar="MINUTES",
        help="stop cleanly at a unit's last checkpoint within the budget, or before a unit "
        "whose next checkpoint would not fit",
    )
    p.add_argument(
        "--tables-only",
        action="store_true",
        help="train nothing: write the tables and figure of the finished units",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated subset of {', '.join(VARIANT_NAMES)} (default: the stage's "
        "variants; stage e10000 before e2000 has finished: base)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help=f"trial runs: comma-separated subset of {', '.join(METHODS)}",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="trial runs: epochs instead of the stage's"
    )
    args = p.parse_args(argv)
    args.systems = parse_systems(p, args.systems)
    for flag, valid in (("variants", VARIANT_NAMES), ("methods", METHODS)):
        if getattr(args, flag) is not None:
            setattr(args, flag, parse_names(p, f"--{flag}", getattr(args, flag), valid))
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.time_budget is not None and not args.time_budget > 0:
        p.error(f"--time-budget must be > 0 minutes, got {args.time_budget}")
    args.out = Path(args.out)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return _study(args)
    except run.USER_ERRORS as err:
        return run.user_error(err)


def selected_units(args) -> list[Unit]:
    """The units the command line selects, in the protocol's order. Stage e10000's non-base
    units need rule 3's pick from stage e2000: a `ValueError` while it is undecided (the base
    units alone, ``--variants base``, need nothing from stage e2000; ``--tables-only`` lists
    them without the pick while it is undecided)."""
    from . import study_report

    long_variant = None
    wants_variant = args.variants is None or set(args.variants) - {BASE.name}
    if args.stage == "e10000" and wants_variant:
        long_variant = study_report.long_variant(study_report.collect(args.out))
        if long_variant is None and not args.tables_only:
            raise ValueError(
                "stage e10000 repeats the variant that stage e2000 picks (rule 3 of "
                f"results/study/PROTOCOL.md), and stage e2000 under {args.out} is not "
                "finished. Run --stage e2000 first, or --variants base for the base variant."
            )
    return [u for u in units(args.stage, args.systems, long_variant)
            if (args.variants is None or u.variant.name in args.variants)
            and (args.methods is None or u.method in args.methods)]  # fmt: skip


def _study(args) -> int:
    from . import study_report

    start = time.perf_counter()
    # When training must end (a perf_counter reading): RESERVE seconds before the budget does.
    deadline = None if args.time_budget is None else start + 60 * args.time_budget - RESERVE
    try:
        todo = selected_units(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return run.EXIT_ERROR
    print(f"jax {jax.__version__} | {jax.devices()} | stage {args.stage}: {len(todo)} unit(s)"
          f" in {args.out}", flush=True)  # fmt: skip
    stopped, paused, diverged = None, None, False
    configs = {u: unit_config(u, args.out, progress=not args.no_progress, epochs=args.epochs)
               for u in todo}  # fmt: skip
    for unit in [] if args.tables_only else todo:
        config = configs[unit]
        store.check(config, unit.method)
        if finished(config, unit.method):
            continue
        left = None if deadline is None else deadline - time.perf_counter()
        # A unit starts while its next checkpoint fits: from there `deadline_callback` stops
        # it at the last checkpoint within the budget, and the next call resumes it.
        interval = estimate(unit, args.out, config.epochs) * config.val_every / config.epochs
        if left is not None and interval > left:
            stopped = (unit, interval, left)
            break
        callback = None if deadline is None else deadline_callback(deadline, config.epochs)
        with claimed(config, unit.method) as mine:
            if mine and not finished(config, unit.method):
                try:
                    diverged |= not run_unit(unit, config, callback)
                except OutOfTime as err:
                    paused = (unit, err.args[0], config.epochs)
                    break
    text = study_report.write_tables(args.out)
    print(text)
    left = [u for u in todo if not finished(configs[u], u.method)]
    used = f"{(time.perf_counter() - start) / 60:.1f} of {args.time_budget:g} min" if (
        paused or stopped) else ""  # fmt: skip
    if paused:
        unit, epoch, epochs = paused
        print(f"time budget, {used} used: {unit.label} stopped at its checkpoint of epoch "
              f"{epoch} of {epochs}. Run the same command again to continue from it.",
              flush=True)  # fmt: skip
    if stopped:
        unit, interval, short = stopped
        print(f"time budget, {used} used: next {unit.label} would not fit (~{interval / 60:.1f} "
              f"min to its next checkpoint, {short / 60:.1f} min left for training). Run the "
              "same command again to continue.", flush=True)  # fmt: skip
    if left:
        hours = sum(remaining(u, configs[u], args.out) for u in left)
        print(f"{len(left)} unit(s) of stage {args.stage} left: about {hours / 3600:.1f} h of "
              "one process (each unit's estimate: the longest finished unit of its system and "
              "method, scaled to its epochs, else the protocol's projection; less what its "
              "checkpoint has trained).", flush=True)  # fmt: skip
    return run.EXIT_DIVERGED if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
