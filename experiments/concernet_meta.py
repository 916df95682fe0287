"""Meta-learned (modulated) ConCerNet vs per-system ConCerNet on a parametric spring family:
rollout coordinate MSE and conservation violation on held-out systems, mean ± std over seeds.

    python -m experiments.concernet_meta --seeds 0,1,2 --epochs 600 --out DIR

Meta-training (auto-decoding) runs on ``--train-systems`` springs of random stiffness and mass
(`SpringFamily`), each with ``--train-trajectories`` trajectories; every held-out system gives
``--support`` (K) trajectories. On them, the meta-learned model adapts its two latents only
(``--adapt-steps`` Adam steps, base frozen), while the per-system ConCerNet and the baseline NN
of `experiments.concernet` are trained from scratch with the same ``--epochs`` per stage. All
are rolled out from ``--num-test`` new initial states of each held-out system over
``[0, --eval-t1]`` and scored with `jaxmeta.conservation.evaluate`.

Writes ``DIR/results.json``, ``DIR/table.md`` and ``DIR/meta_spring.png`` (learned vs true
invariant of a held-out system, and rollouts).
"""

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from tqdm import tqdm

from jaxmeta import conservation as cn

from ._cli import check_positive, parse_seeds
from .registry import make_modulation

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METHODS = {
    "baseline": "Baseline NN (per system, from scratch)",
    "concernet": "ConCerNet (per system, from scratch)",
    "meta_unadapted": "Meta-ConCerNet, mean latents (no adaptation)",
    "meta_concernet": "Meta-ConCerNet (adapted latents)",
}
METRICS = ("mse", "violation", "violation_sq")


def _mlp(dim, key):
    return eqx.nn.MLP(dim, dim, 100, 2, activation=jnp.tanh, key=key)


def _noisy(data, noise, key):
    k1, k2 = jax.random.split(key)
    return (
        data.xs + noise * jax.random.normal(k1, data.xs.shape, data.xs.dtype),
        data.dxs + noise * jax.random.normal(k2, data.dxs.shape, data.dxs.dtype),
    )


def _one(data, i):
    return cn.Trajectories(xs=data.xs[i], dxs=data.dxs[i], ts=data.ts[i])


def per_system(sx, sdx, seed, i, args, optimizer, bar):
    """The pipeline of `experiments.concernet` on one held-out system's K support
    trajectories: stage 1 invariant, baseline NN, projected ConCerNet (invariant frozen)."""
    k = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1000 + i), 4)
    common = dict(
        optimizer=optimizer, epochs=args.epochs, batch_trajectories=min(args.batch, args.support)
    )
    net = cn.InvariantNet(2, 1, key=k[0])
    stage1 = cn.train_invariant(net, sx, progress=bar.update, key=k[1], **common)
    mlp = _mlp(2, k[2])
    base = cn.train_dynamics(mlp, sx, sdx, progress=bar.update, key=k[3], **common)
    model = cn.Projected(mlp, stage1.model)
    ours = cn.train_dynamics(
        model, sx, sdx, trainable=cn.field_only(model), progress=bar.update, key=k[3], **common
    )
    return base.model, ours.model


