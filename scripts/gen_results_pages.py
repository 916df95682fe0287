"""Fill the results pages of the docs from the files under ``results/`` and ``benchmarks/results/``.

A results page (``docs/results/*.md``) holds prose and directive lines; each directive is
replaced, at every docs build (the hook in ``scripts/mkdocs_hooks.py``), by what the files
say now, so re-running an experiment and rebuilding the site updates every number:

``<!-- gen:run DIR -->``
    a run of ``python -m experiments.run`` (``DIR`` holds ``table.md`` and ``results.json``):
    its table, every metric of ``results.json`` (mean ± std over seeds) and its figures.
``<!-- gen:table FILE -->``
    a Markdown file (``experiments.compare`` or ``experiments.concernet`` output) as it is.
``<!-- gen:figures DIR -->``
    every PNG figure in ``DIR``.
``<!-- gen:headline DIR METRIC -->``
    one table, methods × systems, of ``METRIC`` from the default run of each system
    (``DIR/<system>/results.json``; runs in other directories, such as ``pendulum-k20``, are
    left out).
``<!-- gen:benchmarks DIR -->``
    every ``DIR/*.md`` benchmark table and ``DIR/*.png`` figure.
``<!-- gen:section FILE#HEADING -->``
    the section of a Markdown file under that heading (a README's prose), as it is.
``<!-- gen:parameters {} -->``
    `jaxmeta.modulation.parameter_table` (its keyword arguments as JSON), computed.

Paths are relative to the repository root. A directive naming a missing file fails the build.
Headings of included files become bold titles, and their relative Markdown links (which
would point nowhere in the site) become plain text.

Figures are published by the hook under ``data/<path>``; this module writes image links to
that location relative to the page. Run it by hand to see the filled-in pages, or to refresh
README's one results teaser: the region between ``<!-- gen-readme:teaser FILE COLUMNS -->``
and ``<!-- /gen-readme -->`` holds the first table of ``FILE`` cut to its ``method`` column
and the comma-separated ``COLUMNS`` (``tests/test_docs.py`` fails while it is stale). Every
other table lives on the results pages, not in README::

    python scripts/gen_results_pages.py --out /tmp/results-pages
    python scripts/gen_results_pages.py --readme README.md
"""

import argparse
import json
import math
import os
import posixpath
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIGURE_DIRS = ("results", "benchmarks/results")  # published under data/ by the hook
DATA_URI = "data"

