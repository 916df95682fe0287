"""Disk cache of datasets: ``.npz`` arrays plus a JSON header with checksums."""

import dataclasses
import hashlib
import json
import lzma
import os
import tempfile
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..systems import AbstractSystem
from ._dataset import _SPLITS, Dataset, generate_dataset
from ._taskset import TaskSet

_FIELDS = tuple(f.name for f in dataclasses.fields(TaskSet) if not f.metadata.get("static"))
_KEYS = frozenset(f"{split}/{f}" for split in _SPLITS for f in _FIELDS)
# Options that do not change the data, so not part of a cache's identity.
_NOT_SETTINGS = ("dtype", "max_bytes")
# What reading a damaged cache raises, each seen on a damaged file (tests/test_data.py): the zip
# structure truncated or overwritten (BadZipFile, EOFError, OSError: a negative seek), a bad
# compression method or flag in the central directory (NotImplementedError, RuntimeError:
# "encrypted", OSError from bz2, zlib.error, lzma.LZMAError), a garbled .npy header
# (ValueError, tokenize.TokenError), a shape grown huge (MemoryError), a missing member
# (KeyError), a JSON header of the wrong shape (TypeError), arrays that fail `TaskSet`'s checks
# (ValueError). The whole-file checksum catches damage before parsing; these are the backstop.
_DAMAGE = (
    OSError, EOFError, ValueError, KeyError, TypeError, NotImplementedError, RuntimeError,
    MemoryError, zipfile.BadZipFile, tokenize.TokenError, zlib.error, lzma.LZMAError,
)  # fmt: skip


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


def _file_digest(fh) -> str:
    sha = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        sha.update(chunk)
    return sha.hexdigest()


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
        if not isinstance(header, dict):
            raise TypeError(f"the header is a {type(header).__name__}, not an object")
        if header.get("metadata") != meta:
            warnings.warn(f"Dataset cache {json_path} was made with other settings; regenerating.")
            return None
        with open(npz_path, "rb") as fh:
            # The bytes parsed are the bytes hashed: one open file.
            if _file_digest(fh) != header.get("file_sha256"):
                warnings.warn(f"Dataset cache {npz_path} fails its checksums; regenerating.")
                return None
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        sums = header["sha256"]
        if (
            set(arrays) != _KEYS
            or set(sums) != _KEYS
            or any(_digest(arr) != sums[name] for name, arr in arrays.items())
        ):
            warnings.warn(f"Dataset cache {npz_path} fails its checksums; regenerating.")
            return None
        sets = [
            TaskSet(**{f: jnp.asarray(arrays[f"{split}/{f}"]) for f in _FIELDS}, name=split)
            for split in _SPLITS
        ]
    except _DAMAGE as err:
        warnings.warn(f"Dataset cache {npz_path} is unreadable ({err!r}); regenerating.")
        return None
    return Dataset(*sets)


def load_or_generate(
    system: AbstractSystem, seed: int, directory: str | os.PathLike, **kwargs
) -> Dataset:
    """`generate_dataset(system, jax.random.key(seed), **kwargs)`, cached under ``directory``.

    The file name encodes a hash of the settings (system fields, seed, options, dtype, package
    version; not `max_bytes`). A cache that is missing, made with other settings, damaged in
    any byte (the header holds the SHA-256 of the whole file and of every array) or unreadable
    is regenerated and rewritten (atomically, the arrays before the header), never used.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int, got {seed!r}.")
    dtype = jnp.zeros(0, kwargs.get("dtype")).dtype
    settings = {k: v for k, v in kwargs.items() if k not in _NOT_SETTINGS}
    meta = _metadata(system, seed, settings, dtype)
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
        with open(tmp, "rb") as fh:
            header["file_sha256"] = _file_digest(fh)

    # Arrays first: a crash between the two writes leaves a header that does not vouch for them.
    _atomic_write(npz_path, save_npz)
    _atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(header, indent=1)))
    return data