def run_seed(seed, args, optimizer, adapt_optimizer, bar):
    """Meta-train, adapt, train the per-system models and score all on the held-out systems."""
    family = cn.SpringFamily(stiffness=tuple(args.stiffness), mass=tuple(args.mass))
    k = jax.random.split(jax.random.key(seed), 10)
    train_mu = family.sample_params(k[0], args.train_systems)  # rows (m, k)
    test_mu = family.sample_params(k[1], args.test_systems)
    train = cn.family_trajectories(family, train_mu, args.train_trajectories, key=k[2])
    support = cn.family_trajectories(family, test_mu, args.support, key=k[3])
    long = eqx.tree_at(lambda s: (s.t1, s.num_times), family, (args.eval_t1, args.eval_points))
    test = cn.family_trajectories(long, test_mu, args.num_test, key=k[4])
    xs, dxs = _noisy(train, args.noise, k[5])
    sxs, sdxs = _noisy(support, args.noise, k[6])

    t0 = time.perf_counter()
    modulation = make_modulation(args.modulation)
    model = cn.MetaConCerNet(2, 1, modulation=modulation, latent_dim=args.latent_dim, key=k[7])
    common = dict(
        optimizer=optimizer,
        epochs=args.epochs,
        batch_trajectories=min(args.batch, args.train_trajectories),
    )
    s1 = cn.train_meta_invariant(model, xs, progress=bar.update, key=k[8], **common)
    s2 = cn.train_meta_dynamics(s1.model, s1.latents, xs, dxs, progress=bar.update, key=k[9], **common)  # fmt: skip
    adapted = cn.adapt_meta_concernet(
        s2.model, s1.latents, s2.latents, sxs, sdxs, optimizer=adapt_optimizer,
        steps=args.adapt_steps,
    )  # fmt: skip
    jax.block_until_ready(adapted.z_dyn)
    meta_seconds = time.perf_counter() - t0
    unadapted = s2.model.field(jnp.mean(s1.latents, axis=0), jnp.mean(s2.latents, axis=0))

    t0 = time.perf_counter()
    scores = {m: {k: [] for k in METRICS} for m in METHODS}
    plot = None
    for i in range(args.test_systems):
        base, ours = per_system(sxs[i], sdxs[i], seed, i, args, optimizer, bar)
        fields = dict(
            baseline=base, concernet=ours, meta_unadapted=unadapted, meta_concernet=adapted.field(i)
        )
        mu, truth = test_mu[i], _one(test, i)
        invariant = lambda x, mu=mu: long.invariant(x, mu)
        metrics = {m: cn.evaluate(f, invariant, truth) for m, f in fields.items()}
        for m, r in metrics.items():
            for name in METRICS:
                scores[m][name].append(float(getattr(r, name)))
        if i == 0:
            plot = dict(
                mu=mu, truth=truth, metrics=metrics,
                true=jax.vmap(jax.vmap(invariant))(truth.xs),
                learned_meta=jax.vmap(jax.vmap(adapted.field(0).invariant))(truth.xs),
                learned_ccn=jax.vmap(jax.vmap(ours.invariant))(truth.xs),
            )  # fmt: skip
    per_system_seconds = time.perf_counter() - t0
    out = {f"{name}_{m}": float(np.mean(v[name])) for m, v in scores.items() for name in METRICS}
    # Medians over held-out systems: a few diverging rollouts dominate the means.
    out.update(
        {
            f"median_{name}_{m}": float(np.median(v[name]))
            for m, v in scores.items()
            for name in METRICS
        }
    )
    out.update(
        {f"diverged_{m}": int(np.sum(np.asarray(v["violation"]) > 1.0)) for m, v in scores.items()}
    )
    out.update(
        per_system_scores=scores,
        final_loss=dict(
            meta_invariant=float(s1.history[-1]),
            meta_dynamics=float(s2.history[-1]),
            adapt_invariant=float(jnp.mean(adapted.losses_inv[:, -1])),
            adapt_dynamics=float(jnp.mean(adapted.losses_dyn[:, -1])),
        ),
        seconds=dict(meta_train_and_adapt=meta_seconds, per_system_train_and_eval=per_system_seconds),
        test_parameters=dict(
            stiffness=np.asarray(test_mu[:, 1]).tolist(), mass=np.asarray(test_mu[:, 0]).tolist()
        ),
        _plot=plot,
    )  # fmt: skip
    return out


def _fmt(mean, std):
    return f"{mean:.3g} ± {std:.3g}"


