"""The documentation site (docs/, mkdocs.yml) cannot rot.

- every ``python`` block of every page runs as written: a page's blocks run in order in one
  namespace, so a page can build on its earlier blocks; ``bash`` blocks (experiments that take
  minutes to hours) and ``text`` blocks are never run, and no other fence language is allowed;
- every public name of jaxmeta and its subpackages has an entry in the API reference, and the
  API pages are what ``scripts/gen_api_pages.py`` writes;
- every results directive (``<!-- gen:... -->``) names files that exist, and every figure
  under ``results/`` is at most 200 KB; every three-decimal figure the study's page quotes
  is one of the study's generated tables;
- README stays short (at most 150 lines, like Equinox's and Diffrax's) and keeps its set-up
  commands, examples, citations and licence; every file it shows or links exists, and its one
  generated teaser table is current (its examples run in ``tests/test_readme.py``).
"""

import importlib
import importlib.util
import linecache
import pkgutil
import re
import types
from pathlib import Path

import pytest

import jaxmeta

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
README = ROOT / "README.md"

_PYTHON = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
_ENTRY = re.compile(r"^::: (jaxmeta(?:\.\w+)+)\s*$", re.M)
LANGUAGES = {"python", "bash", "text"}


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def python_blocks(page: Path) -> list[str]:
    return _PYTHON.findall(page.read_text())


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


def test_pages_have_examples():
    assert len(PAGES_WITH_CODE) >= 10, [_rel(p) for p in PAGES_WITH_CODE]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_fences_are_python_bash_or_text(page):
    inside, bad = False, []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        fence = re.match(r"^(\s*)```(\S*)\s*$", line)
        if fence is None:
            continue
        indent, language = fence.groups()
        if not inside and (indent or language not in LANGUAGES):
            bad.append(f"line {number}: {line.strip()!r}")
        inside = not inside
    assert not inside, f"{_rel(page)}: a code block is not closed"
    assert not bad, (
        f"{_rel(page)}: code blocks must start at column 0 with a language in "
        f"{sorted(LANGUAGES)} (python runs in the tests, bash and text do not): {bad}"
    )


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_rel)
def test_page_examples_run(page, tmp_path, monkeypatch):
    # Pages run from the repository root; the published results are read, never written.
    (tmp_path / "results").symlink_to(ROOT / "results")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for index, code in enumerate(python_blocks(page)):
        name = f"{_rel(page)} (python block {index})"
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # tracebacks
        exec(compile(code, name, "exec"), namespace)


# ----------------------------------------------------------------------- API reference


def exported_names() -> set[str]:
    """``jaxmeta.<module>.<name>`` for every public non-module name of every public module.

    A subpackage's public names are its ``__init__``'s re-exports; a single-file module's are
    the public objects it defines itself (imports of other modules' objects excluded).
    """
    names = {f"jaxmeta.{n}" for n in dir(jaxmeta) if not n.startswith("_")}
    names = {
        n for n in names if not isinstance(getattr(jaxmeta, n.split(".")[1]), types.ModuleType)
    }
    for info in pkgutil.iter_modules(jaxmeta.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"jaxmeta.{info.name}")
        for name in dir(module):
            obj = getattr(module, name)
            if name.startswith("_") or isinstance(obj, types.ModuleType):
                continue
            if not info.ispkg and getattr(obj, "__module__", module.__name__) != module.__name__:
                continue
            names.add(f"{module.__name__}.{name}")
    return names


def api_entries() -> set[str]:
    return {e for page in (DOCS / "api").glob("*.md") for e in _ENTRY.findall(page.read_text())}


def test_every_public_name_has_an_api_entry():
    missing = sorted(exported_names() - api_entries())
    assert not missing, f"no API entry for {missing}: run `python scripts/gen_api_pages.py`"


def test_every_api_entry_is_a_public_name():
    modules = {f"jaxmeta.{i.name}" for i in pkgutil.iter_modules(jaxmeta.__path__)}
    stale = sorted(api_entries() - exported_names() - modules)
    assert not stale, f"API entries for names jaxmeta does not export: {stale}"


def test_api_pages_are_up_to_date(capsys):
    status = _load_script("gen_api_pages").main(["--check"])
    assert status == 0, capsys.readouterr().out + "run `python scripts/gen_api_pages.py`"


def test_api_pages_are_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted((DOCS / "api").glob("*.md"))
    assert len(pages) > 1
    for page in pages:
        assert f"api/{page.name}" in nav, f"mkdocs.yml nav lacks api/{page.name}"


# ------------------------------------------------------------------------- results pages


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_results_directives_name_existing_files(page):
    gen = _load_script("gen_results_pages")
    uri = page.relative_to(DOCS).as_posix()
    text = page.read_text()
    out = gen.expand(text, uri)
    assert "<!-- gen:" not in out
    if "<!-- gen:" in text:
        assert "|---" in out or "<figure" in out  # a table or a figure came in