_DIRECTIVE = re.compile(r"^<!-- gen:(\w+) (.*?) -->$", re.M)
_HEADING = re.compile(r"^(#{1,6}) ", re.M)
_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\((?!https?:|#)[^)]*\)")


class DirectiveError(ValueError):
    pass


def _path(arg: str, *, kind: str = "file") -> Path:
    path = ROOT / arg
    ok = path.is_dir() if kind == "dir" else path.is_file()
    if not ok:
        raise DirectiveError(f"{kind} {arg!r} does not exist (paths are relative to {ROOT}).")
    return path


def figure_uri(path: Path) -> str:
    """Where the hook publishes a figure, as a site URI."""
    return posixpath.join(DATA_URI, path.relative_to(ROOT).as_posix())


def figure_files() -> list[Path]:
    """Every figure the hook publishes."""
    return sorted(p for d in FIGURE_DIRS for p in (ROOT / d).rglob("*.png"))


def _relative(uri: str, page_uri: str) -> str:
    return posixpath.relpath(uri, posixpath.dirname(page_uri) or ".")


def _level_before(markdown: str, position: int) -> int:
    levels = [len(m.group(1)) for m in _HEADING.finditer(markdown, 0, position)]
    return levels[-1] if levels else 1


def demote(markdown: str, top: int) -> str:
    """Shift headings so the highest one of ``markdown`` is at level ``top``; unlink links."""
    levels = [len(m.group(1)) for m in _HEADING.finditer(markdown)]
    shift = top - min(levels) if levels else 0
    markdown = _HEADING.sub(lambda m: "#" * min(6, len(m.group(1)) + shift) + " ", markdown)
    return _LINK.sub(r"\1", markdown)


def include(markdown: str) -> str:
    """``markdown`` of an included file: headings become bold titles (so the page's table of
    contents lists the page's own sections only) and relative links become plain text."""
    markdown = re.sub(r"^#{1,6} (.*)$", r"**\1**", markdown, flags=re.M)
    return _LINK.sub(r"\1", markdown)


def _format(x) -> str:
    if not isinstance(x, int | float) or isinstance(x, bool):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def _mean_std(entry) -> str:
    if isinstance(entry, dict) and "mean" in entry:
        std = entry.get("std")
        if len(entry.get("per_seed", [None, None])) == 1:
            std = None  # one seed: no spread to show
        return _format(entry["mean"]) + ("" if std is None else f" ± {_format(std)}")
    return _format(entry)


def metrics_table(results: dict) -> str:
    """Every metric of every method of a ``results.json``, mean ± std over seeds."""
    methods = results.get("methods", {})
    names = list(dict.fromkeys(k for m in methods.values() if isinstance(m, dict) for k in m))
    if not names:
        return ""
    lines = ["| method | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for method, metrics in methods.items():
        if not isinstance(metrics, dict):  # e.g. a "diverged" record
            lines.append(f"| {method} | " + " | ".join([str(metrics)] * len(names)) + " |")
            continue
        cells = [_mean_std(metrics[n]) if n in metrics else "–" for n in names]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figures(directory: Path, page_uri: str) -> str:
    """Every PNG of ``directory`` as a captioned figure, linked relative to the page."""
    return "\n\n".join(
        f'<figure markdown="span">\n  ![{p.name}]({_relative(figure_uri(p), page_uri)})\n'
        f"  <figcaption>{p.relative_to(ROOT).as_posix()}</figcaption>\n</figure>"
        for p in sorted(directory.glob("*.png"))
    )


def _run(arg: str, page_uri: str, level: int) -> str:
    directory = _path(arg, kind="dir")
    table = include(_path(f"{arg}/table.md").read_text().strip())
    results = json.loads(_path(f"{arg}/results.json").read_text())
    parts = [f"Files: `{arg}/`.", table]
    full = metrics_table(results)
    if full:
        parts += [
            f"Every metric in `{arg}/results.json` (the mean over seeds, ± their std when"
            " there are several):",
            full,
        ]
    figs = figures(directory, page_uri)
    if figs:
        count = len(list(directory.glob("*.png")))
        parts.append(
            f'<details class="note" markdown>\n<summary>Figures ({count})</summary>\n\n'
            f"{figs}\n\n</details>"
        )
    return "\n\n".join(parts)


def _table(arg: str, page_uri: str, level: int) -> str:
    return f"File: `{arg}`.\n\n" + include(_path(arg).read_text().strip())


def _figures(arg: str, page_uri: str, level: int) -> str:
    out = figures(_path(arg, kind="dir"), page_uri)
    if not out:
        raise DirectiveError(f"{arg!r} holds no PNG figure.")
    return out


def _system_order() -> list[str]:
    try:
        from jaxmeta.systems import SYSTEMS
    except ImportError:
        return []
    return list(SYSTEMS)


def _headline(arg: str, page_uri: str, level: int) -> str:
    directory, _, metric = arg.partition(" ")
    if not metric:
        raise DirectiveError("gen:headline needs a directory and a metric name.")
    # The default run of each system: the directory named after its system (not -k20 etc.).
    runs = []
    for path in sorted(_path(directory, kind="dir").glob("*/results.json")):
        results = json.loads(path.read_text())
        if results.get("system") == path.parent.name:
            runs.append((path.parent, results))
    order = _system_order()
    runs.sort(
        key=lambda r: (order.index(r[0].name) if r[0].name in order else len(order), r[0].name)
    )
    columns, rows, used = [], {}, []
    for run, results in runs:
        methods = results.get("methods", {})
        if not any(isinstance(m, dict) and metric in m for m in methods.values()):
            continue
        used.append(run)
        columns.append(results.get("system", run.name))
        for method, metrics in methods.items():
            cell = (
                _mean_std(metrics[metric])
                if isinstance(metrics, dict) and metric in metrics
                else "–"
            )
            rows.setdefault(method, {})[columns[-1]] = cell
    if not columns:
        raise DirectiveError(f"no {directory}/*/results.json reports {metric!r}.")
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, cells in rows.items():
        lines.append(f"| {method} | " + " | ".join(cells.get(c, "–") for c in columns) + " |")
    sources = ", ".join(f"`{run.relative_to(ROOT).as_posix()}/`" for run in used)
    return (
        "\n".join(lines) + f"\n\n`{metric}` (mean over seeds, ± std when several) from {sources}."
    )


def _benchmarks(arg: str, page_uri: str, level: int) -> str:
    directory = _path(arg, kind="dir")
    parts = []
    for md in sorted(directory.glob("*.md")):
        heading = "#" * min(6, level + 1)
        parts.append(f"{heading} {md.stem}\n\nFile: `{arg}/{md.name}`.")
        parts.append(include(md.read_text().strip()))
    figs = figures(directory, page_uri)
    if figs:
        parts += ["#" * min(6, level + 1) + " Figures", figs]
    if not parts:
        raise DirectiveError(f"{arg!r} holds no benchmark table.")
    return "\n\n".join(parts)


def _section(arg: str, page_uri: str, level: int) -> str:
    path_arg, _, title = arg.partition("#")
    text = _path(path_arg.strip()).read_text()
    headings = list(_HEADING.finditer(text))
    for i, m in enumerate(headings):
        line_end = text.index("\n", m.end()) if "\n" in text[m.end() :] else len(text)
        if text[m.end() : line_end].strip() != title.strip():
            continue
        depth = len(m.group(1))
        end = next((h.start() for h in headings[i + 1 :] if len(h.group(1)) <= depth), len(text))
        body = text[line_end:end].strip()
        return f"From `{path_arg.strip()}`.\n\n" + demote(body, level + 1)
    raise DirectiveError(f"{path_arg.strip()!r} has no heading {title.strip()!r}.")


def _parameters(arg: str, page_uri: str, level: int) -> str:
    # Computed, not read: the counts follow the code (shapes only, nothing is compiled).
    from jaxmeta.modulation import parameter_table

    return parameter_table(**json.loads(arg or "{}")).strip()


DIRECTIVES = {
    "run": _run,
    "section": _section,
    "parameters": _parameters,
    "table": _table,
    "figures": _figures,
    "headline": _headline,
    "benchmarks": _benchmarks,
}


def expand(markdown: str, page_uri: str) -> str:
    """``markdown`` of the page at ``page_uri`` (e.g. ``results/quick.md``), directives filled."""

    def one(match):
        kind, arg = match.group(1), match.group(2).strip()
        if kind not in DIRECTIVES:
            raise DirectiveError(
                f"{page_uri}: unknown directive gen:{kind} (know {list(DIRECTIVES)})."
            )
        level = _level_before(markdown, match.start())
        try:
            return _boxed(DIRECTIVES[kind](arg, page_uri, level))
        except DirectiveError as e:
            raise DirectiveError(f"{page_uri}: gen:{kind} {arg}: {e}") from None

    return _DIRECTIVE.sub(one, markdown)


def _boxed(markdown: str) -> str:
    # Generated tables: numbers do not wrap (the theme scrolls wide tables instead).
    return f'<div class="generated" markdown>\n\n{markdown}\n\n</div>'


HEADLINE_START = "<!-- gen-readme:"
_README_BLOCK = re.compile(
    r"^(<!-- gen-readme:teaser (\S+) (\S+) -->\n)(.*?)^(<!-- /gen-readme -->)$", re.M | re.S
)
_TABLE = re.compile(r"^\|.*\|\n\|[-| :]+\|\n(?:\|.*\|\n?)+", re.M)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def teaser(markdown: str, columns: list[str]) -> str:
    """The first table of ``markdown``, cut to its ``method`` column and ``columns``."""
    match = _TABLE.search(markdown)
    if match is None:
        raise DirectiveError("holds no Markdown table.")
    header, _, *rows = match.group(0).strip().splitlines()
    names = _cells(header)
    missing = [c for c in columns if c not in names]
    if missing:
        raise DirectiveError(f"its first table has no column {missing} (columns: {names}).")
    keep = [0] + [names.index(c) for c in columns]
    lines = ["| " + " | ".join(names[i] for i in keep) + " |", "|---" * len(keep) + "|"]
    for row in rows:
        cells = _cells(row)
        lines.append("| " + " | ".join(cells[i] for i in keep) + " |")
    return "\n".join(lines)


def fill_readme(text: str) -> str:
    """README text with each ``<!-- gen-readme:teaser FILE COLUMNS -->`` ...
    ``<!-- /gen-readme -->`` region replaced by `teaser` of ``FILE``.

    README is read on GitHub and PyPI, not built by MkDocs, so its generated region is
    written into the file (``--readme``) and a test checks it is current.
    """

    def one(match):
        path, columns = match.group(2), match.group(3).split(",")
        try:
            body = teaser(_path(path).read_text(), columns)
        except DirectiveError as e:
            raise DirectiveError(f"README: gen-readme:teaser {path}: {e}") from None
        return f"{match.group(1)}{body}\n{match.group(5)}"

    return _README_BLOCK.sub(one, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="directory for the filled-in results pages")
    parser.add_argument("--readme", help="refresh the generated teaser of this README file")
    args = parser.parse_args(argv)
    if not (args.out or args.readme):
        parser.error("give --out DIR and/or --readme FILE")
    if args.readme:
        path = Path(args.readme)
        path.write_text(fill_readme(path.read_text()))
        print(f"refreshed {path}")
    if args.out:
        out = Path(args.out)
        for page in sorted((DOCS / "results").glob("*.md")):
            uri = page.relative_to(DOCS).as_posix()
            target = out / uri
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(expand(page.read_text(), uri))
            print(f"wrote {os.path.relpath(target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
