"""Meta-learn one benchmark system with every method and score it like the paper.

    python -m experiments.run --system pendulum                 # quick preset, all 8 methods
    python -m experiments.run --system kepler --preset paper --seeds 0,1,2
    python -m experiments.run --system dno --methods ro,mr --shots 5 --out runs/dno-k5
    python -m experiments.run --system duffing --regime ours     # jaxmeta's own ranges
    python -m experiments.run --system mymodule:MySystem         # a system of your own

The task regime (``--regime``, `experiments.regimes`; default ``paper-like``, calibrated on
Scratch by ``experiments.calibrate``) sets the system's ranges; ``--set`` overrides on top.

Writes, under ``--out``: ``results.json`` (config, data digest, versions, device, per-method
mean ± std of every metric, and under ``figures`` the (method, seed) its figures show),
``table.md`` (our numbers beside the paper's), figures, and per-(method, seed) metrics,
trained states, adapted models and checkpoints (`experiments.store`), so that the same
command started again resumes where it stopped (it says so: "resuming ro seed 0 from epoch
100 to 150"). Figures are drawn from the files on disk; where the trained states are missing
(a clone of results), the figures are kept as last drawn and a line says so.

Stored work is reused only by the configuration that trained it: a (method, seed) trained
with other flags or other data is refused, naming the fields that differ; ``--restart``
discards it (and a corrupt checkpoint) and starts that (method, seed) over. A larger
``--epochs`` extends a finished run from its last checkpoint (the result equals an
uninterrupted run); a test-time setting (``--latent-init``, ``--converged``) re-scores the
trained states and trains nothing. One process at a time holds an ``--out``.

Several processes (hosts): ``--coordinator HOST:PORT --num-processes N --process-id I`` on
each, the same command otherwise and an ``--out`` every process reads; the training functions
are sharded over the devices of all processes (`jax.distributed`), process 0 writes.

Exit status: 0 when every method finished; 2 for a bad flag or stale, corrupt or locked
stored work (a one-line ``error: ...``, nothing more trained); 3 when some method diverged
(a non-finite loss: the other methods go on, the results and table are written, the table
says ``diverged``); 1 for a crash (a traceback, e.g. a lost process of a distributed run).
"""

import sys
from importlib.metadata import version

import jax
import numpy as np

from jaxmeta import io

from . import config as run_config, pipeline, report, scoring, store
from .config import RunConfig

# Exit statuses (see the module docstring).
EXIT_ERROR, EXIT_DIVERGED = 2, 3
# What a run reports as one line `error: ...` and `EXIT_ERROR`, not a traceback: the user's
# flags and the stored work they point at. Any other exception is a crash (exit status 1).
USER_ERRORS = (pipeline.FlagError, store.StaleRunError, store.RunLockedError,
               io.CheckpointError)  # fmt: skip


def user_error(err: Exception) -> int:
    """Print ``err`` as one line ``error: ...`` on stderr; returns `EXIT_ERROR`."""
    hint = " Use --restart to discard it." if isinstance(err, io.CheckpointError) else ""
    print(f"error: {err}{hint}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def parse_args(argv=None) -> RunConfig:
    """Command line -> `experiments.config.RunConfig`."""
    return run_config.parse_args(argv, doc=__doc__)


def start_processes(config: RunConfig) -> None:
    """Join the `jax.distributed` runtime of ``--coordinator`` (before anything touches the
    devices). CPU processes reach each other through Gloo (JAX 0.10's default for
    ``jax_cpu_collectives_implementation``, set explicitly here)."""
    if config.coordinator is None:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(config.coordinator, num_processes=config.num_processes,
                               process_id=config.process_id)  # fmt: skip


def run_methods(config: RunConfig, prep: pipeline.Prepared, callback=None) -> dict:
    """Every method of the run: method -> ``{seed: record}``, or its divergence message."""
    done = {}
    for name in config.methods:
        try:
            records = scoring.run_method(config, prep, name, callback=callback)
        except FloatingPointError as err:  # one diverging method must not sink the others
            pipeline.say(f"{name:8s} diverged: {err}")
            done[name] = str(err)
            continue
        done[name] = dict(zip(config.seeds, records))
        errors = [r["trajectory_error"] for r in records]
        pipeline.say(f"{name:8s} trajectory error {np.mean(errors):.4f} ± {np.std(errors):.4f}")
    return done


def main(argv=None, *, callback=None) -> int:
    """The command line. ``callback`` is passed to every `jaxmeta.meta.fit` of the run (a
    hook for monitoring, and for tests that stop a run at a given point)."""
    config = parse_args(argv)
    start_processes(config)
    pipeline.say(f"jaxmeta {version('jaxmeta')} | jax {jax.__version__} | {jax.devices()}")
    try:
        pipeline.build_system(config)  # a bad --set: refused before anything is written
        for name in config.methods:  # the flags of stored work: before any data is made
            store.check(config, name)
        with store.hold(config.out):
            prep = pipeline.prepare(config)
            for name in config.methods:  # and the data: before anything is trained
                store.check(config, name, prep.data)
            done = run_methods(config, prep, callback)
            text = report.write_run(config, prep, done)
    except USER_ERRORS as err:  # bad flags, stale, corrupt or locked stored work
        return user_error(err)
    if pipeline.lead():
        print(text)
    return EXIT_DIVERGED if any(isinstance(r, str) for r in done.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