def test_headline_has_one_column_per_system():
    gen = _load_script("gen_results_pages")
    out = gen.expand("<!-- gen:headline results/quick trajectory_error -->\n", "results/x.md")
    header = next(line for line in out.splitlines() if line.startswith("| method |"))
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    assert columns and len(columns) == len(set(columns)), columns  # default runs only


def test_results_figures_are_small():
    # Figures read on screen at most 200 KB each; scripts/shrink_figures.py re-encodes new ones.
    shrink = _load_script("shrink_figures")
    big = {_rel(p): p.stat().st_size for p in shrink.figures([]) if p.stat().st_size > shrink.LIMIT}
    assert not big, (
        f"figures over {shrink.LIMIT} bytes: {big}; run `python scripts/shrink_figures.py`"
    )


def test_results_directive_errors_name_the_file():
    gen = _load_script("gen_results_pages")
    with pytest.raises(ValueError, match="results/no-such-run"):
        gen.expand("<!-- gen:run results/no-such-run -->\n", "results/x.md")
    with pytest.raises(ValueError, match="unknown directive gen:bogus"):
        gen.expand("<!-- gen:bogus results -->\n", "results/x.md")


def test_included_files_keep_the_page_outline():
    gen = _load_script("gen_results_pages")
    text = "# A\n\n### B\n\n[x](y.md) [w](https://w.org)"
    assert gen.include(text) == "**A**\n\n**B**\n\nx [w](https://w.org)"
    assert gen.demote(text, 3) == "### A\n\n##### B\n\nx [w](https://w.org)"


_THREE_DECIMALS = re.compile(r"(?<![\d.])\d\.\d{3}(?!\d)")
_NUMBER = re.compile(r"\d+\.\d+")


def _not_in_tables(prose: str, tables: str) -> list[str]:
    """Three-decimal figures of ``prose`` that no number of ``tables`` rounds to."""
    known = {round(float(x), 3) for x in _NUMBER.findall(tables)}
    return [x for x in _THREE_DECIMALS.findall(prose) if round(float(x), 3) not in known]


def test_study_page_quotes_its_tables():
    # The study's prose quotes trajectory errors and latent statistics by hand; each must be
    # a figure of the tables that `python -m experiments.study --tables-only` wrote.
    assert _not_in_tables("RO 0.218 -> 0.141 (0.0627)", "| 0.218 | 0.1412 | 0.063 |") == []
    assert _not_in_tables("RO 0.218 -> 0.142", "| 0.218 | 0.1412 |") == ["0.142"]
    assert _not_in_tables("RO 0.140", "| 0.1412 |") == ["0.140"]  # not 0.14 at 2 decimals
    prose = (DOCS / "results" / "study.md").read_text()
    tables = (ROOT / "results" / "study" / "tables.md").read_text()
    missing = _not_in_tables(prose, tables)
    assert not missing, missing


# ---------------------------------------------------------------------------- README

SET_UP = (
    'python -m pip install -e ".[test]" && python -m experiments.run --system pendulum',
    'python -m pip install -e ".[test]" && python -m pytest',
)
README_MAX_LINES = 150  # Equinox's and Diffrax's READMEs are of this size; tables live in docs/


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, more than {README_MAX_LINES}: results tables and long "
        "prose belong on the docs pages (docs/results/), README keeps one teaser"
    )


def test_readme_keeps_what_a_newcomer_needs():
    text = README.read_text()
    for command in SET_UP:
        assert command in text
    assert "cd jaxmeta" in text  # the clone-and-install line
    assert len(_PYTHON.findall(text)) >= 2  # what tests/test_readme.py runs
    assert "arxiv.org/abs/2508.11205" in text and "@article{" in text  # the paper, cited
    assert "ConCerNet" in text and "2302.05783" in text  # ConCerNet, cited
    assert re.search(r"^## Licence\n\nApache-2\.0", text, re.M)
    assert "Apache-2.0" in (ROOT / "pyproject.toml").read_text()
    assert len(re.findall(r"^\|---", text, re.M)) <= 1, "README holds one table at most"


def test_readme_figures_and_links_exist():
    text = README.read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert figures, "README shows no figure"
    links = re.findall(r"(?<!!)\[[^\]]*\]\((?!https?:|#)([^)#]+)[^)]*\)", text)
    assert links, "README links to no page of the docs"
    for path in figures + links:  # every file it shows or links is a committed file
        assert (ROOT / path).exists(), path


def test_readme_teaser_is_current():
    gen = _load_script("gen_results_pages")
    text = README.read_text()
    assert gen.HEADLINE_START in text, "README has no generated teaser table"
    assert gen.fill_readme(text) == text, (
        "run `python scripts/gen_results_pages.py --readme README.md`"
    )


def test_readme_teaser_errors_name_the_column():
    gen = _load_script("gen_results_pages")
    block = "<!-- gen-readme:teaser results/reproduce-quick-paper-like/summary.md {} -->\n<!-- /gen-readme -->\n"
    assert "| method | pendulum |" in gen.fill_readme(block.format("pendulum"))
    with pytest.raises(ValueError, match="no column \\['bogus'\\]"):
        gen.fill_readme(block.format("bogus"))
