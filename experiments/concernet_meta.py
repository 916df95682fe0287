"""Meta-learned (modulated) ConCerNet vs per-system ConCerNet on a parametric spring family:
rollout coordinate MSE and conservation violation on held-out systems, mean ± std over seeds.

    python -m experiments.concernet_meta --seeds 0,1,2 --epochs 600 --out DIR

Meta-training (auto-decoding) runs on ``--train-systems`` springs of random stiffness and mass
(`jaxmeta.systems.SpringFamily`), each with ``--train-trajectories`` trajectories; every
held-out system gives ``--support`` (K) trajectories. On them, the meta-learned model adapts
its two latents only (``--adapt-steps`` Adam steps, base frozen), while the per-system
ConCerNet and the baseline NN of `experiments.concernet` are trained from scratch with the
same ``--epochs`` per stage. All are rolled out from ``--num-test`` new initial states of each
held-out system over ``[0, --eval-t1]`` and scored with `jaxmeta.conservation.evaluate`.

Writes ``DIR/results.json`` (per seed and, under ``summary``, mean, std and per-seed values),
``DIR/table.md`` and ``DIR/meta_spring.png`` (learned vs true invariant of a held-out system,
and rollouts). A bad flag is an error naming it (exit status 2) before anything is generated.
"""

import argparse
import dataclasses
import functools
import json
import shlex
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxmeta import conservation as cn
from jaxmeta.systems import CONSERVED_SYSTEMS

from ._cli import check_positive, parse_seeds
from .concernet import train_pair
from .concernet_plots import plot_meta
from .registry import make_modulation
from .report import cell, summary, table