def plot_figure(plot, path):
    truth, metrics = plot["truth"], plot["metrics"]
    ts = np.asarray(truth.ts)
    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    true = np.asarray(plot["true"][..., 0]).ravel()
    for ax, key, title in (
        (axes[0], "learned_meta", "Meta-ConCerNet (adapted)"),
        (axes[1], "learned_ccn", "per-system ConCerNet"),
    ):
        ax.scatter(true, np.asarray(plot[key][..., 0]).ravel(), s=3)
        ax.set(xlabel="true energy", ylabel="learned H", title=f"{title}: H vs truth")
    mass, stiffness = (float(v) for v in plot["mu"])
    style = dict(baseline="r--", concernet="b-.", meta_concernet="g-", meta_unadapted="m:")
    axes[2].plot(*np.asarray(truth.xs[0]).T, "k", lw=2, label="truth")
    for m, r in metrics.items():
        axes[2].plot(*np.asarray(r.rollouts[0]).T, style[m], label=METHODS[m].split(" (")[0])
        axes[3].plot(ts, np.asarray(r.violation_curve), style[m], label=METHODS[m])
    axes[2].set(
        xlabel="q", ylabel="p", title=f"test system 0 (k={stiffness:.2f}, "
        f"m={mass:.2f}): trajectory 0",
    )  # fmt: skip
    axes[3].set(xlabel="t", title="conservation violation |I(x̂_t) − I(x_0)|", yscale="log")
    axes[2].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(summary, args, command, seconds):
    modulation = type(make_modulation(args.modulation)).__name__
    lines = [
        "# Meta-learned (modulated) ConCerNet vs per-system ConCerNet: spring family",
        "",
        f"Command: `{command}` ({seconds:.0f} s)",
        "",
        f"Family: spring-mass H = k q²/2 + p²/(2m), k ~ U{tuple(args.stiffness)}, "
        f"m ~ U{tuple(args.mass)}. Meta-training on {args.train_systems} systems × "
        f"{args.train_trajectories} trajectories (t in [0, 3], 30 points); "
        f"{args.test_systems} held-out systems with K = {args.support} support trajectories "
        f"each. Meta-ConCerNet: {modulation} modulation ({args.modulation}) of both the "
        f"invariant network and the dynamics MLP (width 100, 2 hidden layers, tanh) by two latents of dim "
        f"{args.latent_dim}, auto-decoded for {args.epochs} epochs per stage, then "
        f"{args.adapt_steps} Adam steps (lr {args.adapt_lr}) on the latents only. Per-system "
        f"baseline and ConCerNet: trained from scratch on the same K trajectories, "
        f"{args.epochs} epochs per stage. Adam {args.lr}, noise std {args.noise}. Test: "
        f"{args.num_test} new initial states per held-out system, rollouts over "
        f"t in [0, {args.eval_t1:g}] at {args.eval_points} points. Metrics averaged over the "
        "held-out systems, then mean ± std (population) over seeds "
        f"{args.seeds}. |viol.| = mean |I(x̂_t) − I(x_0)|, viol.² = mean (I(x̂_t) − I(x_t))², "
        "as in `evaluate`. A few held-out systems whose rollouts diverge dominate the means, so "
        "the medians over held-out systems (then mean ± std over seeds) and the number of "
        f"systems (of {args.test_systems}, per seed) with |viol.| > 1 are given too.",
        "",
        "| Method | MSE | \\|viol.\\| | viol.² | MSE (median) | \\|viol.\\| (median) "
        "| viol.² (median) | diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, label in METHODS.items():
        names = [*METRICS, *(f"median_{n}" for n in METRICS), "diverged"]
        cells = [_fmt(*summary[f"{name}_{m}"]) for name in names]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m experiments.concernet_meta", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=600, help="epochs per stage (all methods)")
    parser.add_argument("--train-systems", type=int, default=30, help="meta-training systems")
    parser.add_argument("--train-trajectories", type=int, default=10, help="per training system")
    parser.add_argument("--test-systems", type=int, default=10, help="held-out systems")
    parser.add_argument("--support", type=int, default=5, help="K support trajectories")
    parser.add_argument("--num-test", type=int, default=5, help="test ICs per held-out system")
    parser.add_argument(
        "--modulation",
        choices=["shift", "fw", "ro"],
        default="ro",
        help="modulation of both networks (experiments.registry names: shift, fw = full "
        "weight, ro = rank one)",
    )
    parser.add_argument("--latent-dim", type=int, default=4, help="size of each latent")
    parser.add_argument("--adapt-steps", type=int, default=100, help="latent Adam steps")
    parser.add_argument("--adapt-lr", type=float, default=1e-2, help="latent Adam rate")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (training)")
    parser.add_argument("--batch", type=int, default=10, help="trajectories per minibatch")
    parser.add_argument("--noise", type=float, default=0.01, help="noise std on x and dx/dt")
    parser.add_argument("--stiffness", type=float, nargs=2, default=(1.0, 3.0), help="k range")
    parser.add_argument("--mass", type=float, nargs=2, default=(0.25, 0.75), help="m range")
    parser.add_argument("--eval-t1", type=float, default=20.0, help="test rollout span")
    parser.add_argument("--eval-points", type=int, default=401, help="points per rollout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    seeds = parse_seeds(parser, args.seeds)
    check_positive(parser, args, "epochs", "train_systems", "train_trajectories", "test_systems",
                   "num_test", "latent_dim", "adapt_steps", "adapt_lr", "lr", "batch",
                   "eval_t1", "eval_points")  # fmt: skip
    if args.noise < 0:
        parser.error(f"--noise must be >= 0, got {args.noise}")
    if args.support < 2:
        parser.error(f"--support must be >= 2 (the contrastive loss), got {args.support}.")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m experiments.concernet_meta " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    start = time.perf_counter()
    optimizer = optax.adam(args.lr)  # one object: compiled steps are reused across seeds
    adapt_optimizer = optax.adam(args.adapt_lr)  # the latents' (a fresh state per system)
    per_seed = (2 + 3 * args.test_systems) * args.epochs
    bar = tqdm(total=per_seed * len(seeds), unit="epoch", disable=args.no_progress)
    runs = []
    for seed in seeds:
        bar.set_description(f"seed {seed}")
        runs.append(run_seed(seed, args, optimizer, adapt_optimizer, bar))
    bar.close()
    plot = runs[0].pop("_plot")
    for r in runs[1:]:
        r.pop("_plot")
    plot_figure(plot, args.out / "meta_spring.png")
    summary = {
        f"{name}_{m}": (
            float(np.mean([r[f"{name}_{m}"] for r in runs])),
            float(np.std([r[f"{name}_{m}"] for r in runs])),
        )
        for m in METHODS
        for name in [*METRICS, *(f"median_{n}" for n in METRICS), "diverged"]
    }
    seconds = time.perf_counter() - start
    meta = dict(
        command=command, jax=jax.__version__, device=str(jax.devices()[0]), seconds=seconds,
        config={k: str(v) for k, v in vars(args).items()},
    )  # fmt: skip
    results = dict(meta=meta, seeds=seeds, summary=summary, runs=runs)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown(summary, args, command, seconds)
    (args.out / "table.md").write_text(table)
    print(table)
    print(f"total {seconds:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
