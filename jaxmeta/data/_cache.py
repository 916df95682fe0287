"""Disk cache of datasets: ``.npz`` arrays plus a JSON header with checksums."""

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..systems import AbstractSystem
from ._dataset import Dataset, TaskSet, generate_dataset

_SPLITS = ("train", "val", "test")
_FIELDS = tuple(f.name for f in dataclasses.fields(TaskSet))


def _version() -> str:
    from importlib.metadata import version

    return version("jaxmeta")


def _jsonable(value):
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _metadata(system: AbstractSystem, seed: int, kwargs: dict, dtype) -> dict:
    fields = {f.name: _jsonable(getattr(system, f.name)) for f in dataclasses.fields(system)}
    return {
        "system": system.name,
        "system_fields": fields,
        "seed": seed,
        "options": {k: _jsonable(v) for k, v in sorted(kwargs.items())},
        "dtype": str(dtype),
        "jaxmeta_version": _version(),
    }


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load(npz_path: Path, json_path: Path, meta: dict) -> Dataset | None:
    """The cached dataset, or None (with the reason warned) if missing, stale or corrupt."""
    if not (npz_path.exists() and json_path.exists()):
        return None
    try:
        header = json.loads(json_path.read_text())
        if header.get("metadata") != meta:
            warnings.warn(f"Dataset cache {json_path} was made with other settings; regenerating.")
            return None
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        if set(arrays) != set(header["sha256"]) or any(
            _digest(arr) != header["sha256"][name] for name, arr in arrays.items()
        ):
            warnings.warn(f"Dataset cache {npz_path} fails its checksums; regenerating.")
            return None
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        warnings.warn(f"Dataset cache {npz_path} is unreadable ({err!r}); regenerating.")
        return None
    sets = [
        TaskSet(**{f: jnp.asarray(arrays[f"{split}/{f}"]) for f in _FIELDS}) for split in _SPLITS
    ]
    return Dataset(*sets)


def load_or_generate(
    system: AbstractSystem, seed: int, directory: str | os.PathLike, **kwargs
) -> Dataset:
    """`generate_dataset(system, jax.random.key(seed), **kwargs)`, cached under ``directory``.

    The file name encodes a hash of the settings (system fields, seed, options, dtype, package
    version). A cache that is missing, made with other settings, truncated or failing its
    SHA-256 checksums is regenerated and rewritten (atomically), never silently used.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    dtype = jnp.zeros(0, kwargs.get("dtype")).dtype
    meta = _metadata(system, seed, {k: v for k, v in kwargs.items() if k != "dtype"}, dtype)
    tag = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{system.name}-seed{seed}-{tag}"
    npz_path, json_path = directory / f"{stem}.npz", directory / f"{stem}.json"
    cached = _load(npz_path, json_path, meta)
    if cached is not None:
        return cached
    data = generate_dataset(system, jax.random.key(seed), **kwargs)
    arrays = {
        f"{split}/{f}": np.asarray(getattr(getattr(data, split), f))
        for split in _SPLITS
        for f in _FIELDS
    }
    header = {"metadata": meta, "sha256": {k: _digest(v) for k, v in arrays.items()}}

    def save_npz(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    _atomic_write(npz_path, save_npz)
    _atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(header, indent=1)))
    return data
