"""Meta-step and test-time adaptation speed, compile time, memory and FLOP/s of every method.

Paper sizes by default (App. F): pendulum, HNN 2 → 4×100 tanh → 1, latent 10, MR rank 5,
5 functions per meta-step, K = 10 support trajectories of 31 points (310 states) per
function, 3 inner steps, 100 adaptation steps, 70 training functions.

Per method:

- compile: ``jax.jit(...).lower(...)`` and ``.compile()`` timed apart from running;
- meta-step: median of ``--repeats`` blocked calls after warm-up, of one jitted meta-step
  (``step ms``) and of a jitted ``lax.scan`` of ``--scan-steps`` meta-steps divided by their
  number (``scan ms/step``: no per-step dispatch);
- adaptation: 100 steps for 1 function and for 10 test functions at once;
- memory: ``Compiled.memory_analysis()``: arguments + outputs + temporaries − aliased bytes,
  XLA's plan for one call (what the device needs at peak, host overhead excluded);
- FLOPs: matrix-multiply FLOPs counted on the jaxpr (scan bodies times their length), over
  the scan time per step (or the single-step time), as a percentage of the measured ``2048×2048`` float32 ``jnp.dot``
  throughput; XLA's ``cost_analysis()["flops"]`` is printed beside it, but it counts a loop
  body once, so it undercounts every inner loop;
- answers are checked before timing: five meta-steps on one batch give finite, decreasing
  losses, and adaptation losses are finite and fall.

    python benchmarks/speed.py [--methods maml,ro] [--repeats 5] [--scan-steps 5] [--quick]
"""

import argparse
import os

import equinox as eqx
import jax
import numpy as np
from _common import (
    METHODS,
    compile_timed,
    environment,
    make_learner,
    matmul_flops,
    median_time,
    memory_bytes,
    model_factory,
    peak_matmul_gflops,
    pendulum_support,
    shaped_matmul_gflops,
    split_state,
    table,
    write_results,
    xla_flops,
)

from jaxmeta import meta, modulation


def per_task_parameters(name, learner, state, make_model) -> int:
    """How many numbers are adapted per function at test time."""
    if name == "scratch":
        return modulation.count_parameters(make_model(jax.random.key(0)))["per_task"]
    if name == "anil":
        spec = meta.last_layer_spec(state.params)
        head = eqx.filter(eqx.filter(state.params, spec), eqx.is_inexact_array)
        return int(sum(x.size for x in jax.tree.leaves(head)))
    return modulation.count_parameters(state.params)["per_task"]


