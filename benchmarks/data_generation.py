"""Time generating each system's whole dataset (100 functions × (K + K_test) trajectories).

    python benchmarks/data_generation.py [--repeats 5]

Compile time (first call) is reported apart from the median of the warm repeats; the answer is
checked (finite states, the expected shapes) before timing.
"""

import argparse
import os
import statistics
import sys
import time

import jax

from jaxmeta import data, systems


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"jax {jax.__version__}, device {jax.devices()[0]}, load {os.getloadavg()}")
    print("| system | trajectories | first call (compile + run) s | warm median s |")
    print("|---|---|---|---|")
    for name, cls in systems.SYSTEMS.items():
        system = cls()
        start = time.perf_counter()
        ds = jax.block_until_ready(data.generate_dataset(system, jax.random.key(0)))
        first = time.perf_counter() - start
        n = sum(
            s.xs.shape[0] * (s.xs.shape[1] + s.query_xs.shape[1])
            for s in (ds.train, ds.val, ds.test)
        )
        assert all(bool(jax.numpy.isfinite(s.xs).all()) for s in (ds.train, ds.val, ds.test))
        times = []
        for r in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(data.generate_dataset(system, jax.random.key(r + 1)))
            times.append(time.perf_counter() - start)
        print(f"| {name} | {n} | {first:.2f} | {statistics.median(times):.3f} |", flush=True)


if __name__ == "__main__":
    main()
