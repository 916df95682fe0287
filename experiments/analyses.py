"""Two analyses the paper does not have, which decide how two of its statements are read.

    python -m experiments.analyses adapt-steps --system pendulum --seeds 0,1,2
    python -m experiments.analyses adapt-steps --run runs/pendulum     # reuse trained seeds
    python -m experiments.analyses inner-steps --system pendulum --seeds 0,1,2 --methods ro,mr

``adapt-steps``: MAML, Reptile, ANIL (auto-decoding RO as the reference, Scratch as the
calibration row: 100 Adam steps from a fresh model), trained exactly
as ``experiments.run`` trains them (its `prepare` / `run_method`, so ``--run DIR`` reuses the
trained seeds of a run directory), scored after 0, 3 and 100 test-time steps with the
learner's Adam and with plain SGD at the same rate (the method's ``inner_lr``), under the
paper's trajectory error and the field error. 0 steps is the meta-learned initialisation
itself (RO: the mean training latent). It shows how far test-time adaptation moves each
method, and whether the optimiser matters.

``inner-steps``: auto-decoding with 3, 10 and 100 inner steps per meta-step during training
(test time: 100 Adam steps always), (a) at equal epochs and (b) at equal training time: each
variant gets the time the first variant (3 steps) took at ``--epochs``, its epochs set from
its own measured time per epoch and corrected until its time is within ``--tolerance``.
The paper's "the number of auto-decoding gradient steps is set to 100" may cover training.

Writes ``<system>-adapt-steps.md`` / ``.json`` and ``<system>-inner-steps.md`` / ``.json``
under ``--out`` (default ``results/analyses/<regime>``); trained checkpoints go under
``--work`` (default ``runs/analyses/<regime>/<system>``), so the same command again only
rescores. ``--regime`` is the task regime of `experiments.regimes` (default paper-like).
"""

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from jaxmeta import meta, metrics

from . import run, store
from ._cli import parse_names, parse_seeds, parse_system
from .config import PRESETS, Preset, RunConfig
from .paper import paper_value
from .pipeline import load_state, make_learner, prepare
from .regimes import DEFAULT_REGIME, REGIMES
from .registry import INNER_LR, MODULATIONS
from .report import cell, number, summary, table as report_table
from .scoring import adaptation_key, run_method

ADAPT_METHODS = ("scratch", "maml", "reptile", "anil", "ro")
OPTIMISERS = ("adam", "sgd")
ERRORS = ("trajectory_error", "field_error")
# Auto-decoding only, in the json: mean distance of the adapted test latents from the mean
# training latent (``train_latent_spread``: of the training latents themselves).
LATENT = "latent_distance"


@dataclasses.dataclass(frozen=True)
class AnalysisConfig(RunConfig):
    """A `RunConfig` whose preset values are replaced by ``budget_overrides`` (``(field,
    value)`` pairs of `Preset`: the inner steps per meta-step, or a small width in tests)."""

    budget_overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def budget(self) -> Preset:
        return dataclasses.replace(PRESETS[self.preset], **dict(self.budget_overrides))

    def to_json(self) -> dict:
        """`RunConfig.to_json`: the overrides are in its ``preset_values``, so the identity of
        a (method, seed) is an ``experiments.run`` one and ``--run`` reuses its results."""
        record = super().to_json()
        del record["budget_overrides"]
        return record


def _budget_text(config: AnalysisConfig, k: int) -> str:
    b = config.budget
    return (f"regime {config.regime}; preset {config.preset}: width {b.width}, depth {b.depth}, K = {k}, "
            f"seeds {list(config.seeds)}, device {jax.devices()[0].platform}")  # fmt: skip


def adapted_errors(config, prep, name: str, state, seed: int, steps: int, optimiser: str):
    """The adapted models of `experiments.run`'s learner ``name`` with ``steps`` test-time
    steps of ``optimiser``, and their mean trajectory and field errors (paper §4)."""
    learner = dataclasses.replace(make_learner(name, config), adapt_steps=steps)
    if optimiser == "sgd":
        learner = dataclasses.replace(learner, adapt_optimiser=optax.sgd(INNER_LR[name]))
    # The adaptation key of every score: 100 Adam steps reproduce the run's numbers.
    adapted = meta.adapt(learner, state, prep.dataset.test, adaptation_key(seed))
    test = prep.dataset.test
    scores = jax.device_get(metrics.evaluate(prep.system, adapted.models, test, prep.mesh))
    return adapted, {m: float(np.mean(scores[m])) for m in ERRORS if m in scores}


