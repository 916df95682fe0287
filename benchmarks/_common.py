"""Shared helpers of the benchmark scripts: environment header, timing, FLOPs, memory, output.

Not a benchmark itself; imported by the scripts beside it (``python benchmarks/<script>.py``
puts this folder on ``sys.path``).
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxmeta import data, meta, nn, systems

# The method registry lives with the experiments (the one place names become objects); the
# scripts here run as ``python benchmarks/<script>.py``, so the repository root joins the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from experiments.registry import METHODS as METHODS, make_learner as make_learner  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict:
    """Print and return the command, JAX version, device and load average."""
    env = {
        "command": " ".join(["python", *sys.argv]),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    print(f"command: {env['command']}")
    print(f"jax {env['jax']} | device {env['device']} ({env['device_kind']}) | "
          f"{env['cpu_count']} CPUs | load average {env['loadavg_start']}", flush=True)  # fmt: skip
    return env


def model_factory(width: int = 100, depth: int = 4):
    return lambda key: nn.HNN(2, width=width, depth=depth, key=key)


def pendulum_support(shots: int = 10, *, seed: int = 0):
    """The paper's pendulum dataset (100 functions: 70 train, 20 val, 10 test) with ``shots``
    support trajectories of 31 points: ``(train_xs, train_dxs), (test_xs, test_dxs)``, each
    ``(F, shots * 31, 2)``."""
    ds = data.generate_dataset(
        systems.Pendulum(), jax.random.key(seed), num_trajectories=shots, num_query=1
    )
    return meta.flatten_support(ds.train), meta.flatten_support(ds.test)


def split_state(state):
    """``(arrays, rest)`` so a jitted function can take the arrays and close over the rest."""
    return eqx.partition(state, eqx.is_array)


def compile_timed(fn, *args) -> tuple:
    """``jax.jit(fn)`` lowered and compiled: returns (compiled, lower_s, compile_s)."""
    start = time.perf_counter()
    lowered = jax.jit(fn).lower(*args)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    return compiled, lower_s, time.perf_counter() - start


def median_time(fn, *args, repeats: int, warmup: int = 2) -> float:
    """Median wall-clock seconds of ``fn(*args)`` (blocked), after ``warmup`` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def memory_bytes(compiled) -> int | None:
    """Peak device memory of one call as XLA plans it: arguments + outputs + temporaries
    − aliased (``Compiled.memory_analysis()``; works on CPU and GPU)."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def xla_flops(compiled) -> float | None:
    """``Compiled.cost_analysis()["flops"]``. XLA counts a loop body once, whatever its trip
    count, so this undercounts every `lax.scan` (inner loops, adaptation steps)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    return None if not cost else float(cost.get("flops", 0.0))


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for v in value if isinstance(value, list | tuple) else (value,):
            if isinstance(v, jax.extend.core.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, jax.extend.core.Jaxpr):
                yield v


def _jaxpr_matmul_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lc, _), (lb, _) = eqn.params["dimension_numbers"]
            lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
            out = eqn.outvars[0].aval.shape
            contract = 1
            for d in lc:
                contract *= lhs[d]
            size = 1
            for d in out:
                size *= d
            del rhs, lb
            total += 2.0 * size * contract
            continue
        inner = [_jaxpr_matmul_flops(j) for j in _subjaxprs(eqn)]
        if not inner:
            continue
        if name == "scan":
            total += eqn.params["length"] * sum(inner)
        elif name == "cond":
            total += max(inner)
        else:  # jit, custom_jvp/vjp, remat, while (counted once), ...
            total += sum(inner)
    return total


def matmul_flops(fn, *args) -> float:
    """Matrix-multiply FLOPs of ``fn(*args)`` counted on its jaxpr (2·M·N·K per
    ``dot_general``, `lax.scan` bodies times their length). Elementwise work is not counted."""
    return _jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def peak_matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Measured float32 ``jnp.dot`` throughput of an ``n × n`` product (GFLOP/s)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    seconds = median_time(dot, a, b, repeats=repeats)
    return 2.0 * n**3 / seconds / 1e9


def shaped_matmul_gflops(
    batch: int, rows: int, width: int, repeats: int = 20, dtype=jnp.float32
) -> float:
    """Measured throughput (GFLOP/s) of the product the methods spend their FLOPs in: a
    batch of per-function ``(rows × width) @ (width × width)`` products (every method gives
    each function its own weights: the adapted weights of MAML/Reptile/ANIL, the modulated
    weights of Shift/FW/RO/MR), as ``jnp.einsum("tbi,tij->tbj")``. The roofline of these
    shapes on this device, against which the 2048² peak is out of reach for small products."""
    a = jax.random.normal(jax.random.key(0), (batch, rows, width), dtype)
    b = jax.random.normal(jax.random.key(1), (batch, width, width), dtype)
    product = jax.jit(lambda a, b: jnp.einsum("tbi,tij->tbj", a, b))
    seconds = median_time(product, a, b, repeats=repeats)
    return 2.0 * batch * rows * width**2 / seconds / 1e9


def write_results(name: str, env: dict, rows: list[dict], markdown: str, extra=None) -> None:
    """``results/<name>.json`` (environment, rows) and ``results/<name>.md`` (the table)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = dict(env, loadavg_end=os.getloadavg())
    payload = {"environment": env, "rows": rows, **(extra or {})}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1))
    head = (
        f"`{env['command']}`\n\njax {env['jax']}, device {env['device']} ({env['device_kind']}), "
        f"{env['cpu_count']} CPUs, load average {_fmt_load(env['loadavg_start'])} at start, "
        f"{_fmt_load(env['loadavg_end'])} at end.\n\n"
    )
    (RESULTS / f"{name}.md").write_text(head + markdown)
    print(f"wrote {RESULTS / name}.json and .md")


def _fmt_load(load) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table: ``columns`` are (key, header, format spec); missing values are –."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |"]
    lines.append("|" + "---|" * len(columns))
    for row in rows:
        cells = []
        for key, _, spec in columns:
            value = row.get(key)
            cells.append("–" if value is None else format(value, spec))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
