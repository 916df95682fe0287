"""Adapt a trained meta-model of an ``experiments.run`` directory to your own trajectories.

    python -m experiments.adapt --run runs/pendulum --method ro --data my_pendulum.npz
    python -m experiments.adapt --run runs/pendulum --method mr --seed 1 --data my.csv \\
        --ics x0.npz --steps 200 --out runs/pendulum/adapt/mine

``--data`` is an ``.npz`` with ``ts`` (T,), ``xs`` (K, T, state_dim) and optionally ``dxs``
(exact velocities; otherwise second-order finite differences, as in training) and ``mu``
(params,) if you know the true parameters; or a ``.csv`` in long form with header
``trajectory,t,<state names of the run's system>`` (pendulum: ``trajectory,t,q,p``), one row
per state. Times must be a uniform grid (equal steps to 0.1 %) of at least 3 points, shared by
every trajectory; non-uniform grids are refused, not resampled.

Modulation methods (shift, fw, ro, mr) adapt a latent with the base frozen (Algorithm 2);
MAML, Reptile and ANIL fine-tune their weights as at test time; Scratch trains a fresh model
on the same data (the reference). Writes, under ``--out`` (default
``RUN_DIR/adapt/<method>-seed<N>``): ``adapted.json`` (latent or parameter change, support
loss before/after, estimated μ from the latent, energy drift, timings, the data's sha256),
``adapted.eqx`` (the adapted model; `load_model` reads it back), ``predictions.npz``
(rollouts from the data's and ``--ics``' initial states, with their learned energies),
``portrait.png`` and ``energy.png``.
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxmeta import data, losses, meta, metrics, rollout, symplectic_rollout
from jaxmeta.systems import AbstractHamiltonianSystem

from . import pipeline, plots, run, scoring
from ._cli import unknown
from .registry import METHODS
from .userdata import DataError, read_ics, read_trajectories

#: Ratio of the data's step to the training data's outside which a warning is printed.
DT_RATIO = (0.5, 2.0)
#: An estimate of μ from a map whose R² on the run's test functions is below this is warned of.
MIN_R2 = 0.5
ENERGY_SUBSTEPS = metrics.ENERGY_SUBSTEPS


def _fail(message: str):
    """A bad flag or input file: one line ``error: ...`` and exit status 2 (as argparse)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(run.EXIT_ERROR)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.adapt", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--run", required=True, help="a finished `experiments.run` directory")
    p.add_argument(
        "--method", required=True, help=f"one of the run's methods ({', '.join(METHODS)})"
    )
    p.add_argument("--seed", type=int, default=None, help="model seed (default: the run's first)")
    p.add_argument("--data", required=True, help="trajectories: .npz (ts, xs[, dxs, mu]) or .csv")
    p.add_argument("--out", default=None, help="output directory")
    p.add_argument("--ics", default=None, help=".npz with x0 (N, state_dim): extra rollouts")
    p.add_argument("--steps", type=int, default=None,
                   help="adaptation steps (default: the run's, 100)")  # fmt: skip
    args = p.parse_args(argv)
    if args.method not in METHODS:
        p.error(unknown("--method", args.method, METHODS))
    if args.steps is not None and args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    if args.ics is not None and args.ics.lower() == "none":
        args.ics = None
    return args


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@eqx.filter_jit
def _rollouts(model, x0s, ts, hamiltonian: bool):
    """Rollouts from each of ``x0s`` (``ENERGY_SUBSTEPS`` steps per save interval, symplectic
    for Hamiltonian models), their learned energies and energy drifts."""
    if hamiltonian:
        roll = lambda x: symplectic_rollout(model, x, ts, substeps=ENERGY_SUBSTEPS)
    else:
        roll = lambda x: rollout(model, x, ts, substeps=ENERGY_SUBSTEPS)
    paths = jax.vmap(roll)(x0s)
    energy = jax.vmap(jax.vmap(model.energy))(paths)
    drift = jax.vmap(lambda p: metrics.energy_drift(model.energy, p))(paths)
    return paths, energy, drift


def _norm(tree) -> float:
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    return float(jnp.sqrt(sum(jnp.sum(x**2) for x in leaves)))


def _parameters(learner, state, model) -> dict:
    """Size of the adapted model and, for MAML, Reptile, ANIL, how far it moved from the
    meta-learned weights (Scratch starts from a fresh initialisation: no meta-weights)."""
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    out = {"count": int(sum(x.size for x in leaves)), "norm": _norm(model)}
    if learner.meta_trains:
        delta = jax.tree.map(lambda a, b: a - b, eqx.filter(model, eqx.is_inexact_array),
                             eqx.filter(state.params, eqx.is_inexact_array))  # fmt: skip
        out["change_norm"] = _norm(delta)
        out["relative_change"] = out["change_norm"] / _norm(state.params)
    return out


