"""The command-line reference page is generated from the commands' own parsers and kept
current (as the API pages are)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "gen_cli_pages", ROOT / "scripts" / "gen_cli_pages.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_page_is_up_to_date(capsys):
    assert _script().main(["--check"]) == 0, (
        capsys.readouterr().out + "run scripts/gen_cli_pages.py"
    )


def test_every_command_is_on_the_page():
    commands = {p.stem for p in (ROOT / "experiments").glob("*.py")
                if "__main__" in p.read_text() and not p.stem.startswith("_")}  # fmt: skip
    documented = {name for name, _ in _script().COMMANDS}
    assert commands == documented, commands ^ documented
    text = (ROOT / "docs" / "cli.md").read_text()
    for name in commands:
        assert f"## `python -m experiments.{name}`" in text
    assert "--system SYSTEM" in text and "--time-budget MINUTES" in text
