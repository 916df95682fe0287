"""Compare the per-(method, seed) metrics of two ``experiments.run`` directories bit for bit.

    python scripts/bitwise.py RUN_A RUN_B [--ignore ssim,...]

Every number of every ``<method>/seed<s>/metrics.json`` (the scores, the training history,
the best epoch; not wall times, identities or keys only one side has) must be equal as
float64 bit patterns. Prints one line per (method, seed) and exits 1 on any difference.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

SKIP = {"train_seconds", "unit_seconds", "unit_seconds_earlier", "config", "seconds",
        "compile_seconds"}  # fmt: skip


def _flat(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in SKIP:
                yield from _flat(v, f"{prefix}{k}.")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flat(v, f"{prefix}{i}.")
    else:
        yield prefix.rstrip("."), value


def _bits(x):
    return struct.pack("<d", float(x)) if isinstance(x, int | float) else x


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--ignore", default="", help="comma-separated metric names to leave out")
    args = p.parse_args(argv)
    ignore = {s for s in args.ignore.split(",") if s}
    a, b = Path(args.a), Path(args.b)
    bad = 0
    pairs = sorted(a.glob("*/seed*/metrics.json"))
    if not pairs:
        print(f"no metrics.json under {a}", file=sys.stderr)
        return 1
    for path in pairs:
        rel = path.relative_to(a)
        other = b / rel
        if not other.exists():
            print(f"{rel.parent}: missing in {b}")
            bad += 1
            continue
        x = dict(_flat(json.loads(path.read_text())))
        y = dict(_flat(json.loads(other.read_text())))
        keys = sorted(k for k in set(x) & set(y) if k.split(".")[0] not in ignore)
        diff = [k for k in keys if _bits(x[k]) != _bits(y[k])]
        bad += bool(diff)
        print(
            f"{rel.parent}: {len(keys)} numbers, {len(diff)} differ"
            + (f" ({', '.join(diff[:5])})" if diff else "")
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