def measure_meta_step(
    learner, state, xs_all, dxs_all, *, scan_steps, repeats, check=5, warmup=2, max_mb=None
):
    """Compile time, step time (single and scanned), memory and FLOPs of one meta-step."""
    dyn, static = split_state(state)
    tasks = learner.tasks_per_step
    keys = jax.random.split(jax.random.key(1), max(scan_steps, 1))
    order = jax.vmap(lambda k: jax.random.permutation(k, xs_all.shape[0])[:tasks])(keys)
    idx = order[0]
    xs, dxs = xs_all[idx], dxs_all[idx]

    def single(dyn, xs, dxs, idx):
        new, loss = learner.meta_step(eqx.combine(dyn, static), xs, dxs, idx)
        return eqx.filter(new, eqx.is_array), loss

    def scanned(dyn, xs_all, dxs_all, order):
        def body(d, i):
            return single(d, xs_all[i], dxs_all[i], i)

        return jax.lax.scan(body, dyn, order)

    step, lower_s, compile_s = compile_timed(single, dyn, xs, dxs, idx)
    planned_mb = memory_bytes(step) / 2**20
    if max_mb is not None and planned_mb > max_mb:  # not run: would not fit (or crowd out)
        return {"step_lower_s": lower_s, "step_compile_s": compile_s, "step_mb": planned_mb,
                "skipped": f"not run: XLA plans {planned_mb / 1024:.1f} GiB > {max_mb / 1024:.1f}"}  # fmt: skip
    if check:  # `check` meta-steps on one batch: finite (and, for > 1, decreasing) loss
        d, losses = dyn, []
        for _ in range(check):
            d, loss = step(d, xs, dxs, idx)
            losses.append(float(loss))
        if not (np.isfinite(losses).all() and (check == 1 or losses[-1] < losses[0])):
            raise RuntimeError(f"{type(learner).__name__}: meta-step losses {losses} do not fall")
    step_s = median_time(step, dyn, xs, dxs, idx, repeats=repeats, warmup=warmup)
    flops = matmul_flops(single, dyn, xs, dxs, idx)
    row = {
        "step_lower_s": lower_s,
        "step_compile_s": compile_s,
        "step_ms": step_s * 1e3,
        "step_mb": planned_mb,
        "step_gflop": flops / 1e9,
        "step_xla_gflop": xla_flops(step) / 1e9,
        "step_gflops": flops / step_s / 1e9,
    }
    if scan_steps:
        many, scan_lower_s, scan_compile_s = compile_timed(scanned, dyn, xs_all, dxs_all, order)
        scan_s = median_time(many, dyn, xs_all, dxs_all, order, repeats=max(2, repeats // 2))
        scan_s /= scan_steps
        row |= {"scan_compile_s": scan_lower_s + scan_compile_s, "scan_ms": scan_s * 1e3,
                "step_gflops": flops / scan_s / 1e9}  # fmt: skip
    return row | {"step_load1": os.getloadavg()[0]}


def measure_adapt(learner, state, xs, dxs, *, repeats, prefix):
    """Compile and run time, memory and FLOPs of adapting to ``xs.shape[0]`` functions."""
    dyn, static = split_state(state)
    key = jax.random.key(2)

    def run(dyn, xs, dxs, key):
        return eqx.filter(learner.adapt(eqx.combine(dyn, static), xs, dxs, key=key), eqx.is_array)

    fn, lower_s, compile_s = compile_timed(run, dyn, xs, dxs, key)
    losses = np.asarray(fn(dyn, xs, dxs, key).losses)
    if not (np.isfinite(losses).all() and (losses[:, -1] < losses[:, 0]).all()):
        raise RuntimeError(f"{type(learner).__name__}: adaptation losses do not fall")
    seconds = median_time(fn, dyn, xs, dxs, key, repeats=repeats, warmup=1)
    flops = matmul_flops(run, dyn, xs, dxs, key)
    return {
        f"{prefix}_compile_s": lower_s + compile_s,
        f"{prefix}_ms": seconds * 1e3,
        f"{prefix}_mb": memory_bytes(fn) / 2**20,
        f"{prefix}_gflops": flops / seconds / 1e9,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scan-steps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats, 2 scanned steps")
    parser.add_argument("--name", default="speed", help="results/<name>.json|md")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.scan_steps = 2, 2
    env = environment()
    peak = peak_matmul_gflops()
    print(f"measured float32 2048x2048 matmul: {peak:.1f} GFLOP/s", flush=True)
    # The products of the meta-step (5 functions × 310 states) and of adapting 10 functions.
    shaped = {f: shaped_matmul_gflops(f, 310, 100) for f in (5, 10)}
    print(f"measured per-function (310x100)@(100x100) products: {shaped} GFLOP/s", flush=True)

    make_model = model_factory()
    (xs_all, dxs_all), (test_xs, test_dxs) = pendulum_support(10)
    rows = []
    for name in args.methods.split(","):
        learner = make_learner(name)
        state = learner.init(make_model, xs_all.shape[0], key=jax.random.key(0))
        row = {"method": name, "per_task_params": per_task_parameters(name, learner, state,
                                                                      make_model)}  # fmt: skip
        if learner.meta_trains:
            row |= measure_meta_step(
                learner, state, xs_all, dxs_all, scan_steps=args.scan_steps, repeats=args.repeats
            )
        for prefix, f in (("adapt1", 1), ("adapt10", 10)):
            row |= measure_adapt(
                learner, state, test_xs[:f], test_dxs[:f], repeats=args.repeats, prefix=prefix
            )
        if "step_gflops" in row:
            row["step_pct_peak"] = 100 * row["step_gflops"] / peak
            row["step_pct_shaped"] = 100 * row["step_gflops"] / shaped[5]
        row["adapt10_pct_peak"] = 100 * row["adapt10_gflops"] / peak
        row["adapt10_pct_shaped"] = 100 * row["adapt10_gflops"] / shaped[10]
        row["load1"] = os.getloadavg()[0]
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)

    md = (
        f"Measured float32 2048×2048 `jnp.dot`: **{peak:.1f} GFLOP/s** (the peak below). "
        "Measured per-function `(310×100) @ (100×100)` products, the shapes the methods "
        f"multiply (`shaped_matmul_gflops`): **{shaped[5]:.1f} GFLOP/s** for 5 functions, "
        f"**{shaped[10]:.1f} GFLOP/s** for 10 (the 'shaped' columns).\n\n"
        "Meta-step (5 functions × 310 states, 3 inner steps):\n\n"
        + table(
            rows,
            [
                ("method", "method", "s"),
                ("per_task_params", "adapted params/function", "d"),
                ("step_lower_s", "trace+lower s", ".2f"),
                ("step_compile_s", "compile s", ".2f"),
                ("step_ms", "step ms", ".2f"),
                ("scan_compile_s", "scan compile s", ".2f"),
                ("scan_ms", "scan ms/step", ".2f"),
                ("step_mb", "peak MiB", ".1f"),
                ("step_gflop", "matmul GFLOP/step", ".3f"),
                ("step_xla_gflop", "XLA cost_analysis GFLOP", ".3f"),
                ("step_gflops", "GFLOP/s", ".1f"),
                ("step_pct_peak", "% of matmul peak", ".1f"),
                ("step_pct_shaped", "% of shaped matmul", ".1f"),
                ("step_load1", "load 1-min", ".2f"),
            ],
        )  # fmt: skip
        + "\nTest-time adaptation (100 Adam steps, 310 support states per function):\n\n"
        + table(
            rows,
            [
                ("method", "method", "s"),
                ("adapt1_compile_s", "compile s (1 fn)", ".2f"),
                ("adapt1_ms", "1 function ms", ".1f"),
                ("adapt10_compile_s", "compile s (10)", ".2f"),
                ("adapt10_ms", "10 functions ms", ".1f"),
                ("adapt1_mb", "peak MiB (1)", ".2f"),
                ("adapt10_mb", "peak MiB (10)", ".2f"),
                ("adapt10_gflops", "GFLOP/s (10)", ".1f"),
                ("adapt10_pct_peak", "% of peak (10)", ".1f"),
                ("adapt10_pct_shaped", "% of shaped (10)", ".1f"),
                ("load1", "load 1-min", ".2f"),
            ],
        )  # fmt: skip
    )
    print(md)
    write_results(
        args.name, env, rows, md,
        extra={"matmul_peak_gflops": peak, "shaped_matmul_gflops": shaped},
    )  # fmt: skip


if __name__ == "__main__":
    main()
