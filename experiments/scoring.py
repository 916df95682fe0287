"""Scoring trained states like the paper (and beyond it), and the loop that trains, scores or
re-scores every seed of a method: `run_method`."""

import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from jaxmeta import meta, metrics

from . import store
from .config import RunConfig
from .pipeline import Prepared, lead, load_state, make_learner, say, train, training_seconds
from .registry import INNER_LR

#: The converged test-time protocol of ``--converged`` (`jaxmeta.meta.Converged`'s defaults).
CONVERGED = meta.Converged()
#: The training record a score keeps (re-scoring carries it over from ``metrics.json``).
TRAINED = ("train_seconds", "best_epoch", "history", "unit_seconds", "unit_seconds_earlier")


def adaptation_key(seed: int):
    """The key of a (method, seed)'s test-time adaptation: every score of it uses this one."""
    return jax.random.key(10_000 + seed)


def scores(system, models, test, mesh) -> dict:
    """`jaxmeta.metrics.evaluate`'s per-function arrays as a record: means, the worst drift
    and entropy rate."""
    values = jax.device_get(metrics.evaluate(system, models, test, mesh))
    record = {k: float(np.mean(v)) for k, v in values.items() if k not in ("min_entropy_rate",)}
    if "min_entropy_rate" in values:
        record["min_entropy_rate"] = float(np.min(values["min_entropy_rate"]))
        record["max_degeneracy"] = float(np.max(values["max_degeneracy"]))
    record["max_energy_drift"] = float(np.max(values["energy_drift"]))
    if "ssim" in record:  # SSIM that counts a negative term against the match
        record["ssim_definition"] = "signed"
    return record


def identification(system, state: meta.MetaState, dataset, test_latents) -> dict:
    """How well an affine map from latents to μ, fitted on the training functions, reads off
    the test functions' parameters from their adapted latents: R² per parameter (``mu_r2`` its
    mean) and RMSE per parameter."""
    latent_map = meta.fit_latent_map(state.latents, dataset.train.mu)
    r2 = np.asarray(latent_map.r2(test_latents, dataset.test.mu)).tolist()
    rmse = np.asarray(latent_map.rmse(test_latents, dataset.test.mu)).tolist()
    return {"mu_r2": float(np.mean(r2)), "mu_r2_params": dict(zip(system.param_names, r2)),
            "mu_rmse_params": dict(zip(system.param_names, rmse))}  # fmt: skip


def latent_moves(start, adapted, reach: float) -> dict:
    """How far test-time adaptation moved the latents from ``start`` (F, d): the median over
    functions of the largest coordinate move, and the fractions of coordinates moved by at
    least 90% of ``reach`` (at the paper protocol's bound) and by more than ``reach``."""
    move = np.abs(np.asarray(adapted) - np.asarray(start))
    return {"median_max_move": float(np.median(move.max(axis=1))),
            "at_reach": float(np.mean(move >= 0.9 * reach)),
            "beyond_reach": float(np.mean(move > reach))}  # fmt: skip


def _start(learner, state, shape):
    return np.broadcast_to(np.asarray(learner.adapt_start(state, key=None)), shape)


def latent_statistics(learner, state: meta.MetaState, adapted, reach: float) -> dict:
    """The training latents' spread (median distance from their mean; mean per-coordinate
    std) and how far the paper protocol moved the test latents (`latent_moves`; ``reach``:
    the most ``adapt_steps`` Adam steps move a coordinate, steps × learning rate)."""
    z = np.asarray(state.latents)
    return {"train_spread": float(np.median(np.linalg.norm(z - z.mean(0), axis=1))),
            "train_std": float(np.mean(z.std(0))), "reach": reach,
            "paper": latent_moves(_start(learner, state, adapted.shape), adapted, reach)}  # fmt: skip


def converged_scores(prep: Prepared, learner, state, seed: int, reach: float) -> dict:
    """The converged protocol (`CONVERGED`) on the test functions: its scores, each
    function's support loss after it and after the paper's steps, the steps and seconds it
    used, and (modulations) how far it moved the latents."""
    test = prep.dataset.test
    fit = meta.adapt_converged(learner, state, test, CONVERGED, key=adaptation_key(seed))
    record = scores(prep.system, fit.models, test, prep.mesh)
    per = lambda a: np.asarray(a).tolist()
    record.update(support_loss=per(fit.loss), paper_support_loss=per(fit.paper_loss),
                  steps=per(fit.steps), seconds=per(fit.seconds),
                  converged=per(fit.converged), compile_seconds=fit.compile_seconds)  # fmt: skip
    if fit.latents is not None:
        start = _start(learner, state, fit.latents.shape)
        record["latents"] = latent_moves(start, fit.latents, reach)
    return record


def score(config: RunConfig, prep: Prepared, name: str, seed: int, state, trained: dict) -> dict:
    """Adapt one trained (method, seed) to the test functions, score it, and write
    ``metrics.json`` (``trained``, the training's own record: ``train_seconds``,
    ``best_epoch``, ``history``; and the scoring identity under ``"config"``),
    ``best_state.eqx`` and ``adapted.eqx`` (process 0). Returns the record."""
    dataset = prep.dataset
    learner = make_learner(name, config, prep.loss_scale)
    adapted = meta.adapt(learner, state, dataset.test, adaptation_key(seed))
    record = scores(prep.system, adapted.models, dataset.test, prep.mesh)
    record.update(trained)
    if adapted.latents is not None and dataset.train.num_functions > adapted.latents.shape[1]:
        record.update(identification(prep.system, state, dataset, adapted.latents))
    reach = learner.adapt_steps * INNER_LR[name]
    if adapted.latents is not None:
        record["latents"] = latent_statistics(learner, state, adapted.latents, reach)
    if config.converged:
        record["converged"] = converged_scores(prep, learner, state, seed, reach)
    identity = store.identity(config, name, prep.data, scoring=True)
    record["config"] = {**identity, "seed": seed}
    record = store.json_roundtrip(record)
    if lead():
        eqx.tree_serialise_leaves(store.state_path(config, name, seed), state)
        eqx.tree_serialise_leaves(store.adapted_path(config, name, seed), adapted.models)
        store.write_json(store.metrics_path(config, name, seed), record)  # marks it done
        store.finish(config, name, seed)
    return record


