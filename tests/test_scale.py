"""Seeds as a batch axis (`fit_seeds`) and the task axis sharded over devices."""

import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import numpy as np
import pytest
from _helpers import LEARNER, leaves as _leaves, make_model, small_dataset as _dataset

from jaxmeta import data, meta


@pytest.fixture(scope="module")
def dataset():
    return _dataset()


def _assert_close(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_vmapped_seeds_equal_separate_seeds(dataset, tmp_path):
    keys = [jax.random.key(1), jax.random.key(2)]
    kw = dict(epochs=4, val_every=2, progress=False)
    together = meta.fit_seeds(LEARNER, make_model, dataset, keys=keys, **kw)
    assert len(together) == 2
    for result, key in zip(together, keys):
        alone = meta.fit(LEARNER, make_model, dataset, key=key, **kw)
        _assert_close(result.state, alone.state)
        _assert_close(result.best_state, alone.best_state)
        assert result.best_epoch == alone.best_epoch
        np.testing.assert_array_equal(result.history.val_epoch, alone.history.val_epoch)
        for name in ("train_loss", "val_error"):
            got, want = getattr(result.history, name), getattr(alone.history, name)
            np.testing.assert_allclose(got, want, rtol=1e-5)
    # Resuming the stacked checkpoint continues the same runs.
    ckpt = dict(keys=keys, val_every=2, progress=False, checkpoint_dir=tmp_path)
    meta.fit_seeds(LEARNER, make_model, dataset, epochs=2, **ckpt)
    resumed = meta.fit_seeds(LEARNER, make_model, dataset, epochs=4, **ckpt)
    for a, b in zip(resumed, together):
        _assert_close(a.state, b.state)
        np.testing.assert_array_equal(a.history.val_epoch, b.history.val_epoch)
    # The NaN guard names the seed.
    bad = eqx.tree_at(lambda t: t.dxs, dataset.train, dataset.train.dxs * np.nan)
    poisoned = data.Dataset(bad, dataset.val, dataset.test)
    with pytest.raises(FloatingPointError, match=r"epoch 0, meta-step 0 \(seed 0\)"):
        meta.fit_seeds(LEARNER, make_model, poisoned, epochs=2, keys=keys, progress=False)


def _assert_equal(a, b):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_fit_is_fit_seeds_with_one_key(dataset, tmp_path):
    """One training loop: `fit(key=k)` is `fit_seeds(keys=[k])[0]`, bitwise, checkpoints
    included (a run started by `fit` resumes under `fit_seeds`)."""
    key, kw = jax.random.key(3), dict(val_every=2, progress=False)
    alone = meta.fit(LEARNER, make_model, dataset, epochs=4, key=key, **kw)
    (together,) = meta.fit_seeds(LEARNER, make_model, dataset, epochs=4, keys=[key], **kw)
    meta.fit(LEARNER, make_model, dataset, epochs=2, key=key, checkpoint_dir=tmp_path, **kw)
    (resumed,) = meta.fit_seeds(
        LEARNER, make_model, dataset, epochs=4, keys=[key], checkpoint_dir=tmp_path, **kw
    )
    for other in (together, resumed):
        _assert_equal(alone.state, other.state)
        _assert_equal(alone.best_state, other.best_state)
        assert other.history == alone.history and other.best_epoch == alone.best_epoch
    assert alone.history.val_epoch.tolist() == [2, 4]


_SHARDED = """
import json, jax, numpy as np, equinox as eqx
from tests._helpers import LEARNER, leaves as _leaves, make_model, small_dataset as _dataset
from jaxmeta import data, meta
ds = _dataset(12, (2 / 3, 1 / 6, 1 / 6))  # 8 training functions
kw = dict(epochs=4, val_every=2, progress=False)
out = {"devices": jax.device_count(), "train": ds.train.num_functions}
for devices in (None, 4):
    r = meta.fit(LEARNER, make_model, ds, key=jax.random.key(1), devices=devices, **kw)
    out[str(devices)] = {"fit": [x.tolist() for x in _leaves(r.state)], "history": r.history.to_dict(),
                         "latents": str(getattr(r.state.latents.sharding, "spec", None))}
(s,) = meta.fit_seeds(LEARNER, make_model, ds, keys=[jax.random.key(1)], devices=4, **kw)
out["seeds"] = [x.tolist() for x in _leaves(s.state)]
try:
    meta.fit(LEARNER, make_model, ds, key=jax.random.key(1), devices=3, **kw)
except ValueError as err:
    out["error"] = str(err)
print(json.dumps(out))
"""


def test_sharded_equals_unsharded():
    """4 forced host devices: sharding the task axis changes nothing but the layout."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _SHARDED], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and out["train"] == 8
    plain, sharded = out["None"], out["4"]
    assert sharded["latents"] == "P('tasks',)"
    for a, b, c in zip(plain["fit"], sharded["fit"], out["seeds"], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-5, atol=1e-6)
    for name in ("train_loss", "val_error"):
        np.testing.assert_allclose(plain["history"][name], sharded["history"][name], rtol=1e-5)
    assert "`devices`=3 does not divide the F=8 training functions" in out["error"]


def test_bad_devices(dataset):
    assert dataset.train.num_functions == 6
    kw = dict(epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"`devices`=4 does not divide the F=6 training"):
        meta.fit(LEARNER, make_model, dataset, key=jax.random.key(0), devices=4, **kw)
    n = jax.device_count()
    too_many = 6 if n < 6 else 6 * n  # divides F=6 (when possible), exceeds the devices
    with pytest.raises(
        ValueError, match=rf"`devices`={too_many} (exceeds the {n} available|does not divide)"
    ):
        meta.fit_seeds(
            LEARNER, make_model, dataset, keys=[jax.random.key(0)], devices=too_many, **kw
        )
    with pytest.raises(ValueError, match="devices=0"):
        meta.fit(LEARNER, make_model, dataset, key=jax.random.key(0), devices=0, **kw)
    with pytest.raises(TypeError, match="`keys` must be"):
        meta.fit_seeds(LEARNER, make_model, dataset, keys=[], **kw)
    with pytest.raises(TypeError, match="typed PRNG keys"):
        meta.fit_seeds(LEARNER, make_model, dataset, keys=[0, 1], **kw)


def test_repeated_keys_are_refused(dataset):
    """Two seeds with one key would be one seed counted twice in every mean ± std."""
    kw = dict(epochs=1, progress=False)
    keys = [jax.random.key(1), jax.random.key(2), jax.random.key(1)]
    with pytest.raises(ValueError, match=r"`keys` must be distinct.*keys\[2\] equals keys\[0\]"):
        meta.fit_seeds(LEARNER, make_model, dataset, keys=keys, **kw)
    stacked = jax.vmap(jax.random.key)(jax.numpy.array([4, 5, 5]))
    with pytest.raises(ValueError, match=r"keys\[2\] equals keys\[1\]"):
        meta.fit_seeds(LEARNER, make_model, dataset, keys=stacked, **kw)
    assert len(meta.fit_seeds(LEARNER, make_model, dataset, keys=stacked[:2], **kw)) == 2


def test_largest_divisor():
    assert meta.largest_divisor(70, 8) == 7
    assert meta.largest_divisor(70, 8, multiple_of=2) == 2
    assert meta.largest_divisor(12, 8, multiple_of=2) == 6
    with pytest.raises(ValueError, match="multiple of `multiple_of`=4 divides the 70"):
        meta.largest_divisor(70, 8, multiple_of=4)
