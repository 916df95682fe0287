"""Re-encode the PNG figures under ``results/`` so that each is at most 200 KB.

Matplotlib writes 24-bit RGBA PNGs; a phase portrait with many streamlines comes out at
300-800 KB at the experiments' dpi. A line plot needs far fewer colours than 16 million, so
each figure over the limit is re-encoded as a 256-colour palette PNG (Pillow's median cut, no
dithering, so lines and text stay crisp), at its own pixel size. Only if that is still over
the limit are fewer colours tried, then a smaller pixel size, never below 75% of the original
width (about 80 dpi for the experiments' figures), so that text stays legible on screen.
Figures already under the limit are left as they are. ``tests/test_docs.py`` checks the
limit::

    python scripts/shrink_figures.py            # every PNG under results/
    python scripts/shrink_figures.py --check    # list the figures over the limit; exit 1 if any
    python scripts/shrink_figures.py path/to/fig.png ...
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from experiments.plots import LIMIT, shrink  # noqa: E402 (the one encoder, shared with the figures)


def figures(paths: list[str]) -> list[Path]:
    if not paths:
        return sorted((ROOT / "results").rglob("*.png"))
    out = []
    for p in map(Path, paths):
        out += sorted(p.rglob("*.png")) if p.is_dir() else [p]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="PNG files or folders (default: results/)")
    parser.add_argument("--check", action="store_true", help="only list figures over the limit")
    parser.add_argument("--limit", type=int, default=LIMIT, help="bytes (default: 200,000)")
    args = parser.parse_args(argv)
    over = []
    for path in figures(args.paths):
        if args.check:
            if path.stat().st_size > args.limit:
                over.append(path)
            continue
        before, after = shrink(path, args.limit)
        if after != before:
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
                  f"{before / 1e3:.0f} KB -> {after / 1e3:.0f} KB")  # fmt: skip
        if after > args.limit:
            over.append(path)
    for path in over:
        print(f"over {args.limit / 1e3:.0f} KB: {path} ({path.stat().st_size / 1e3:.0f} KB)")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
