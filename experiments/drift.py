"""Where a learned model's energy drift comes from: the integrator, or the model.

    python -m experiments.drift --run results/reproduce-quick-paper-like/pendulum-main
    python -m experiments.drift --run runs/pendulum --methods reptile,ro --substeps 4,16,64

An HNN's field conserves its own energy exactly in continuous time, for any weights, and a
GNN's conserves its energy exactly too; the ``max_energy_drift`` of a results table is
measured along *numerical* rollouts of the adapted model (`jaxmeta.metrics.own_energies`:
``ENERGY_SUBSTEPS`` steps per save interval). This command rescores the adapted models of a
finished run (``adapted.eqx`` of ``--seed``, nothing is retrained) along rollouts with each
of ``--substeps`` steps per save interval. A drift that falls with the step as the solver's
order predicts is the integrator's error on a stiff learned field, not a loss of structure.

For the worst path it also prints the learned energy there at t = 0: the drift is relative to
``max(|E(x_0)|, 1e-3)`` (`jaxmeta.metrics.energy_drift`), and a learned energy is defined only
up to an additive constant, so a path where it happens to be near zero inflates the ratio.

Writes ``drift.md`` and ``drift.json`` under ``--out`` (default: the run directory).
"""

import argparse
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jaxmeta.metrics import ENERGY_SUBSTEPS, own_energies

from . import pipeline, run
from ._cli import parse_names, parse_seeds
from .registry import METHODS


def drift_table(run_dir, methods, seed: int, substeps: tuple[int, ...]) -> dict:
    """Per method and per substeps value: the max and mean relative drift over the test
    functions' novel trajectories, the absolute drift and |E(x_0)| on the worst path."""
    config, prep = pipeline.load_run(run_dir)
    system, test = prep.system, prep.dataset.test
    x0 = test.query_xs[:, :, 0]
    rows = {}
    for name in methods:
        models = pipeline.load_adapted(config, prep, name, seed).models
        rows[name] = {}
        for n in substeps:
            _, energies, rel = own_energies(system, models, x0, test.ts, substeps=n)
            absolute = jnp.max(jnp.abs(energies - energies[..., :1]), axis=-1)
            rel, absolute, e0 = map(np.asarray, (rel, absolute, energies[..., 0]))
            worst = np.unravel_index(np.argmax(rel), rel.shape)
            rows[name][str(n)] = {
                "max": float(rel.max()),
                "mean": float(rel.mean()),
                "worst_abs_drift": float(absolute[worst]),
                "worst_abs_e0": float(abs(e0[worst])),
                "median_abs_e0": float(np.median(np.abs(e0))),
            }
    return {"run": str(run_dir), "system": config.system, "regime": config.regime,
            "seed": seed, "substeps": list(substeps), "methods": rows}  # fmt: skip


def to_markdown(record: dict) -> str:
    subs = record["substeps"]
    lines = [f"### Energy drift of the adapted models against the integrator's step: "
             f"{record['system']} (regime {record['regime']}, seed {record['seed']}, run "
             f"`{record['run']}`)", "",
             f"Max (mean) relative drift of each model's own energy along its rollouts from "
             f"the novel test initial states, with n steps per save interval (the tables use "
             f"n = {ENERGY_SUBSTEPS}); |E0|: the learned energy at t = 0 on the worst path "
             f"(median over all paths in brackets).", "",
             "| method | " + " | ".join(f"n = {n}" for n in subs) + " | worst path at "
             f"n = {subs[0]}: abs. drift, abs E0 (median) |",
             "|---|" + "---|" * (len(subs) + 1)]  # fmt: skip
    for name, row in record["methods"].items():
        cells = [f"{row[str(n)]['max']:.2e} ({row[str(n)]['mean']:.1e})" for n in subs]
        w = row[str(subs[0])]
        cells.append(f"{w['worst_abs_drift']:.3g}, {w['worst_abs_e0']:.3g} "
                     f"({w['median_abs_e0']:.3g})")  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.drift", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--run", required=True, help="a finished experiments.run directory")
    p.add_argument("--methods", default=None, help="default: every method the run finished")
    p.add_argument("--seed", default="0", help="the seed whose adapted models to rescore")
    p.add_argument("--substeps", default=f"{ENERGY_SUBSTEPS},16,64",
                   help=f"steps per save interval (default {ENERGY_SUBSTEPS},16,64)")  # fmt: skip
    p.add_argument("--out", default=None, help="where drift.md/.json go (default: --run)")
    args = p.parse_args(argv)
    args.seed = parse_seeds(p, args.seed)[0]
    try:
        args.substeps = tuple(int(t) for t in args.substeps.split(","))
    except ValueError:
        p.error(f"--substeps must be comma-separated integers, got {args.substeps!r}")
    if min(args.substeps) < 1 or len(set(args.substeps)) != len(args.substeps):
        p.error(f"--substeps must be distinct integers >= 1, got {args.substeps}")
    if args.methods is None:
        record = Path(args.run) / "results.json"
        args.methods = tuple(json.loads(record.read_text())["methods"]) if record.is_file() else ()
    else:
        args.methods = tuple(parse_names(p, "--methods", args.methods, METHODS))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        record = drift_table(args.run, args.methods, args.seed, args.substeps)
    except run.USER_ERRORS as err:
        return run.user_error(err)
    out = Path(args.out or args.run)
    out.mkdir(parents=True, exist_ok=True)
    table = to_markdown(record)
    (out / "drift.md").write_text(table)
    (out / "drift.json").write_text(json.dumps(record, indent=1) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
