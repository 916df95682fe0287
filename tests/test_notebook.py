"""The example notebooks (docs/examples/*.ipynb) run as written, at a tiny budget.

Every code cell runs in order in one namespace (read with the json module: no Jupyter needed),
on matplotlib's Agg backend. The first code cell of a notebook sets its budget; the test runs
it, then shrinks the budget (`TINY`) before the other cells run, so the whole notebook runs in
seconds. The notebooks are stored with their outputs, which the docs site shows: the test also
checks that every code cell has been executed and that its stored outputs hold no error.
"""

import json
import linecache
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "examples").glob("*.ipynb"))
TINY = {"NUM_FUNCTIONS": 10, "EPOCHS": 2, "VAL_EVERY": 1, "WIDTH": 8}


def code_cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def test_there_is_an_example_notebook():
    assert NOTEBOOKS, "docs/examples/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_with_its_outputs(path):
    cells = code_cells(path)
    assert cells, f"{path.name} has no code cell"
    for index, cell in enumerate(cells):
        assert cell.get("execution_count"), f"{path.name}: code cell {index} was never run"
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: code cell {index} stored an error: {errors[0]}"
    images = [o for c in cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no figure: store it executed (docs show its outputs)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = code_cells(path)
    first = _source(cells[0])
    assert all(f"{name} = " in first for name in TINY), (
        f"{path.name}: its first code cell must set the budget {sorted(TINY)}"
    )
    namespace = {"__name__": "__main__"}
    try:
        for index, cell in enumerate(cells):
            code = _source(cell)
            name = f"{path.name} (code cell {index})"
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # tracebacks
            exec(compile(code, name, "exec"), namespace)
            if index == 0:
                namespace.update(TINY)
    finally:
        plt.close("all")