def _model_skeleton(config, prep, method):
    state_like, _ = pipeline.skeletons(config, prep, method)
    one = prep.dataset.test.take(jnp.arange(1))
    learner = pipeline.make_learner(method, config, prep.loss_scale)
    return eqx.filter_eval_shape(
        lambda s: meta.adapt(learner, s, one, jax.random.key(0)).model(0), state_like
    )


def load_model(out_dir):
    """The adapted model written by `main` into ``out_dir`` (a callable ``model(x)``)."""
    record = json.loads((Path(out_dir) / "adapted.json").read_text())
    config, prep = pipeline.load_run(record["run"])
    like = _model_skeleton(config, prep, record["method"])
    return eqx.tree_deserialise_leaves(Path(out_dir) / "adapted.eqx", like)


def _identify(prep, state, latent, learner, seed) -> dict:
    """μ read off the adapted latent by the affine latent -> μ map of the training functions,
    with the map's R² and RMSE on the run's test functions (adapted as the run scores them)."""
    dataset, system = prep.dataset, prep.system
    latent_map = meta.fit_latent_map(state.latents, dataset.train.mu)
    test = meta.adapt(learner, state, dataset.test, scoring.adaptation_key(seed))
    scores = scoring.identification(system, state, dataset, test.latents)
    estimate = np.asarray(latent_map(latent)).tolist()
    return {"estimate": dict(zip(system.param_names, estimate)),
            "test_rmse": scores["mu_rmse_params"], "test_r2": scores["mu_r2_params"],
            "map": f"affine, least squares on the {dataset.train.num_functions} training "
                   f"functions' latents"}  # fmt: skip


def _describe(learner, state, adapted, tasks, model) -> dict:
    """What moved: the latent (modulation methods) or the weights (the others), and the
    support set's field MSE before and after adaptation."""
    xs, dxs = (a[0] for a in meta.flatten_support(tasks))
    record = {}
    if state.latents is not None:
        z = adapted.latents[0]
        z0 = learner.adapt_start(state, key=None)
        before = losses.field_mse(state.params(z0), xs, dxs)
        record["latent"] = np.asarray(z).tolist()
        record["latent_change_norm"] = float(jnp.linalg.norm(z - z0))
    else:
        before = adapted.losses[0, 0]  # MAML, Reptile, ANIL, Scratch: the field MSE itself
        record["parameters"] = _parameters(learner, state, model)
    after = losses.field_mse(model, xs, dxs)
    record["support_mse"] = {"before": float(before), "after": float(after)}
    return record


def _predictions(system, model, tasks, ics) -> tuple[dict, dict]:
    """Rollouts from the data's initial states (and from ``ics``), their learned energies and
    drifts, and the learned field at the data's states; the drifts' summary."""
    out = {"ts": tasks.ts, "data_x0": tasks.xs[0, :, 0], "data_dxs": tasks.dxs[0],
           "data_field": jax.vmap(jax.vmap(model))(tasks.xs[0])}  # fmt: skip
    starts = {"data": tasks.xs[0, :, 0]}
    if ics is not None:
        starts["ics"] = out["ics_x0"] = jnp.asarray(ics, tasks.xs.dtype)
    hamiltonian = isinstance(system, AbstractHamiltonianSystem)
    drifts = {}
    for name, x0s in starts.items():
        paths, energy, drift = _rollouts(model, x0s, tasks.ts, hamiltonian)
        out.update({f"{name}_rollouts": paths, f"{name}_energy": energy, f"{name}_drift": drift})
        drifts[name] = {"mean": float(drift.mean()), "max": float(drift.max())}
    return out, drifts


def _checked_run(args):
    """The run's configuration and prepared data and the seed, with the method and seed
    checked against the run (exit status 2, naming the flag, otherwise)."""
    config, prep = pipeline.load_run(args.run)
    if args.method not in config.methods:
        _fail(f"--method {args.method!r} is not a method of the run {args.run} "
              f"(methods: {', '.join(config.methods)})")  # fmt: skip
    seed = config.seeds[0] if args.seed is None else args.seed
    if seed not in config.seeds:
        _fail(f"--seed {seed} is not a seed of the run {args.run} (seeds: "
              f"{', '.join(map(str, config.seeds))})")  # fmt: skip
    return config, prep, seed


def _warn_step(path, ts, system) -> float:
    """The data's step; warns on stderr when it is far from the training data's."""
    ts = np.asarray(ts, np.float64)
    dt = float(ts[-1] - ts[0]) / (ts.shape[0] - 1)
    ratio = dt / system.dt
    if not DT_RATIO[0] <= ratio <= DT_RATIO[1]:
        print(f"warning: {path}: step {dt:.4g} is {ratio:.3g} times the training data's "
              f"{system.dt:.4g} (outside [{DT_RATIO[0]}, {DT_RATIO[1]}]): adaptation out of its "
              f"training regime", file=sys.stderr, flush=True)  # fmt: skip
    return dt


