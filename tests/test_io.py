"""Checkpoints (`jaxmeta.io`): a save killed at any point loses nothing, a reader follows the
header, and a checkpoint of another configuration or dataset is refused by name."""

import os
import tempfile

import jax.numpy as jnp
import numpy as np
import pytest

from jaxmeta import io

CONFIG = {"learner": "abc", "data": "123"}
# The file-system calls a save makes, each a point where a kill can land.
STEPS = ("mkstemp", "write", "fsync", "close", "replace", "remove")


class Killed(BaseException):
    """The process dies: not an `Exception`, so no handler of the code under test runs."""


class _Dying:
    """``os`` (and ``tempfile.mkstemp``) whose ``kill_at``-th call of `STEPS` kills the
    process: that call and every later one raise `Killed`."""

    def __init__(self, kill_at: int):
        self.calls, self.kill_at = 0, kill_at

    def _step(self, real):
        def call(*args, **kwargs):
            self.calls += 1
            if self.calls > self.kill_at:
                raise Killed
            return real(*args, **kwargs)

        return call

    def __getattr__(self, name):
        real = getattr(os, name)
        return self._step(real) if name in STEPS else real


def _save_dying(monkeypatch, kill_at, stem, tree, header) -> int:
    """Save under a process that dies at call ``kill_at``; the number of calls it made."""
    dying = _Dying(kill_at)
    with monkeypatch.context() as m:
        m.setattr(io, "os", dying)
        m.setattr(io.tempfile, "mkstemp", dying._step(tempfile.mkstemp))
        try:
            io.save_checkpoint(stem, tree, header)
        except Killed:
            pass
    return dying.calls


def _tree(value):
    return {"w": jnp.full((3, 4), value), "b": jnp.arange(5.0) * value}


def _same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_a_save_killed_at_any_point_leaves_the_old_or_the_new_checkpoint(tmp_path, monkeypatch):
    old, new = _tree(1.0), _tree(2.0)
    probe = tmp_path / "probe" / "last"
    io.save_checkpoint(probe, old, {"config": CONFIG})
    steps = _save_dying(monkeypatch, 10**9, probe, new, {"config": CONFIG})
    assert steps == 11  # two atomic writes (4 calls and a rename each), one old payload removed
    outcomes = set()
    for kill_at in range(steps + 1):
        stem = tmp_path / f"kill{kill_at}" / "last"
        io.save_checkpoint(stem, old, {"config": CONFIG, "epoch": 1})
        _save_dying(monkeypatch, kill_at, stem, new, {"config": CONFIG, "epoch": 2})
        tree, header = io.load_checkpoint(stem, old, config=CONFIG)  # never raises
        assert _same(tree, old if header["epoch"] == 1 else new), kill_at
        outcomes.add(header["epoch"])
        # The next save removes whatever the killed one left behind.
        io.save_checkpoint(stem, new, {"config": CONFIG, "epoch": 3})
        names = sorted(p.name for p in stem.parent.iterdir())
        assert len(names) == 2 and names[1] == "last.json", (kill_at, names)
        assert io.load_checkpoint(stem, old, config=CONFIG)[1]["epoch"] == 3
    assert outcomes == {1, 2}  # early kills keep the old checkpoint, late ones the new


def test_a_first_save_killed_early_leaves_no_checkpoint(tmp_path, monkeypatch):
    stem = tmp_path / "last"
    _save_dying(monkeypatch, 3, stem, _tree(1.0), {"config": CONFIG})  # inside the payload
    assert not io.checkpoint_exists(stem)
    io.save_checkpoint(stem, _tree(1.0), {"config": CONFIG})
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".eqx", ".json"]


def test_refusals_name_what_differs(tmp_path):
    stem = tmp_path / "last"
    io.save_checkpoint(stem, _tree(1.0), {"config": CONFIG})
    with pytest.raises(io.CheckpointError, match=r"another configuration \(differs in: data\)"):
        io.load_checkpoint(stem, _tree(0.0), config={**CONFIG, "data": "456"})
    with pytest.raises(ValueError, match="differs in: data, learner"):
        io.load_checkpoint(stem, _tree(0.0), config={"learner": "x", "data": "y"})
    header = stem.with_suffix(".json")
    payload = tmp_path / io.load_checkpoint(stem, _tree(0.0), config=CONFIG)[1]["payload"]
    payload.write_bytes(payload.read_bytes()[:50])
    with pytest.raises(io.CheckpointError, match="truncated or corrupt"):
        io.load_checkpoint(stem, _tree(0.0), config=CONFIG)
    payload.unlink()
    with pytest.raises(io.CheckpointError, match="payload last.[0-9a-f]{16}.eqx is missing"):
        io.load_checkpoint(stem, _tree(0.0), config=CONFIG)
    header.write_text('{"format": 1, "config": {}}')
    with pytest.raises(io.CheckpointError, match="has format 1, not 2"):
        io.load_checkpoint(stem, _tree(0.0), config=CONFIG)
    header.write_text("{not json")
    with pytest.raises(io.CheckpointError, match="missing or unreadable"):
        io.load_checkpoint(stem, _tree(0.0), config=CONFIG)


def test_data_digest_sees_values_not_only_shapes():
    a = {"xs": jnp.zeros((2, 3)), "mu": jnp.ones(2)}
    assert io.data_digest(a) == io.data_digest({"xs": jnp.zeros((2, 3)), "mu": jnp.ones(2)})
    assert io.data_digest(a) != io.data_digest({**a, "mu": jnp.array([1.0, 1.5])})
    assert io.data_digest(a) != io.data_digest({**a, "xs": jnp.zeros((3, 2))})  # same bytes
    assert io.data_digest(a) != io.data_digest({**a, "xs": jnp.zeros((2, 3), jnp.int32)})
