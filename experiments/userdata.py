"""Your own trajectories, read for ``experiments.adapt``: an ``.npz`` (``ts``, ``xs`` and
optionally ``dxs``, ``mu``) or a long-form ``.csv`` (``trajectory,t,<state names>``), checked
against the run's system. Every refusal is a `DataError` naming the flag and the file."""

from pathlib import Path

import numpy as np


class DataError(ValueError):
    """A data file the run cannot use (the message names the flag and the file)."""


def _fail(message: str):
    raise DataError(message)


def _check_dim(path, shape, system, what: str) -> None:
    if shape[-1] != system.state_dim:
        _fail(f"{path}: {what} has state dimension {shape[-1]} (shape {shape}), but the run's "
              f"system {system.name} has state dimension {system.state_dim} "
              f"({', '.join(system.state_names)})")  # fmt: skip


def _read_npz(path: Path, system) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        _fail(f"--data {path}: not a readable .npz ({err})")
    missing = [k for k in ("ts", "xs") if k not in arrays]
    if missing:
        _fail(
            f"--data {path}: no {' or '.join(missing)} array (found: {', '.join(arrays) or 'none'})"
        )
    xs = arrays["xs"]
    if xs.ndim != 3:
        _fail(f"--data {path}: xs must have shape (K, T, state_dim), got shape {xs.shape}")
    _check_dim(f"--data {path}", xs.shape, system, "xs")
    mu = arrays.get("mu")
    if mu is not None and mu.shape != (system.param_dim,):
        _fail(f"--data {path}: mu must have shape ({system.param_dim},) "
              f"({', '.join(system.param_names)}), got shape {mu.shape}")  # fmt: skip
    return {"ts": arrays["ts"], "xs": xs, "dxs": arrays.get("dxs"), "mu": mu}


def _read_csv(path: Path, system) -> dict:
    lines = path.read_text().splitlines()
    header = [h.strip() for h in lines[0].split(",")] if lines else []
    expected = ["trajectory", "t", *system.state_names]
    if header[:2] == expected[:2] and len(header) - 2 != system.state_dim:
        _check_dim(f"--data {path}", (len(header) - 2,), system, f"the header {','.join(header)}")
    if header != expected:
        _fail(f"--data {path}: header must be {','.join(expected)} (the run's system "
              f"{system.name}), got {','.join(header) or 'an empty file'}")  # fmt: skip
    rows: dict[str, list] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(header):
            _fail(
                f"--data {path}: line {number} has {len(cells)} columns, the header {len(header)}"
            )
        try:
            values = [float(c) for c in cells[1:]]
        except ValueError:
            _fail(f"--data {path}: line {number}: {line.strip()!r} holds a non-number")
        if not np.isfinite(values).all():
            _fail(f"--data {path}: line {number}: non-finite value in {line.strip()!r}")
        rows.setdefault(cells[0], []).append(values)
    if not rows:
        _fail(f"--data {path}: no data rows")
    trajs = {name: np.asarray(sorted(r, key=lambda v: v[0])) for name, r in rows.items()}
    first, ref = next(iter(trajs.items()))
    ts = ref[:, 0]
    tol = 1e-3 * np.ptp(ts) / max(ts.shape[0] - 1, 1)  # 0.1 % of a step, as the grid check
    for name, arr in trajs.items():
        same = arr.shape == ref.shape and np.allclose(arr[:, 0], ts, rtol=0, atol=tol)
        if not same:
            _fail(f"--data {path}: trajectory {name!r} has times other than trajectory {first!r}'s "
                  f"({arr.shape[0]} vs {ts.shape[0]} points): all must share one grid")  # fmt: skip
    return {"ts": ts, "xs": np.stack([a[:, 1:] for a in trajs.values()]), "dxs": None, "mu": None}


def read_trajectories(path, system) -> dict:
    """``{"ts", "xs", "dxs", "mu"}`` from an ``.npz`` or ``.csv`` file (``dxs``, ``mu`` may
    be None), checked against ``system``; refusals are `SystemExit` with a one-line message."""
    path = Path(path)
    if not path.is_file():
        _fail(f"--data {path}: no such file")
    readers = {".npz": _read_npz, ".csv": _read_csv}
    if path.suffix.lower() not in readers:
        _fail(f"--data {path}: unknown format {path.suffix!r}; use .npz or .csv")
    return readers[path.suffix.lower()](path, system)


def read_ics(path, system) -> np.ndarray:
    """The ``x0`` (N, state_dim) array of an ``.npz`` (for ``--ics``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            x0 = npz["x0"] if "x0" in npz.files else None
    except (OSError, ValueError) as err:
        _fail(f"--ics {path}: not a readable .npz ({err})")
    if x0 is None or x0.ndim != 2:
        _fail(f"--ics {path}: needs an x0 array of shape (N, state_dim)")
    _check_dim(f"--ics {path}", x0.shape, system, "x0")
    if not np.isfinite(x0).all():
        _fail(f"--ics {path}: x0 has non-finite values")
    return x0
