"""Checkpoints: a JSON header (config, progress, SHA-256) beside `eqx.tree_serialise_leaves`,
and `fingerprint`, the identity of a configuration object that a header records."""

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import equinox as eqx
import numpy as np
from jaxtyping import PyTree

FORMAT = 1

#: Field metadata key: a dataclass field whose metadata maps it to True is left out of
#: `fingerprint` while it holds its default, so adding such a field to a learner keeps the
#: digests (and so the checkpoints) written before the field existed; any other value of it
#: is described like every other field.
OMIT_DEFAULT = "fingerprint_omit_default"


def _omitted(obj, field: dataclasses.Field) -> bool:
    if not field.metadata.get(OMIT_DEFAULT, False) or field.default is dataclasses.MISSING:
        return False
    value = getattr(obj, field.name)
    return type(value) is type(field.default) and value == field.default


def _describe(obj) -> str:
    """A canonical text of ``obj`` built from its fields, independent of any pretty-printer."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # eqx.Modules included
        fields = (f"{f.name}={_describe(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
                  if not _omitted(obj, f))  # fmt: skip
        return f"{type(obj).__qualname__}({', '.join(fields)})"
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
        return repr(obj)
    if isinstance(obj, np.generic):
        return f"{obj.dtype.name}:{obj.item()!r}"
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # jax/numpy arrays, ShapeDtypeStructs
        return f"array[{obj.dtype}]{tuple(obj.shape)}"
    if isinstance(obj, list | tuple):
        return f"{type(obj).__qualname__}[{', '.join(map(_describe, obj))}]"
    if isinstance(obj, dict):
        items = sorted((_describe(k), _describe(v)) for k, v in obj.items())
        return "dict{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if callable(obj) and hasattr(obj, "__qualname__"):  # functions, classes
        return f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"
    return f"{type(obj).__qualname__}:{obj!r}"


def fingerprint(obj) -> str:
    """SHA-256 of a canonical description of ``obj`` (hex), for checkpoint headers.

    Dataclasses (``eqx.Module``s included) are described by their class's qualified name and
    every field (`dataclasses.fields`, static ones too), recursively; Python scalars and
    strings by their `repr`; arrays by dtype and shape only. No pretty-printer is involved, so
    the digest is stable across Equinox versions: equal configurations give equal digests,
    and changing any hyper-parameter changes it. A field marked with `OMIT_DEFAULT` in its
    metadata is described only when it differs from its default.
    """
    return hashlib.sha256(_describe(obj).encode()).hexdigest()


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(stem: str | os.PathLike, tree: PyTree, header: dict) -> None:
    """Write ``stem.eqx`` (the leaves of ``tree``) and ``stem.json`` (``header`` plus the
    payload's SHA-256), each atomically; the JSON goes last, so a reader never sees a header
    whose payload is missing."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    payload = buf.getvalue()
    full = {"format": FORMAT, **header, "sha256": hashlib.sha256(payload).hexdigest()}
    _atomic_write_bytes(stem.with_suffix(".eqx"), payload)
    _atomic_write_bytes(stem.with_suffix(".json"), json.dumps(full, indent=1).encode())


def checkpoint_exists(stem: str | os.PathLike) -> bool:
    stem = Path(stem)
    return stem.with_suffix(".json").exists() or stem.with_suffix(".eqx").exists()


def load_checkpoint(stem: str | os.PathLike, like: PyTree, *, config: dict) -> tuple[PyTree, dict]:
    """Load a checkpoint written by `save_checkpoint` into the structure of ``like``.

    Raises `ValueError` (and loads nothing) if the header is missing or unreadable, was written
    for another ``config``, or the payload is truncated or fails its checksum.
    """
    stem = Path(stem)
    json_path, eqx_path = stem.with_suffix(".json"), stem.with_suffix(".eqx")
    try:
        header = json.loads(json_path.read_text())
        payload = eqx_path.read_bytes()
    except (OSError, ValueError) as err:
        raise ValueError(
            f"Checkpoint {stem} is missing or unreadable ({err!r}); refusing it."
        ) from err
    if header.get("format") != FORMAT or header.get("config") != config:
        raise ValueError(
            f"Checkpoint {stem} was written for another configuration; refusing to load it. "
            f"Use another output directory, or delete it to start afresh.\n"
            f"  checkpoint: {header.get('config')!r}\n  this run:   {config!r}"
        )
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise ValueError(
            f"Checkpoint {eqx_path} is truncated or corrupt (SHA-256 mismatch); refusing it."
        )
    try:
        tree = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as err:  # noqa: BLE001 - any failure here means an unusable payload
        raise ValueError(f"Checkpoint {eqx_path} does not match this model ({err!r}).") from err
    return tree, header
