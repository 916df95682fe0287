"""Lay several runs of ``experiments.run`` side by side, with the paper's numbers.

    python -m experiments.compare runs/pendulum-k10 runs/pendulum-k20 runs/pendulum-k30
    python -m experiments.compare runs/pendulum runs/pendulum-zero --metrics trajectory_error

One column group per run, labelled by what sets it apart (epochs, K, latent initialisation,
task regime, system overrides); the paper's value beside ours is taken from the table matching
that setting (Tables 4-8 for varying K, 9-10 for the zero initialisation, 1-2 and 7-8
otherwise, under any named regime; none for a system changed by ``--set``; none for
``rollout_error``, which is beyond the paper). A run written before regimes existed is of the
``ours`` regime.
"""

import argparse
import json
import sys
from pathlib import Path

from jaxmeta.systems import SYSTEMS

from .paper import paper_value
from .registry import METHODS

_METRICS = ("trajectory_error", "field_error", "ssim", "rollout_error")  # the paper's §4, + rollout


def _load(run: str) -> dict:
    path = Path(run) / "results.json"
    if not path.is_file():
        raise SystemExit(f"error: run {run!r} has no results.json (run experiments.run first)")
    return json.loads(path.read_text())


def _k(result: dict) -> int:
    """The run's K (support trajectories per function)."""
    default = SYSTEMS[result["system"]].default_num_trajectories
    return result.get("k") or min(result["config"]["shots"] or default, default)


def _regime(config: dict) -> str:
    return config.get("regime", "ours")


def _epochs(config: dict) -> int:
    return config["epochs"] or config["preset_values"]["epochs"]


def _label(config: dict, k: int, varying: set[str]) -> str:
    bits = []
    if "epochs" in varying:
        bits.append(f"{_epochs(config)} epochs")
    if "k" in varying:
        bits.append(f"K = {k}")
    if "latent_init" in varying:
        bits.append(f"{config['latent_init']} init")
    if "regime" in varying:
        bits.append(f"regime {_regime(config)}")
    if "set" in varying:
        bits.append(", ".join(f"{k} = {v}" for k, v in config["set"].items()) or "default")
    return "; ".join(bits) or "run"


def compare(runs: list[str], metrics: tuple[str, ...] = _METRICS) -> str:
    """The Markdown table comparing ``runs`` (result directories of one system)."""
    results = [_load(r) for r in runs]
    systems = {r["system"] for r in results}
    if len(systems) != 1:
        raise SystemExit(f"error: runs are of different systems {sorted(systems)}")
    (system,) = systems
    configs = [r["config"] for r in results]
    ks = [_k(r) for r in results]
    varying = {key for key in ("latent_init", "set")
               if len({json.dumps(c.get(key) or None, sort_keys=True) for c in configs}) > 1}  # fmt: skip
    varying |= {"k"} if len(set(ks)) > 1 else set()
    varying |= {"regime"} if len({_regime(c) for c in configs}) > 1 else set()
    varying |= {"epochs"} if len({_epochs(c) for c in configs}) > 1 else set()
    labels = [_label(c, k, varying) for c, k in zip(configs, ks)]
    metrics = [m for m in metrics if any(m in s for r in results for s in r["methods"].values())]
    head = [f"{lab}: {m} (ours / paper)" for lab in labels for m in metrics]
    lines = [f"| method | {' | '.join(head)} |", "|---|" + "---|" * len(head)]
    for method in METHODS:
        if not any(method in r["methods"] for r in results):
            continue
        cells = []
        for r, c, k_run in zip(results, configs, ks):
            s = r["methods"].get(method, {})
            k = k_run if "k" in varying or c["shots"] else None
            for m in metrics:
                ours = "diverged" if "diverged" in s else (
                    f"{s[m]['mean']:.3f} ± {s[m]['std']:.3f}" if m in s else "–")  # fmt: skip
                ref = paper_value(system, method, m, k=k, latent_init=c["latent_init"],
                                  overrides=c.get("set"))  # fmt: skip
                cells.append(f"{ours} / {'–' if ref is None else f'{ref:.3f}'}")
        lines.append(f"| {method} | {' | '.join(cells)} |")
    budgets = sorted({f"{c['preset']} preset, {_epochs(c)} epochs, "
                      f"seeds {c['seeds']}" for c in configs})  # fmt: skip
    title = f"**{system}**, {'; '.join(budgets)}; runs: {', '.join(runs)}"
    return title + "\n\n" + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("runs", nargs="+", help="output directories of experiments.run (one system)")
    p.add_argument("--metrics", default=",".join(_METRICS),
                   help=f"comma-separated subset of: {', '.join(_METRICS)}")  # fmt: skip
    p.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    bad = [m for m in metrics if m not in _METRICS]
    if bad or not metrics:
        p.error(f"unknown metric(s) {bad or args.metrics!r}; valid: {', '.join(_METRICS)}")
    table = compare(args.runs, metrics)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
