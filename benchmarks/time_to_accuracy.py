"""Wall-clock time until the validation error falls under a threshold: MAML vs RO vs MR.

Reduced size so all three finish in minutes on a laptop CPU: pendulum, the paper's 100
functions (70 train, 20 validation), K = 10 shots, HNN width 32 depth 2 (``experiments/run.py
--preset quick``), latent 10, 5 functions per meta-step, 3 inner steps, 100 adaptation steps.

`jaxmeta.meta.fit` runs in chunks of ``--val-every`` epochs; each chunk is one call of `fit`
that resumes from the previous chunk's checkpoint (bitwise the same run as an uninterrupted
one), so the wall-clock after every validation is known. The clock includes compilation,
validation (Algorithm 2 on the 20 validation functions) and checkpointing, as a user's run
does; the first chunk's compile time is reported apart. Reported: the first epoch and
cumulative seconds at which the mean validation relative field error falls under each
threshold (``–``: not within ``--epochs``).

    python benchmarks/time_to_accuracy.py [--methods maml,ro,mr] [--epochs 200] [--val-every 10]
        [--thresholds 0.1,0.05,0.03,0.02] [--quick]
"""

import argparse
import os
import tempfile
import time

import jax
from _common import environment, make_learner, model_factory, table, write_results

from jaxmeta import data, meta, systems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="maml,ro,mr")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--val-every", type=int, default=10)
    parser.add_argument("--thresholds", default="0.1,0.05,0.03,0.02")
    parser.add_argument("--quick", action="store_true", help="60 epochs")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 60
    thresholds = [float(t) for t in args.thresholds.split(",")]
    env = environment()
    dataset = data.generate_dataset(systems.Pendulum(), jax.random.key(0), num_query=1)
    make_model = model_factory(width=32, depth=2)
    rows, curves = [], {}
    for method in args.methods.split(","):
        learner = make_learner(method)
        curve, elapsed = [], 0.0
        with tempfile.TemporaryDirectory() as ckpt:
            for epochs in range(args.val_every, args.epochs + 1, args.val_every):
                start = time.perf_counter()
                result = meta.fit(learner, make_model, dataset, epochs=epochs,
                                  key=jax.random.key(0), val_every=args.val_every,
                                  checkpoint_dir=ckpt, progress=False)  # fmt: skip
                seconds = time.perf_counter() - start
                elapsed += seconds
                curve.append((epochs, elapsed, result.history.val_error[-1], seconds))
        first, steady = curve[0][3], sorted(c[3] for c in curve[1:])[len(curve[1:]) // 2]
        row = {"method": method, "chunk_s": steady, "compile_s": first - steady,
               "final_val_error": curve[-1][2], "total_s": elapsed,
               "load1": os.getloadavg()[0]}  # fmt: skip
        for t in thresholds:
            hit = next((c for c in curve if c[2] < t), None)
            row[f"epoch@{t}"] = None if hit is None else hit[0]
            row[f"s@{t}"] = None if hit is None else hit[1]
        rows.append(row)
        curves[method] = curve
        print(row, flush=True)

    cols = [("method", "method", "s")]
    for t in thresholds:
        cols += [(f"epoch@{t}", f"epoch < {t}", "d"), (f"s@{t}", f"seconds < {t}", ".1f")]
    cols += [("final_val_error", f"val error @ {args.epochs}", ".3f"),
             ("chunk_s", f"s per {args.val_every} epochs", ".2f"),
             ("compile_s", "compile s (first chunk)", ".1f"), ("load1", "load 1-min", ".2f")]  # fmt: skip
    md = table(rows, cols)
    print(md)
    write_results("time_to_accuracy", env, rows, md, extra={"curves": curves})


if __name__ == "__main__":
    main()