METHODS = {
    "baseline": "Baseline NN (per system, from scratch)",
    "concernet": "ConCerNet (per system, from scratch)",
    "meta_unadapted": "Meta-ConCerNet, mean latents (no adaptation)",
    "meta_concernet": "Meta-ConCerNet (adapted latents)",
}
METRICS = ("mse", "violation", "violation_sq")
#: Every per-seed number of a method: the means over held-out systems, their medians (a few
#: diverging rollouts dominate the means) and the count of systems with |viol.| > 1.
COLUMNS = (*METRICS, *(f"median_{n}" for n in METRICS), "diverged")
FAMILY = CONSERVED_SYSTEMS["spring_family"]


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on, resolved from the command line by `parse_args`."""

    seeds: tuple[int, ...]
    out: Path
    epochs: int = 600
    train_systems: int = 30
    train_trajectories: int = 10
    test_systems: int = 10
    support: int = 5
    num_test: int = 5
    modulation: str = "ro"
    latent_dim: int = 4
    adapt_steps: int = 100
    adapt_lr: float = 1e-2
    lr: float = 1e-3
    batch: int = 10
    noise: float = 0.01
    stiffness: tuple[float, float] = (1.0, 3.0)
    mass: tuple[float, float] = (0.25, 0.75)
    eval_t1: float = 20.0
    eval_points: int = 401
    progress: bool = True
    command: str = ""

    def family(self):
        """The spring family of the run (training grid: t in [0, 3], 30 points)."""
        return FAMILY(stiffness=self.stiffness, mass=self.mass)

    def to_json(self) -> dict:
        return json.loads(json.dumps({**dataclasses.asdict(self), "out": str(self.out)}))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.concernet_meta", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--epochs", type=int, default=600, help="epochs per stage (all methods)")
    p.add_argument("--train-systems", type=int, default=30, help="meta-training systems")
    p.add_argument("--train-trajectories", type=int, default=10, help="per training system")
    p.add_argument("--test-systems", type=int, default=10, help="held-out systems")
    p.add_argument("--support", type=int, default=5, help="K support trajectories")
    p.add_argument("--num-test", type=int, default=5, help="test ICs per held-out system")
    p.add_argument("--modulation", choices=["shift", "fw", "ro"], default="ro",
                   help="modulation of both networks (experiments.registry names: shift, fw = "
                        "full weight, ro = rank one)")  # fmt: skip
    p.add_argument("--latent-dim", type=int, default=4, help="size of each latent")
    p.add_argument("--adapt-steps", type=int, default=100, help="latent Adam steps")
    p.add_argument("--adapt-lr", type=float, default=1e-2, help="latent Adam rate")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (training)")
    p.add_argument("--batch", type=int, default=10, help="trajectories per minibatch")
    p.add_argument("--noise", type=float, default=0.01, help="noise std on x and dx/dt")
    p.add_argument("--stiffness", type=float, nargs=2, default=(1.0, 3.0), help="k range")
    p.add_argument("--mass", type=float, nargs=2, default=(0.25, 0.75), help="m range")
    p.add_argument("--eval-t1", type=float, default=20.0, help="test rollout span")
    p.add_argument("--eval-points", type=int, default=401, help="points per rollout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    return p


def parse_args(argv=None) -> Config:
    """Command line -> `Config` (a bad flag: a parser error naming it, exit status 2)."""
    p = _parser()
    args = p.parse_args(argv)
    seeds = parse_seeds(p, args.seeds)
    check_positive(p, args, "epochs", "train_systems", "train_trajectories", "test_systems",
                   "num_test", "latent_dim", "adapt_steps", "adapt_lr", "lr", "batch",
                   "eval_t1", "eval_points")  # fmt: skip
    if args.noise < 0:
        p.error(f"--noise must be >= 0, got {args.noise}")
    if args.support < 2:
        p.error(f"--support must be >= 2 (the contrastive loss), got {args.support}.")
    if args.eval_points < 3:
        p.error(f"--eval-points must be >= 3, got {args.eval_points}")
    for flag in ("stiffness", "mass"):
        lo, hi = getattr(args, flag)
        if not 0 < lo <= hi < float("inf"):
            p.error(f"--{flag} must be LOW HIGH with 0 < LOW <= HIGH, got {lo} {hi}")
    given = {f.name for f in dataclasses.fields(Config)} - {"seeds", "progress", "command",
                                                           "stiffness", "mass"}  # fmt: skip
    values = {k: v for k, v in vars(args).items() if k in given}
    argv = sys.argv[1:] if argv is None else argv
    return Config(**values, seeds=tuple(seeds), progress=not args.no_progress,
                  stiffness=tuple(args.stiffness), mass=tuple(args.mass),
                  command="python -m experiments.concernet_meta " + shlex.join(argv))  # fmt: skip


# ----------------------------------------------------------------------------- one seed


def _noisy(data, noise, key):
    k1, k2 = jax.random.split(key)
    return (
        data.xs + noise * jax.random.normal(k1, data.xs.shape, data.xs.dtype),
        data.dxs + noise * jax.random.normal(k2, data.dxs.shape, data.dxs.dtype),
    )


def make_data(config: Config, keys) -> dict:
    """Parameters of the training and held-out systems, their noisy training and support
    trajectories, and the held-out systems' test trajectories over ``[0, eval_t1]``."""
    family = config.family()
    train_mu = family.sample_params(keys[0], config.train_systems)  # rows (m, k)
    test_mu = family.sample_params(keys[1], config.test_systems)
    train = cn.make_trajectories(family, config.train_trajectories, mu=train_mu, key=keys[2])
    support = cn.make_trajectories(family, config.support, mu=test_mu, key=keys[3])
    long = dataclasses.replace(family, t1=config.eval_t1, num_times=config.eval_points)
    test = cn.make_trajectories(long, config.num_test, mu=test_mu, key=keys[4])
    xs, dxs = _noisy(train, config.noise, keys[5])
    sxs, sdxs = _noisy(support, config.noise, keys[6])
    return dict(family=long, train_mu=train_mu, test_mu=test_mu, xs=xs, dxs=dxs, sxs=sxs,
                sdxs=sdxs, test=test)  # fmt: skip


def meta_train(config: Config, data: dict, keys, optimiser, adapt_optimiser, bar):
    """Meta-train both stages by auto-decoding, then adapt the latents to the held-out systems'
    support. Returns the two stage fits, the adaptation and the seconds it all took."""
    start = time.perf_counter()
    model = cn.MetaConCerNet(2, 1, modulation=make_modulation(config.modulation),
                             latent_dim=config.latent_dim, key=keys[7])  # fmt: skip
    common = dict(optimiser=optimiser, epochs=config.epochs, progress=bar.update,
                  batch_trajectories=min(config.batch, config.train_trajectories))  # fmt: skip
    xs, dxs = data["xs"], data["dxs"]
    s1 = cn.train_meta_invariant(model, xs, key=keys[8], **common)
    s2 = cn.train_meta_dynamics(s1.model, s1.latents, xs, dxs, key=keys[9], **common)
    adapted = cn.adapt_meta_concernet(
        s2.model, s1.latents, s2.latents, data["sxs"], data["sdxs"], optimiser=adapt_optimiser,
        steps=config.adapt_steps,
    )  # fmt: skip
    jax.block_until_ready(adapted.z_dyn)
    return s1, s2, adapted, time.perf_counter() - start


