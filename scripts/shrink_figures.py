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
import io
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 200_000  # bytes
_COLOURS = (256, 128, 64)
_SCALES = (1.0, 0.9, 0.8, 0.75)


def _encode(image: Image.Image, colours: int) -> bytes:
    palette = image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", optimize=True, dpi=image.info.get("dpi", (72, 72)))
    return buffer.getvalue()


def shrink(path: Path, limit: int = LIMIT) -> tuple[int, int]:
    """Re-encode ``path`` in place if it is over ``limit`` bytes; (size before, size after)."""
    before = path.stat().st_size
    if before <= limit:
        return before, before
    with Image.open(path) as opened:
        dpi = opened.info.get("dpi")
        image = opened.convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, image).convert("RGB")  # figures are opaque
    best = None
    for scale in _SCALES:
        scaled = image
        if scale != 1.0:
            size = (round(image.width * scale), round(image.height * scale))
            scaled = image.resize(size, Image.Resampling.LANCZOS)
        if dpi:
            scaled.info["dpi"] = tuple(d * scale for d in dpi)
        for colours in _COLOURS:
            data = _encode(scaled, colours)
            if best is None or len(data) < len(best):
                best = data
            if len(data) <= limit:
                path.write_bytes(data)
                return before, len(data)
    path.write_bytes(best)  # the smallest legible encoding, still over the limit
    return before, len(best)


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