def _distance(latents, train_latents) -> float:
    """Mean distance of ``latents`` from the mean of the training latents."""
    mean = np.mean(np.asarray(train_latents), axis=0)
    return float(np.mean(np.linalg.norm(np.asarray(latents) - mean, axis=-1)))


def adapt_steps(config: AnalysisConfig, steps: tuple[int, ...], work: Path, out: Path) -> str:
    """The adapt-steps analysis of the seeds trained (or to train) under ``config.out``;
    writes ``<system>-adapt-steps.md`` / ``.json`` under ``out`` and returns the table. The
    dataset is cached under ``work`` (the one ``experiments.run`` generates: same seed)."""
    for name in config.methods:  # a --run trained under another configuration is refused
        store.check(config, name)
    prep = prepare(dataclasses.replace(config, out=work))
    rows = {}
    for name in config.methods:
        records = run_method(config, prep, name)  # trains the seeds not finished in config.out
        if name == "scratch":  # the calibration row: a fresh model, nothing to start from
            learner = make_learner(name, config)
            scored = {m: summary([r[m] for r in records]) for m in ERRORS if m in records[0]}
            rows[name] = {"inner_lr": INNER_LR[name], "sgd": {},
                          "adam": {str(learner.adapt_steps): scored}}  # fmt: skip
            continue
        per = {(o, n): {m: [] for m in (*ERRORS, LATENT)} for o in OPTIMISERS for n in steps}
        spread = []
        for seed in config.seeds:
            state = load_state(config, prep, name, seed)
            if state.latents is not None:
                spread.append(_distance(state.latents, state.latents))
            for optimiser in OPTIMISERS:
                for n in steps:
                    adapted, errors = adapted_errors(config, prep, name, state, seed, n, optimiser)
                    if adapted.latents is not None:
                        errors[LATENT] = _distance(adapted.latents, state.latents)
                    for m, v in errors.items():
                        per[optimiser, n][m].append(v)
        lr = INNER_LR[name]
        rows[name] = {"inner_lr": lr, **({"train_latent_spread": summary(spread)} if spread
                                         else {}), **{
            o: {str(n): {m: summary(v) for m, v in per[o, n].items() if v} for n in steps}
            for o in OPTIMISERS}}  # fmt: skip
    k = prep.dataset.train.num_trajectories
    title = (f"### Test-time adaptation steps: {config.system} ({config.epochs} epochs, "
             f"{_budget_text(config, k)})")  # fmt: skip
    cols = [f"{m.split('_')[0]} error, {n} steps" for m in ERRORS for n in steps]
    intro = (f"Trained as `experiments.run` trains ({config.budget.inner_steps} inner steps "
             "per meta-step), then adapted to the test functions with n steps of the learner's "
             "Adam or of plain SGD at the same rate (lr = the method's inner rate); 0 steps is "
             "the meta-learned model itself (RO: the mean training latent). Scratch "
             "(calibration: a fresh model per test function, 100 Adam steps) has no 0-step "
             "model. Mean ± std over seeds; paper: its Tables 1-2 (100 Adam steps).")  # fmt: skip
    body = []
    for name, row in rows.items():
        paper = [number(paper_value(config.system, name, m, k=config.shots)) for m in ERRORS]
        for o in (o for o in OPTIMISERS if row[o]):
            cells = [cell(row[o].get(str(n), {}).get(m)) for m in ERRORS for n in steps]
            body.append([name, f"{o} ({row['inner_lr']:g})", *cells, *paper])
    head = ["method", "optimiser (lr)", *cols, "paper trajectory", "paper field"]
    table = f"{title}\n\n{intro}\n\n" + report_table(head, body)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{config.system}-adapt-steps.md").write_text(table)
    record = {"config": config.to_json(), "steps": list(steps), "methods": rows}
    (out / f"{config.system}-adapt-steps.json").write_text(json.dumps(record, indent=1))
    return table


def _variant(config: AnalysisConfig, work: Path, inner: int, epochs: int) -> AnalysisConfig:
    overrides = dict(config.budget_overrides) | {"inner_steps": inner}
    out = work / "inner-steps" / f"inner{inner}-epochs{epochs}"
    return dataclasses.replace(config, epochs=epochs, out=out,
                               budget_overrides=tuple(overrides.items()))  # fmt: skip