def per_system(config: Config, sx, sdx, seed: int, i: int, optimiser, bar):
    """The pipeline of `experiments.concernet` on one held-out system's K support
    trajectories: stage 1 invariant, baseline NN, projected ConCerNet (invariant frozen)."""
    k = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1000 + i), 4)
    common = dict(optimiser=optimiser, epochs=config.epochs,
                  batch_trajectories=min(config.batch, config.support))  # fmt: skip
    stage1 = cn.train_invariant(cn.InvariantNet(2, 1, key=k[0]), sx, progress=bar.update,
                                key=k[1], **common)  # fmt: skip
    base, ours = train_pair(sx, sdx, stage1.model, mlp_key=k[2], fit_key=k[3],
                            progress=bar.update, **common)  # fmt: skip
    return base.model, ours.model


def _on_states(f, xs):
    return jax.vmap(jax.vmap(f))(xs)


def score_systems(config: Config, data: dict, unadapted, adapted, seed: int, optimiser, bar):
    """Every method's metrics on each held-out system (the per-system models trained here; the
    meta-learned model with the mean training latents, ``unadapted``, and with the latents
    ``adapted`` to each system), and what the figure of held-out system 0 shows."""
    scores = {m: {k: [] for k in METRICS} for m in METHODS}
    plot = None
    for i in range(config.test_systems):
        base, ours = per_system(config, data["sxs"][i], data["sdxs"][i], seed, i, optimiser, bar)
        models = dict(baseline=base, concernet=ours, meta_unadapted=unadapted,
                      meta_concernet=adapted.model(i))  # fmt: skip
        mu, test = data["test_mu"][i], data["test"]
        truth = cn.Trajectories(xs=test.xs[i], dxs=test.dxs[i], ts=test.ts[i])
        invariant = functools.partial(data["family"].invariant, mu=mu)
        metrics = {m: cn.evaluate(f, invariant, truth) for m, f in models.items()}
        for m, r in metrics.items():
            for name in METRICS:
                scores[m][name].append(float(getattr(r, name)))
        if i == 0:
            on_truth = functools.partial(_on_states, xs=truth.xs)
            plot = dict(mu=mu, truth=truth, metrics=metrics, true=on_truth(invariant),
                        learned_meta=on_truth(models["meta_concernet"].invariant),
                        learned_ccn=on_truth(models["concernet"].invariant))  # fmt: skip
    return scores, plot


def seed_record(scores: dict) -> dict:
    """Per method: the mean and median over held-out systems of each metric, and the number of
    systems whose |viol.| exceeds 1 (diverged)."""
    out = {f"{name}_{m}": float(np.mean(v[name])) for m, v in scores.items() for name in METRICS}
    out.update({f"median_{name}_{m}": float(np.median(v[name]))
                for m, v in scores.items() for name in METRICS})  # fmt: skip
    out.update({f"diverged_{m}": int(np.sum(np.asarray(v["violation"]) > 1.0))
                for m, v in scores.items()})  # fmt: skip
    return out


def run_seed(config: Config, seed: int, optimiser, adapt_optimiser, bar) -> dict:
    """Meta-train, adapt, train the per-system models and score all on the held-out systems."""
    keys = jax.random.split(jax.random.key(seed), 10)
    data = make_data(config, keys)
    s1, s2, adapted, meta_seconds = meta_train(config, data, keys, optimiser, adapt_optimiser, bar)
    unadapted = s2.model(jnp.mean(s1.latents, axis=0), jnp.mean(s2.latents, axis=0))
    start = time.perf_counter()
    scores, plot = score_systems(config, data, unadapted, adapted, seed, optimiser, bar)
    test_mu = np.asarray(data["test_mu"])
    return dict(
        **seed_record(scores), per_system_scores=scores,
        final_loss=dict(meta_invariant=float(s1.history[-1]), meta_dynamics=float(s2.history[-1]),
                        adapt_invariant=float(jnp.mean(adapted.losses_inv[:, -1])),
                        adapt_dynamics=float(jnp.mean(adapted.losses_dyn[:, -1]))),
        seconds=dict(meta_train_and_adapt=meta_seconds,
                     per_system_train_and_eval=time.perf_counter() - start),
        test_parameters=dict(stiffness=test_mu[:, 1].tolist(), mass=test_mu[:, 0].tolist()),
        _plot=plot,
    )  # fmt: skip