def _read(args, system):
    """The support data (a `TaskSet` of one function), the raw arrays and the extra initial
    states; a bad file is exit status 2 naming its flag."""
    try:
        raw = read_trajectories(args.data, system)
        ics = None if args.ics is None else read_ics(args.ics, system)
        tasks = data.taskset_from_arrays(raw["ts"], raw["xs"], raw["dxs"], raw["mu"])
    except DataError as err:
        _fail(str(err))
    except ValueError as err:
        _fail(f"--data {args.data}: {err}")
    return tasks, raw, ics


def _record(args, system, seed, steps, tasks, raw, dt) -> dict:
    velocities = "given" if raw["dxs"] is not None else "finite differences"
    path = Path(args.data)
    return {"run": str(Path(args.run).resolve()), "method": args.method, "seed": seed,
            "system": system.name, "steps": steps,
            "data": {"path": str(path.resolve()), "sha256": _sha256(path),
                     "trajectories": tasks.num_trajectories, "times": int(tasks.ts.shape[0]),
                     "dt": dt, "velocities": velocities},
            "ics": None if args.ics is None else {"path": str(Path(args.ics).resolve()),
                                                  "sha256": _sha256(Path(args.ics))}}  # fmt: skip


def _write(out: Path, args, seed, system, model, tasks, predictions, record) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "predictions.npz", **{k: np.asarray(v) for k, v in predictions.items()})
    eqx.tree_serialise_leaves(out / "adapted.eqx", model)
    plots.adapted_portrait(system, model, tasks.xs[0], predictions["data_rollouts"],
                           out / "portrait.png", f"{args.method}, seed {seed}")  # fmt: skip
    labels = {"data": "from the data's initial states", "ics": "from --ics"}
    curves = {labels[k]: predictions[f"{k}_energy"] for k in record["energy_drift"]}
    plots.energies(tasks.ts, curves, out / "energy.png")
    (out / "adapted.json").write_text(json.dumps(record, indent=1))


def _say_mu(mu: dict) -> None:
    """Each estimate with the map's R² and RMSE on the run's test functions; a warning where
    the R² is below `MIN_R2` (the latent does not determine that parameter well)."""
    for k, v in mu["estimate"].items():
        r2, rmse = mu["test_r2"][k], mu["test_rmse"][k]
        print(f"estimated {k} = {v:.4g} (test RMSE {rmse:.2g}, R² {r2:.3g})", flush=True)
        if r2 < MIN_R2:
            print(f"warning: the latent -> {k} map explains little on the run's test functions "
                  f"(R² {r2:.3g} < {MIN_R2}): do not trust this estimate of {k}",
                  file=sys.stderr, flush=True)  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        config, prep, seed = _checked_run(args)
        system = prep.system
        tasks, raw, ics = _read(args, system)
        dt = _warn_step(args.data, raw["ts"], system)
        learner = pipeline.make_learner(args.method, config, prep.loss_scale)
        steps = learner.adapt_steps if args.steps is None else args.steps
        tuned = eqx.tree_at(lambda lrn: lrn.adapt_steps, learner, steps)
        state = pipeline.load_state(config, prep, args.method, seed)
    except run.USER_ERRORS as err:
        return run.user_error(err)
    loaded = time.perf_counter()
    adapted = jax.block_until_ready(meta.adapt(tuned, state, tasks, jax.random.key(seed)))
    adapt_seconds = time.perf_counter() - loaded
    model = adapted.model(0)
    record = _record(args, system, seed, steps, tasks, raw, dt)
    record.update(**_describe(learner, state, adapted, tasks, model), mu=None)
    if state.latents is not None and prep.dataset.train.num_functions > state.latents.shape[1]:
        record["mu"] = _identify(prep, state, adapted.latents[0], learner, seed)
        if raw["mu"] is not None:
            record["mu"]["true"] = dict(zip(system.param_names, raw["mu"].tolist()))
    predictions, record["energy_drift"] = _predictions(system, model, tasks, ics)
    errors = jnp.linalg.norm(predictions["data_rollouts"] - tasks.xs[0], axis=(1, 2))
    record["rollout_error"] = (errors / jnp.linalg.norm(tasks.xs[0], axis=(1, 2))).tolist()
    record["timings"] = {"load_s": loaded - start, "adapt_s": adapt_seconds}
    out = Path(args.out or Path(args.run) / "adapt" / f"{args.method}-seed{seed}")
    record["timings"]["total_s"] = time.perf_counter() - start
    _write(out, args, seed, system, model, tasks, predictions, record)
    print(f"{args.method} seed {seed}: support MSE {record['support_mse']['before']:.4g} -> "
          f"{record['support_mse']['after']:.4g}; wrote {out}", flush=True)  # fmt: skip
    if record["mu"] is not None:
        _say_mu(record["mu"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