def _train_variant(config, prep, work, name, inner, epochs) -> dict:
    variant = _variant(config, work, inner, epochs)
    pending = [s for s in config.seeds if not store.metrics_path(variant, name, s).exists()]
    # A resumed training would time only its remaining epochs: the seeds still to train
    # start from scratch (their checkpoints are this analysis's own, under ``work``).
    stale = [store.checkpoint_dir(variant, name, pending)] if pending else []
    stale += [store.checkpoint_dir(variant, name, [s]) for s in pending]
    for path in stale:
        if path.exists():
            print(f"{name:8s} discarding the unfinished {path}", flush=True)
            shutil.rmtree(path)
    records = run_method(variant, prep, name)
    seconds = summary([r["train_seconds"] for r in records])
    return {"epochs": epochs, "train_seconds": seconds,
            **{m: summary([r[m] for r in records]) for m in ERRORS if m in records[0]}}  # fmt: skip


def _next_epochs(target: float, points: list[tuple[int, float]]) -> int:
    """Epochs expected to take ``target`` seconds, from measured ``(epochs, seconds)``: a
    line through the last two distinct measurements (fixed cost + cost per epoch), or in
    proportion to the last one."""
    (e1, t1), *rest = sorted(points[-2:])
    if rest and rest[0][0] != e1 and rest[0][1] > t1:
        e2, t2 = rest[0]
        rate = (t2 - t1) / (e2 - e1)
        return max(1, round(e1 + (target - t1) / rate))
    e, t = points[-1]
    return max(1, round(e * target / t))


def inner_steps(config: AnalysisConfig, inner: tuple[int, ...], work: Path, out: Path,
                tolerance: float = 0.1, attempts: int = 4) -> str:  # fmt: skip
    """The inner-steps analysis, trained under ``work/inner-steps`` (dataset: ``work``);
    writes ``<system>-inner-steps.md`` / ``.json`` under ``out`` and returns the table. The
    first of ``inner`` is the reference of equal training time."""
    prep = prepare(dataclasses.replace(config, out=work))
    rows = {}
    for name in config.methods:
        equal_epochs = {n: _train_variant(config, prep, work, name, n, config.epochs)
                        for n in inner}  # fmt: skip
        target = equal_epochs[inner[0]]["train_seconds"]["mean"]
        equal_time = {inner[0]: equal_epochs[inner[0]]}
        for n in inner[1:]:
            tried = [equal_epochs[n]]
            points = [(config.epochs, equal_epochs[n]["train_seconds"]["mean"])]
            for _ in range(attempts):
                epochs = _next_epochs(target, points)
                if epochs in [p[0] for p in points]:
                    break
                tried.append(_train_variant(config, prep, work, name, n, epochs))
                points.append((epochs, tried[-1]["train_seconds"]["mean"]))
                if abs(points[-1][1] - target) <= tolerance * target:
                    break
            best = min(tried, key=lambda r: abs(r["train_seconds"]["mean"] - target))
            keys = ("epochs", "train_seconds", *ERRORS)
            equal_time[n] = {**best, "tried": [{k: r[k] for k in keys if k in r} for r in tried]}
        rows[name] = {"target_seconds": target, "equal_epochs": equal_epochs,
                      "equal_time": equal_time}  # fmt: skip
    k = prep.dataset.train.num_trajectories
    head = (f"### Inner steps per meta-step (auto-decoding): {config.system} "
            f"({_budget_text(config, k)})")  # fmt: skip
    err = lambda r: [cell(r.get(m)) for m in ERRORS]
    intro = (f"(a) every variant {config.epochs} epochs; (b) every variant the training time "
             f"of {inner[0]} inner steps at {config.epochs} epochs (its epochs set from its "
             f"measured seconds, within {tolerance:.0%} where the attempts allow). Test time: "
             "100 Adam steps on the latent for all. Training seconds: each seed's share of its "
             "group's wall time (seeds trained as one vmapped program), on a CPU shared with "
             "other work. Mean ± std over seeds.")  # fmt: skip
    body, missed = [], False
    for name, row in rows.items():
        for n in inner:
            a, b = row["equal_epochs"][n], row["equal_time"][n]
            mark = (
                " †"
                if abs(b["train_seconds"]["mean"] / row["target_seconds"] - 1) > tolerance
                else ""
            )
            missed |= bool(mark)
            body.append([name, n, a["epochs"], *err(a), cell(a["train_seconds"], ".1f"),
                         b["epochs"], *err(b), cell(b["train_seconds"], ".1f") + mark])  # fmt: skip
    cols = ["method", "inner steps", *(f"({x}) {c}" for x in "ab" for c in
                                       ("epochs", "trajectory", "field", "train s"))]  # fmt: skip
    table = f"{head}\n\n{intro}\n\n" + report_table(cols, body)
    if missed:
        table += (f"\n† more than {tolerance:.0%} from the target time after {attempts} attempts "
                  "(the closest is shown; every attempt, with its errors, is under `tried` in "
                  "the json).\n")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{config.system}-inner-steps.md").write_text(table)
    record = {"config": config.to_json(), "inner_steps": list(inner), "tolerance": tolerance,
              "methods": rows}  # fmt: skip
    (out / f"{config.system}-inner-steps.json").write_text(json.dumps(record, indent=1))
    return table