# ------------------------------------------------------------------------ table and main


def markdown(results: dict, config: Config, seconds: float) -> str:
    """``table.md``: the run's settings, then each method's mean ± std over seeds."""
    modulation = type(make_modulation(config.modulation)).__name__
    intro = (
        f"Family: spring-mass H = k q²/2 + p²/(2m), k ~ U{config.stiffness}, "
        f"m ~ U{config.mass}. Meta-training on {config.train_systems} systems × "
        f"{config.train_trajectories} trajectories (t in [0, 3], 30 points); "
        f"{config.test_systems} held-out systems with K = {config.support} support "
        f"trajectories each. Meta-ConCerNet: {modulation} modulation ({config.modulation}) "
        "of both the invariant network and the dynamics MLP "
        f"(width 100, 2 hidden layers, tanh) by two latents of dim {config.latent_dim}, "
        f"auto-decoded for {config.epochs} epochs per stage, then {config.adapt_steps} Adam "
        f"steps (lr {config.adapt_lr}) on the latents only. Per-system baseline and ConCerNet: "
        f"trained from scratch on the same K trajectories, {config.epochs} epochs per stage. "
        f"Adam {config.lr}, noise std {config.noise}. Test: {config.num_test} new initial "
        f"states per held-out system, rollouts over t in [0, {config.eval_t1:g}] at "
        f"{config.eval_points} points. Metrics averaged over the held-out systems, then mean ± "
        f"std (population) over seeds {','.join(map(str, config.seeds))}. |viol.| = mean "
        "|I(x̂_t) − I(x_0)|, viol.² = mean (I(x̂_t) − I(x_t))², as in `evaluate`. A few "
        "held-out systems whose rollouts diverge dominate the means, so the medians over "
        "held-out systems (then mean ± std over seeds) and the number of systems (of "
        f"{config.test_systems}, per seed) with |viol.| > 1 are given too."
    )
    header = ["Method", "MSE", "\\|viol.\\|", "viol.²", "MSE (median)", "\\|viol.\\| (median)",
              "viol.² (median)", "diverged"]  # fmt: skip
    rows = [[label, *(cell(results[f"{c}_{m}"], ".3g") for c in COLUMNS)]
            for m, label in METHODS.items()]  # fmt: skip
    title = "# Meta-learned (modulated) ConCerNet vs per-system ConCerNet: spring family"
    command = f"Command: `{config.command}` ({seconds:.0f} s)"
    return "\n".join([title, "", command, "", intro, "", table(header, rows)])


def main(argv=None) -> None:
    config = parse_args(argv)
    config.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    optimiser = optax.adam(config.lr)  # one object: compiled steps are reused across seeds
    adapt_optimiser = optax.adam(config.adapt_lr)  # the latents' (a fresh state per system)
    per_seed = (2 + 3 * config.test_systems) * config.epochs
    bar = tqdm(total=per_seed * len(config.seeds), unit="epoch", disable=not config.progress)
    runs = []
    for seed in config.seeds:
        bar.set_description(f"seed {seed}")
        runs.append(run_seed(config, seed, optimiser, adapt_optimiser, bar))
    bar.close()
    plot_meta([r.pop("_plot") for r in runs][0], METHODS, config.out / "meta_spring.png")
    results = {f"{c}_{m}": summary(r[f"{c}_{m}"] for r in runs) for m in METHODS for c in COLUMNS}
    seconds = time.perf_counter() - start
    meta = dict(command=config.command, jax=jax.__version__, device=str(jax.devices()[0]),
                seconds=seconds, config=config.to_json())  # fmt: skip
    out = dict(meta=meta, seeds=list(config.seeds), summary=results, runs=runs)
    (config.out / "results.json").write_text(json.dumps(out, indent=2))
    text = markdown(results, config, seconds)
    (config.out / "table.md").write_text(text)
    print(text)
    print(f"total {seconds:.0f} s; wrote {config.out}")


if __name__ == "__main__":
    main()
