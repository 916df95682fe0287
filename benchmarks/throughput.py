"""Meta-step throughput as the batch of functions, latent size, width and shots grow.

One sweep a run (``--sweep``), each from the paper's sizes (pendulum, HNN width 100 depth 4,
latent 10, K = 10 shots of 31 points, 3 inner steps, 5 functions per meta-step), varying one:

- ``tasks``: functions per meta-step 5, 10, 20, 70, 700 (700 tiles the 70 training functions
  ten times); writes ``results/step_time_vs_tasks.png``;
- ``latent``: latent size 10, 50 (modulation methods only);
- ``width``: HNN width 32, 100, 200;
- ``shots``: K = 1, 10, 30 support trajectories per function.

Per point: ``jax.jit`` lower + compile time, the median of ``--repeats`` blocked single
meta-steps after one warm-up (one run and no warm-up past 100 functions per step), XLA's
peak-memory plan (``memory_analysis``) and throughput in functions and states per second.
The answer is checked first: one meta-step gives a finite loss. A step whose XLA memory plan
exceeds ``--max-memory-gib`` (default 6: the machine may be shared) is compiled, not run.

    python benchmarks/throughput.py --sweep tasks [--methods maml,ro,mr] [--repeats 3] [--quick]
    python benchmarks/throughput.py --sweep latent|width|shots
"""

import argparse
import os

import jax
import jax.numpy as jnp
from _common import (
    RESULTS,
    environment,
    make_learner,
    model_factory,
    pendulum_support,
    table,
    write_results,
)
from speed import measure_meta_step

SWEEPS = {
    "tasks": [5, 10, 20, 70, 700],
    "latent": [10, 50],
    "width": [32, 100, 200],
    "shots": [1, 10, 30],
}


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = [(r["value"], r["step_ms"]) for r in rows if r["method"] == method and "step_ms" in r]
        ax.plot(*zip(*pts), marker="o", label=method)
    ax.set(xscale="log", yscale="log", xlabel="functions per meta-step",
           ylabel="meta-step time (ms)", title=f"meta-step time, {rows[0]['device']}")  # fmt: skip
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="tasks", choices=sorted(SWEEPS))
    parser.add_argument("--methods", default="maml,ro,mr")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat; tasks up to 70")
    parser.add_argument("--max-memory-gib", type=float, default=6.0,
                        help="compile but do not run a step whose XLA memory plan exceeds this")  # fmt: skip
    args = parser.parse_args()
    values = SWEEPS[args.sweep]
    if args.quick:
        args.repeats = 1
        values = [v for v in values if v <= 70]
    env = environment()
    data = {k: pendulum_support(k)[0] for k in (values if args.sweep == "shots" else [10])}
    rows = []
    for method in args.methods.split(","):
        for value in values:
            if args.sweep == "latent" and method in ("maml", "reptile", "anil"):
                continue
            tasks = value if args.sweep == "tasks" else 5
            learner = make_learner(method, tasks_per_step=tasks,
                                   latent_dim=value if args.sweep == "latent" else 10)  # fmt: skip
            make_model = model_factory(width=value if args.sweep == "width" else 100)
            xs, dxs = data[value if args.sweep == "shots" else 10]
            if tasks > xs.shape[0]:  # tile the training functions
                reps = -(-tasks // xs.shape[0])
                xs, dxs = jnp.tile(xs, (reps, 1, 1)), jnp.tile(dxs, (reps, 1, 1))
            state = learner.init(make_model, xs.shape[0], key=jax.random.key(0))
            big = tasks > 100
            row = {"method": method, "sweep": args.sweep, "value": value, "tasks": tasks,
                   "states_per_function": xs.shape[1], "device": env["device"]}  # fmt: skip
            row |= measure_meta_step(
                learner, state, xs, dxs, scan_steps=0, repeats=1 if big else args.repeats,
                check=1, warmup=0 if big else 1, max_mb=args.max_memory_gib * 1024,
            )  # fmt: skip
            if "step_ms" in row:
                row["functions_per_s"] = tasks / row["step_ms"] * 1e3
                row["states_per_s"] = tasks * xs.shape[1] / row["step_ms"] * 1e3
            row["load1"] = os.getloadavg()[0]
            rows.append(row)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()},
                  flush=True)  # fmt: skip

    md = table(rows, [
        ("method", "method", "s"), ("value", args.sweep, "d"),
        ("states_per_function", "states/function", "d"), ("step_lower_s", "trace+lower s", ".2f"),
        ("step_compile_s", "compile s", ".2f"), ("step_ms", "step ms", ".1f"),
        ("functions_per_s", "functions/s", ".1f"), ("states_per_s", "states/s", ".0f"),
        ("step_mb", "peak MiB", ".1f"), ("step_gflops", "GFLOP/s", ".1f"),
        ("load1", "load 1-min", ".2f"), ("skipped", "note", "s"),
    ])  # fmt: skip
    print(md)
    write_results(f"throughput_{args.sweep}", env, rows, md)
    if args.sweep == "tasks":
        plot(rows, RESULTS / "step_time_vs_tasks.png")


if __name__ == "__main__":
    main()