def _int_list(parser, flag: str, text: str, minimum: int) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError:
        parser.error(f"--{flag} must be comma-separated integers, got {text!r}")
    if len(set(values)) != len(values) or min(values) < minimum:
        parser.error(f"--{flag} must be distinct integers >= {minimum}, got {text!r}")
    return values


def parse_args(argv=None) -> tuple[str, AnalysisConfig, argparse.Namespace]:
    """Command line -> (subcommand, `AnalysisConfig`, the parsed flags)."""
    p = argparse.ArgumentParser(prog="python -m experiments.analyses", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="analysis", required=True)
    a = sub.add_parser("adapt-steps", help="MAML/Reptile/ANIL/RO after 0, 3, 100 test steps")
    a.add_argument("--methods", default=",".join(ADAPT_METHODS))
    a.add_argument("--steps", default="0,3,100", help="test-time steps (default 0,3,100)")
    a.add_argument("--inner-steps", type=int, default=None,
                   help="inner steps per meta-step of the training (default: the preset's)")  # fmt: skip
    a.add_argument("--run", default=None,
                   help="an experiments.run directory whose trained seeds to reuse")  # fmt: skip
    i = sub.add_parser("inner-steps", help="auto-decoding with 3, 10, 100 inner steps")
    i.add_argument("--methods", default="ro", help="modulations (default ro)")
    i.add_argument("--inner-steps", default="3,10,100",
                   help="inner steps per meta-step; the first is the time reference")  # fmt: skip
    i.add_argument("--tolerance", type=float, default=0.1,
                   help="equal-time tolerance, relative (default 0.1)")  # fmt: skip
    for s in (a, i):
        s.add_argument("--system", default="pendulum")
        s.add_argument("--regime", default=DEFAULT_REGIME, choices=tuple(REGIMES),
                       help=f"task regime of experiments.regimes (default {DEFAULT_REGIME})")  # fmt: skip
        s.add_argument("--seeds", default="0,1,2")
        s.add_argument("--epochs", type=int, default=PRESETS["quick"].epochs)
        s.add_argument("--width", type=int, default=None, help="override the quick width")
        s.add_argument("--depth", type=int, default=None, help="override the quick depth")
        s.add_argument(
            "--work", default=None, help="training dir (runs/analyses/<regime>/<system>)"
        )
        s.add_argument("--out", default=None, help="tables and json (results/analyses/<regime>)")
        s.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.system, source = parse_system(p, args.system)
    valid = ADAPT_METHODS if args.analysis == "adapt-steps" else tuple(MODULATIONS)
    methods = tuple(parse_names(p, "--methods", args.methods, valid))
    for flag in ("epochs", "width", "depth"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.analysis == "inner-steps" and not 0 < args.tolerance < 1:
        p.error(f"--tolerance must be in (0, 1), got {args.tolerance}")
    work = Path(args.work or f"runs/analyses/{args.regime}/{args.system}")
    args.work = work
    args.out = Path(args.out or f"results/analyses/{args.regime}")
    if args.analysis == "adapt-steps":
        args.steps = _int_list(p, "steps", args.steps, 0)
        if args.inner_steps is not None and args.inner_steps < 1:
            p.error(f"--inner-steps must be >= 1, got {args.inner_steps}")
        out = Path(args.run) if args.run else work / "adapt-steps"
    else:
        args.inner_steps = _int_list(p, "inner-steps", args.inner_steps, 1)
        out = work / "inner-steps"
    fields = ("width", "depth") + (("inner_steps",) if args.analysis == "adapt-steps" else ())
    overrides = tuple((f, getattr(args, f)) for f in fields if getattr(args, f) is not None)
    config = AnalysisConfig(system=args.system, system_source=source, regime=args.regime, methods=methods,
                            seeds=tuple(parse_seeds(p, args.seeds)), epochs=args.epochs,
                            out=out, progress=not args.no_progress,
                            budget_overrides=overrides)  # fmt: skip
    return args.analysis, config, args


def main(argv=None) -> int:
    analysis, config, args = parse_args(argv)
    try:
        if analysis == "adapt-steps":
            print(adapt_steps(config, args.steps, args.work, Path(args.out)))
        else:
            print(inner_steps(config, args.inner_steps, args.work, Path(args.out),
                              tolerance=args.tolerance))  # fmt: skip
    except run.USER_ERRORS as err:
        return run.user_error(err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
