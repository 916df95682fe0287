"""Time the HNN field and its parameter gradient with reverse- vs forward-mode ``∇H``.

Workload: 1,550 states (5 tasks x 310 states, a meta-batch), HNN of state_dim 2 at the
paper's default size (width 100, depth 4). Two timings per mode, both jitted:

- field: ``vmap(model)(x)``;
- grad:  ``grad_θ mean|vmap(model)(x) - y|²`` (the outer, parameter derivative of training).

Compile time is reported apart; runs are warmed up, blocked with ``jax.block_until_ready``,
and the median of repeats is printed; the compile column is the first call (compile + one
run). Both modes' answers are checked equal.

    python benchmarks/field_grad_mode.py [--repeats 50] [--state-dim 2]
"""

import argparse
import sys
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from _common import median_time

from jaxmeta.nn import HNN


def _time(fn, *args, repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - start
    return compile_s, median_time(fn, *args, repeats=repeats, warmup=3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--state-dim", type=int, default=2)
    parser.add_argument("--states", type=int, default=1550)
    args = parser.parse_args()
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"jax {jax.__version__}, device {jax.devices()[0]}, states {args.states}")

    key_m, key_x, key_y = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(key_x, (args.states, args.state_dim))
    y = jax.random.normal(key_y, (args.states, args.state_dim))
    models = {
        mode: HNN(args.state_dim, grad_mode=mode, key=key_m) for mode in ("reverse", "forward")
    }

    @eqx.filter_jit
    def field(model, x):
        return jax.vmap(model)(x)

    @eqx.filter_jit
    @eqx.filter_grad
    def param_grad(model, x, y):
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    print(f"{'mode':8s} {'field ms':>10s} {'grad ms':>10s} {'compile s (f/g)':>16s}")
    for mode, model in models.items():
        cf, tf = _time(field, model, x, repeats=args.repeats)
        cg, tg = _time(param_grad, model, x, y, repeats=args.repeats)
        print(f"{mode:8s} {tf * 1e3:10.3f} {tg * 1e3:10.3f} {cf:7.2f}/{cg:.2f}")

    # Both modes must give the same answers (float32 tolerances).
    np.testing.assert_allclose(
        field(models["forward"], x), field(models["reverse"], x), rtol=1e-4, atol=1e-6
    )
    grads = [param_grad(models[mode], x, y) for mode in ("forward", "reverse")]
    for a, b in zip(*map(jax.tree_util.tree_leaves, grads)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    print("forward == reverse: ok")


if __name__ == "__main__":
    main()
