import atexit
import os
import shutil
import tempfile

import jax
import pytest

# Catch silent broadcasting and dtype promotion bugs in library code.
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


def _share_compilations() -> None:
    """One XLA compilation cache for the test session: both xdist workers and the
    subprocesses tests start (they inherit the environment) reuse each other's compiled
    programs; many tests compile the same learner, data and scoring programs at the same tiny
    sizes. A fresh directory each session (made by the first process, removed when it exits),
    so a run never reuses another run's compilations and its duration is what CI measures."""
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        path = tempfile.mkdtemp(prefix="jaxmeta-tests-xla-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))  # fmt: skip
    jax.config.update("jax_persistent_cache_min_entry_size_bytes",
                      int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))  # fmt: skip


_share_compilations()

# The tests are dominated by compiling many small programs, each run a few times: XLA's
# optimisation passes cost more than they save (the clean-clone suite on 2 cores: 14:43 ->
# 11:24). The jaxprs are the same, but float32 results may differ in their last bits from
# an optimised build, so a test compares two numbers only when one compiled program made
# both (as evaluate.own_energies does for the drift). Subprocesses inherit the setting.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
jax.config.update(
    "jax_disable_most_optimizations", os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1"
)


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def short_converged(monkeypatch):
    """``--converged`` capped at 16 solver iterations (latents) and 200 optimiser steps
    (weights), for tests of what a run records and reuses, not of how well the protocol fits
    (test_converged): after a tiny training the default caps (256, 5,000) dominate a run."""
    from experiments import scoring
    from jaxmeta import meta

    protocol = meta.Converged(max_steps=200, solver_max_steps=16)
    monkeypatch.setattr(scoring, "CONVERGED", protocol)
    return protocol
