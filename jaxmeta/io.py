"""Checkpoints: a JSON header (config, progress, SHA-256) naming a content-addressed payload of
`eqx.tree_serialise_leaves`, saved crash-safely; `fingerprint`, the identity of a
configuration object, and `data_digest`, the identity of a dataset, that a header records."""

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PyTree

FORMAT = 2


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing or unreadable, written for another
    configuration, or failing its checksum. Nothing is loaded."""


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


def _closure(fn, seen: frozenset) -> str:
    """The values a function closes over and its defaults, described (so that
    ``optax.adam(1e-3)`` and ``optax.adam(1e-2)``, closures over their rates, differ)."""
    values = []
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            values.append(None)
    values += list(getattr(fn, "__defaults__", None) or ())
    values += sorted((getattr(fn, "__kwdefaults__", None) or {}).items())
    if not values:
        return ""
    return "[" + ", ".join(_describe(v, seen | {id(fn)}) for v in values) + "]"


def _describe(obj, seen: frozenset = frozenset()) -> str:
    """A canonical text of ``obj`` built from its fields, independent of any pretty-printer."""
    if id(obj) in seen:  # a function reaching itself through its closure
        return "<recursive>"
    describe = lambda x: _describe(x, seen)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # eqx.Modules included
        fields = (f"{f.name}={describe(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
                  if not _omitted(obj, f))  # fmt: skip
        return f"{type(obj).__qualname__}({', '.join(fields)})"
    if obj is None or isinstance(obj, bool | int | float | complex | str | bytes):
        return repr(obj)
    if isinstance(obj, np.generic):
        return f"{obj.dtype.name}:{obj.item()!r}"
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):  # jax/numpy arrays, ShapeDtypeStructs
        return f"array[{obj.dtype}]{tuple(obj.shape)}"
    if isinstance(obj, list | tuple):
        return f"{type(obj).__qualname__}[{', '.join(map(describe, obj))}]"
    if isinstance(obj, dict):
        items = sorted((describe(k), describe(v)) for k, v in obj.items())
        return "dict{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if callable(obj) and hasattr(obj, "__qualname__"):  # functions, with what they close over
        return f"{getattr(obj, '__module__', '')}.{obj.__qualname__}{_closure(obj, seen)}"
    return f"{type(obj).__qualname__}:{obj!r}"


def fingerprint(obj) -> str:
    """SHA-256 of a canonical description of ``obj`` (hex), for checkpoint headers.

    Dataclasses (``eqx.Module``s included) are described by their class's qualified name and
    every field (`dataclasses.fields`, static ones too), recursively; Python scalars and
    strings by their `repr`; arrays by dtype and shape only; functions by their qualified
    name and the values they close over (an `optax.GradientTransformation` is a pair of
    closures over its hyper-parameters, so ``optax.adam(1e-3)`` and ``optax.adam(1e-2)``
    differ). No pretty-printer is involved, so
    the digest is stable across Equinox versions: equal configurations give equal digests,
    and changing any hyper-parameter changes it. A field marked with `OMIT_DEFAULT` in its
    metadata is described only when it differs from its default.
    """
    return hashlib.sha256(_describe(obj).encode()).hexdigest()


def data_digest(tree: PyTree) -> str:
    """SHA-256 (hex) over the dtype, shape and bytes of every array leaf of ``tree``, in
    `jax.tree.leaves` order: the identity of a dataset (a `jaxmeta.data.Dataset`), not just
    of its shapes. Linear in the data's size (about a millisecond per megabyte); two datasets
    of the same shapes but other values (another family, seed or ``shots``) differ."""
    sha = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        if not eqx.is_array(leaf):
            continue
        host = np.ascontiguousarray(np.asarray(leaf))
        sha.update(f"{host.dtype}{host.shape};".encode())
        sha.update(host.tobytes())
    return sha.hexdigest()


# Every file-system step of a save goes through these calls on `os` (write, fsync, close,
# replace, remove) and `tempfile.mkstemp`, so tests can kill a save between any two of them.
def _write_atomic(path: Path, payload: bytes) -> None:
    """``path`` holds ``payload`` or its old contents, never a part: a temporary file in the
    same directory, flushed to disk, then renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _payload_name(stem: Path, sha: str) -> str:
    return f"{stem.name}.{sha[:16]}.eqx"


