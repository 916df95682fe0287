"""Second-order MAML's meta-step with the task axis as `jax.vmap` (the library) or `lax.map`.

XLA on CPU lowers a vmapped matmul to a batched dot that can be slower than a loop of plain
dots (design.md). This script writes the `lax.map` variant of `jaxmeta.meta.MAML.meta_step`
locally (same inner loop, same loss, same outer Adam step; the library is untouched), checks
both give the same loss and meta-gradient, and times both: ``jax.jit`` lower + compile time
apart, then the median of ``--repeats`` blocked calls, the two variants' calls interleaved (each
after two warm-ups) so that changes of machine load hit both alike.

Paper sizes: pendulum, HNN width 100 depth 4, K = 10 (310 states per function), 3 inner
steps; ``--tasks`` functions per meta-step (default 5 and 20).

    python benchmarks/vmap_vs_map.py [--tasks 5,20] [--repeats 10] [--quick]
"""

import argparse
import os
import statistics

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import (
    compile_timed,
    environment,
    make_learner,
    median_time,
    memory_bytes,
    model_factory,
    pendulum_support,
    split_state,
    table,
    write_results,
)

from jaxmeta.losses import field_mse
from jaxmeta.meta import MetaState, optimise


def meta_step_lax_map(learner, state, xs, dxs):
    """`MAML.meta_step` (second order) with `lax.map` over the tasks instead of `vmap`, built
    from public pieces: `jaxmeta.meta.optimise` (the inner loop) and the learner's
    optimisers."""

    def task_loss(params, x, y):
        adapted, _ = optimise(lambda p: field_mse(p, x, y), params, learner.inner_optimiser,
                              learner.inner_steps)  # fmt: skip
        return field_mse(adapted, x, y)

    def outer(params):
        return jnp.mean(jax.lax.map(lambda xy: task_loss(params, *xy), (xs, dxs)))

    loss, grads = eqx.filter_value_and_grad(outer)(state.params)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts and floats
        updates, opt_state = learner.outer_optimiser.update(grads, state.opt_state, state.params)
    params = eqx.apply_updates(state.params, updates)
    return MetaState(params, opt_state, None, state.step + 1), loss


def variant_steps(learner, static, idx) -> dict:
    """``{name: (state arrays, xs, dxs) -> (new state arrays, loss)}`` for both variants."""

    def library(dyn, xs, dxs):
        new, loss = learner.meta_step(eqx.combine(dyn, static), xs, dxs, idx)
        return eqx.filter(new, eqx.is_array), loss

    def mapped(dyn, xs, dxs):
        new, loss = meta_step_lax_map(learner, eqx.combine(dyn, static), xs, dxs)
        return eqx.filter(new, eqx.is_array), loss

    return {"vmap (library)": library, "lax.map": mapped}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="5,20")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 repeats, 5 tasks only")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.tasks = 3, "5"
    env = environment()
    (xs_all, dxs_all), _ = pendulum_support(10)
    rows = []
    for tasks in map(int, args.tasks.split(",")):
        learner = make_learner("maml", tasks_per_step=tasks)
        state = learner.init(model_factory(), xs_all.shape[0], key=jax.random.key(0))
        dyn, static = split_state(state)
        xs, dxs = xs_all[:tasks], dxs_all[:tasks]
        variants = variant_steps(learner, static, jnp.arange(tasks))
        outs, compiled, rows_here = {}, {}, {}
        for name, fn in variants.items():
            compiled[name], lower_s, compile_s = compile_timed(fn, dyn, xs, dxs)
            outs[name] = compiled[name](dyn, xs, dxs)
            rows_here[name] = {"tasks": tasks, "variant": name, "lower_s": lower_s,
                               "compile_s": compile_s,
                               "peak_mb": memory_bytes(compiled[name]) / 2**20}  # fmt: skip
        # Interleave the two variants' repeats so that load changes hit both alike.
        times = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name in variants:
                times[name].append(median_time(compiled[name], dyn, xs, dxs, repeats=1))
        for name in variants:
            rows.append(rows_here[name] | {"step_ms": statistics.median(times[name]) * 1e3,
                                           "load1": os.getloadavg()[0]})  # fmt: skip
            print(rows[-1], flush=True)
        (a_state, a_loss), (b_state, b_loss) = outs.values()
        np.testing.assert_allclose(a_loss, b_loss, rtol=1e-5)
        # Compare the meta-gradient, not the updated parameters: Adam's first step moves each
        # weight by about lr·g/|g|, so for a weight whose gradient is near zero the float32
        # rounding of the task sum (a different order in the two variants) changes its update
        # by a large relative amount.
        # After one step Adam's first moment is (1 − b1)·g: the summed meta-gradient itself,
        # whose rounding error scales with the largest terms summed, hence atol ∝ max |g|.
        mu_a, mu_b = (jax.tree.leaves(s.opt_state[0].mu) for s in (a_state, b_state))
        for a, b in zip(mu_a, mu_b):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(b))))
        print(f"tasks {tasks}: vmap == lax.map (loss and meta-gradient): ok")
        vmap_ms, map_ms = rows[-2]["step_ms"], rows[-1]["step_ms"]
        rows[-1]["speedup_vs_vmap"] = vmap_ms / map_ms

    md = table(rows, [
        ("tasks", "functions/step", "d"), ("variant", "task axis", "s"),
        ("lower_s", "trace+lower s", ".2f"), ("compile_s", "compile s", ".2f"),
        ("step_ms", "step ms", ".1f"), ("speedup_vs_vmap", "vmap time / lax.map time", ".2f"),
        ("peak_mb", "peak MiB", ".1f"), ("load1", "load 1-min", ".2f"),
    ])  # fmt: skip
    print(md)
    write_results("vmap_vs_map", env, rows, md)


if __name__ == "__main__":
    main()