def rescore(config: RunConfig, prep: Prepared, name: str, seed: int, record: dict) -> dict:
    """Score a finished (method, seed) again under this run's test-time settings, from its
    trained state on disk; nothing is trained."""
    was = {k: record["config"].get(k, store.TEST_TIME_DEFAULTS[k]) for k in store.TEST_TIME}
    now = {k: getattr(config, k) for k in store.TEST_TIME}
    changed = {k: (was[k], now[k]) for k in now if now[k] != was[k]}
    if not store.state_path(config, name, seed).is_file():
        raise store.StaleRunError(
            f"{name} seed {seed} in {config.out} was scored with "
            + ", ".join(f"{k}={a!r}" for k, (a, _) in changed.items())
            + f"; re-scoring it needs its trained state {store.state_path(config, name, seed)},"
            " which is not on disk (trained states are not in a clone of the results). Use "
            "--restart to train it again, or another --out."
        )  # fmt: skip
    say(f"{name:8s} re-scoring seed {seed} from its trained state ("
        + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        + "); nothing is trained")  # fmt: skip
    state = load_state(config, prep, name, seed)
    return score(config, prep, name, seed, state, {k: record[k] for k in TRAINED if k in record})


def run_method(config: RunConfig, prep: Prepared, name: str, *,
               callback: Callable | None = None) -> list[dict]:  # fmt: skip
    """Train and score the seeds of ``name`` that are not finished (or finished with fewer
    epochs: extended from their checkpoints), re-score those scored with other test-time
    settings; returns every seed's record. Stored work of another training configuration is
    refused first (`store.check`), or deleted with ``--restart``. ``callback`` goes to
    `jaxmeta.meta.fit`."""
    store.check(config, name, prep.data)
    pending = store.pending_seeds(config, name)
    records = {s: r for s, r in store.finished_records(config, name).items() if s not in pending}
    stale = [s for s, r in records.items() if not store.same_scoring(r["config"], config)]
    if len(records) > len(stale):
        say(
            f"{name:8s} reusing {len(records) - len(stale)} finished seed(s) in {config.out / name}"
        )
    for seed in stale:
        records[seed] = rescore(config, prep, name, seed, records[seed])
    if pending:
        store.record(config, name, pending, prep.data)
        for seed, (result, seconds) in train(
            config, prep, name, pending, callback=callback
        ).items():
            done = {"train_seconds": seconds, "best_epoch": result.best_epoch,
                    "history": result.history.to_dict()}  # fmt: skip
            records[seed] = score(config, prep, name, seed, result.best_state, done)
    return [records[s] for s in config.seeds]


def machine() -> dict:
    """The machine this process computes on, as a unit's record keeps it: JAX's version, its
    backend and device kind, the CPU's model and (on Linux) its vector instruction sets. XLA
    compiles for the host CPU, so float32 results can differ in the last bit between CPUs."""
    cpu, features = platform.processor() or platform.machine(), []
    info = Path("/proc/cpuinfo")
    if info.exists():
        text = info.read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
        cpu = model.group(1).strip() if model else cpu
        if flags:
            vector = re.compile(r"(avx|amx|fma|sse4|asimd|sve)")
            features = sorted({f for f in flags.group(1).split() if vector.match(f)})
    device = jax.devices()[0].device_kind
    return {"jax": jax.__version__, "backend": jax.default_backend(), "device": device,
            "cpu": cpu, "cpu_features": features}  # fmt: skip


def run_unit(config: RunConfig, prep: Prepared, name: str, *, started: float | None = None,
             callback: Callable | None = None) -> list[dict]:  # fmt: skip
    """`run_method` for ``config.seeds`` as one unit, its wall time stamped into each seed's
    ``metrics.json``: ``unit_seconds`` is this process's since ``started`` (a
    `time.perf_counter` reading; default: this call) plus the training seconds of the
    processes that ran the unit before, ``unit_seconds_earlier`` (None when unknown:
    `pipeline.training_seconds`), and ``machine``, the machine of this process, the last to
    train or score the unit (`machine`). A divergence is written beside each seed
    (`store.diverged_path`) and raised again. Returns the seeds' records as stored."""
    tic = time.perf_counter() if started is None else started
    earlier = training_seconds(store.checkpoint_dir(config, name, config.seeds))
    try:
        run_method(config, prep, name, callback=callback)
    except FloatingPointError as err:
        for seed in config.seeds:
            store.write_text(store.diverged_path(config, name, seed), str(err))
        raise
    wall = time.perf_counter() - tic + (earlier or 0.0)
    records, here = [], machine()
    for seed in config.seeds:
        path = store.metrics_path(config, name, seed)
        record = store.read_json(path)
        record["unit_seconds"], record["unit_seconds_earlier"] = wall, earlier
        record["machine"] = here
        store.write_json(path, record)
        records.append(record)
    return records