def _strays(stem: Path, keep: str) -> list[Path]:
    """Files a save of ``stem`` leaves behind when killed: payloads the header no longer
    names (``stem.<sha>.eqx``, or the format-1 ``stem.eqx``) and temporary files."""
    prefix = stem.name + "."
    return [p for p in stem.parent.iterdir()
            if p.name != keep and p.name.startswith(prefix) and p.name.endswith((".eqx", ".tmp"))]  # fmt: skip


def save_checkpoint(stem: str | os.PathLike, tree: PyTree, header: dict) -> None:
    """Save ``tree`` under ``stem``, atomically as a whole.

    The leaves go to a content-addressed payload ``stem.<sha256[:16]>.eqx``; then the header
    ``stem.json`` (``header``, the payload's name and SHA-256) replaces the old one in one
    `os.replace`; then payloads no header names any more are deleted. A save killed at any
    point leaves the previous checkpoint or the new one readable (`load_checkpoint` follows
    the header), never a mixture; what it leaves behind the next save removes.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    payload = buf.getvalue()
    sha = hashlib.sha256(payload).hexdigest()
    name = _payload_name(stem, sha)
    full = {"format": FORMAT, **header, "payload": name, "sha256": sha}
    _write_atomic(stem.parent / name, payload)
    _write_atomic(stem.with_suffix(".json"), json.dumps(full, indent=1).encode())
    for path in _strays(stem, keep=name):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def checkpoint_exists(stem: str | os.PathLike) -> bool:
    """Whether ``stem`` has a header (a save killed before its first header left none)."""
    return Path(stem).with_suffix(".json").exists()


def _differing(stored, expected, prefix: str = "") -> list[str]:
    """The keys whose values differ, ``outer.inner`` inside nested dicts."""
    if not isinstance(stored, dict) or not isinstance(expected, dict):
        return [prefix.rstrip(".")] if prefix else sorted(expected)
    out = []
    for k in sorted(set(stored) | set(expected)):
        a, b = stored.get(k), expected.get(k)
        if a != b:
            nested = isinstance(a, dict) and isinstance(b, dict)
            out += _differing(a, b, f"{prefix}{k}.") if nested else [f"{prefix}{k}"]
    return out


def load_checkpoint(stem: str | os.PathLike, like: PyTree, *, config: dict) -> tuple[PyTree, dict]:
    """Load a checkpoint written by `save_checkpoint` into the structure of ``like``.

    Raises `CheckpointError` (a `ValueError`; nothing is loaded) if the header is missing or
    unreadable, of another format, was written for another ``config`` (the message names the
    keys of ``config`` that differ), or its payload is missing, truncated or fails its
    checksum.
    """
    stem = Path(stem)
    json_path = stem.with_suffix(".json")
    try:
        header = json.loads(json_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"Checkpoint {stem} is missing or unreadable ({err!r}); refusing it."
        ) from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise CheckpointError(
            f"Checkpoint {stem} has format {found!r}, not {FORMAT} (written by another jaxmeta "
            f"version); refusing it. Delete it, or use another directory."
        )
    if header.get("config") != config:
        differ = _differing(header.get("config"), config)
        raise CheckpointError(
            f"Checkpoint {stem} was written for another configuration (differs in: "
            f"{', '.join(differ)}); refusing to load it. Delete it, or use another directory."
        )
    eqx_path = stem.parent / str(header.get("payload"))
    try:
        payload = eqx_path.read_bytes()
    except OSError as err:
        raise CheckpointError(
            f"Checkpoint {stem}: its payload {eqx_path.name} is missing ({err!r}); refusing it."
        ) from err
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CheckpointError(
            f"Checkpoint {eqx_path} is truncated or corrupt (SHA-256 mismatch); refusing it."
        )
    try:
        tree = eqx.tree_deserialise_leaves(io.BytesIO(payload), like)
    except Exception as err:  # noqa: BLE001 - any failure here means an unusable payload
        raise CheckpointError(
            f"Checkpoint {eqx_path} does not match this model ({err!r})."
        ) from err
    return tree, header
