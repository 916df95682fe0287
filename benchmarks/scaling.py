"""Meta-training throughput vs devices (task axis sharded) and vs number of training functions.

    python benchmarks/scaling.py                  # all rows (~5 min on a 2-core CPU)
    python benchmarks/scaling.py --repeats 5 --steps 10

Each device count runs in its own subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before JAX starts). Workload:
auto-decoding with RankOne modulation of an HNN (small: 2x16 tanh, latent 4; paper: 4x100
tanh, latent 10), 3 inner steps, synthetic data of 20 states per function. ``tasks_per_step``
is SCALED with the number of functions F (F / steps), so one epoch is always ``--steps``
meta-steps and functions/s = F x epochs / time. Timed: one compiled epoch, a `lax.scan` of
the learner's public ``meta_step`` over a random order of the functions (what `fit` runs in
each chunk), with the data and the latents sharded over the ``"tasks"`` axis of
`jaxmeta.meta.task_mesh` and the rest replicated, compile time apart, median of
``--repeats`` after a warm-up, `jax.block_until_ready`. Forced host devices on a CPU share
the same cores, so no speed-up is expected there: those rows measure the sharding overhead.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SIZES = {"small": dict(width=16, depth=2, latent=4), "paper": dict(width=100, depth=4, latent=10)}


def measure(size: str, num: int, devices: int, steps: int, repeats: int) -> dict:
    import equinox as eqx
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from jaxmeta import meta, modulation, nn

    cfg = SIZES[size]
    learner = meta.AutoDecoding(modulation.RankOne(), latent_dim=cfg["latent"], inner_steps=3,
                                tasks_per_step=num // steps)  # fmt: skip
    make = lambda k: nn.HNN(2, width=cfg["width"], depth=cfg["depth"], key=k)
    kx, kd, ki = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.normal(kx, (num, 20, 2))
    dxs = jax.random.normal(kd, (num, 20, 2))
    state = learner.init(make, num, key=ki)
    mesh = meta.task_mesh(devices, num)
    by_task, whole = (
        NamedSharding(mesh, PartitionSpec("tasks")),
        NamedSharding(mesh, PartitionSpec()),
    )
    xs, dxs = jax.device_put((xs, dxs), by_task)
    dynamic, static = eqx.partition(state, eqx.is_array)
    place = lambda a: jax.device_put(a, by_task if a.shape[:1] == (num,) else whole)
    dynamic = jax.tree.map(place, dynamic)

    @jax.jit
    def _train_epochs(dynamic, xs, dxs, key):
        order = jax.random.permutation(key, num).reshape(steps, num // steps)

        def step(d, idx):
            new, loss = learner.meta_step(eqx.combine(d, static), xs[idx], dxs[idx], idx)
            return eqx.filter(new, eqx.is_array), loss

        return jax.lax.scan(step, dynamic, order)

    keys = jax.random.key(1)
    t0 = time.perf_counter()
    out, losses = jax.block_until_ready(_train_epochs(dynamic, xs, dxs, keys))
    compile_s = time.perf_counter() - t0
    assert np.isfinite(np.asarray(losses)).all() and int(out.step) == steps  # check the answer
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(_train_epochs(dynamic, xs, dxs, keys))
        times.append(time.perf_counter() - t0)
    run = float(np.median(times))
    return {"size": size, "functions": num, "devices": devices, "tasks_per_step": num // steps,
            "first_call_s": compile_s, "epoch_s": run, "meta_steps_per_s": steps / run,
            "functions_per_s": num / run}  # fmt: skip


def child(args) -> None:
    import jax

    rows = [measure(size, num, args.devices, args.steps, args.repeats)
            for size in SIZES for num in args.functions]  # fmt: skip
    print(json.dumps({"jax": jax.__version__, "device": str(jax.devices()[0]),
                      "device_count": jax.device_count(), "rows": rows}))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="meta-steps per epoch")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--functions", type=int, nargs="+", default=[700], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    plan = [(1, [70, 700, 7000]), (2, [700]), (4, [700])]
    rows, info = [], {}
    for devices, functions in plan:
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        cmd = [sys.executable, __file__, "--child", "--devices", str(devices),
               "--repeats", str(args.repeats), "--steps", str(args.steps),
               "--functions", *map(str, functions)]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1])  # fmt: skip
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        rows += info["rows"]
        print(f"done {devices} device(s)", flush=True)
    header = (f"command: `{command}`  \nJAX {info['jax']}, device {info['device']} (forced host "
              f"devices), {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}  \n"
              f"tasks_per_step = F / {args.steps} (scaled: one epoch = {args.steps} meta-steps); "
              f"median of {args.repeats} after warm-up. Forced host devices share the same CPU "
              f"cores: no speed-up is expected, the device rows show sharding overhead.")  # fmt: skip
    lines = [header, "", "| size | F | devices | tasks/step | first call (s) | epoch (s) | "
             "meta-steps/s | functions/s |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['size']} | {r['functions']} | {r['devices']} | {r['tasks_per_step']} "
                     f"| {r['first_call_s']:.2f} | {r['epoch_s']:.3f} | "
                     f"{r['meta_steps_per_s']:.1f} | {r['functions_per_s']:.0f} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "scaling.md").write_text(table)
    (out / "scaling.json").write_text(json.dumps({"command": command, **info, "rows": rows},
                                                 indent=1))  # fmt: skip
    print(table)


if __name__ == "__main__":
    main()
