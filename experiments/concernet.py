"""Reproduce ConCerNet's Table 1 (baseline NN vs ConCerNet): coordinate MSE and conservation
violation of rollouts from test initial states, mean ± std over seeds.

    python -m experiments.concernet --system kepler --seeds 0,1,2 --epochs 300 --out DIR
    python -m experiments.concernet --system heat --seeds 0,1,2 --epochs 300 --out DIR

The systems are `jaxmeta.systems.CONSERVED_SYSTEMS`' (by name). The heat equation (ConCerNet
§4.3) is learned in a 9-dim autoencoder latent: the autoencoder is trained first
(``--ae-epochs``), then both stages run on ``(z, ż)`` and rollouts are decoded. Its data are
the authors' (``--heat-ics pulse``) or our earlier three-bump family (``bumps``).

Writes ``DIR/results.json`` (per seed and, under ``summary``, mean, std and per-seed values of
every metric), ``DIR/table.md`` (the paper's numbers beside ours) and figures
``DIR/<system>_invariant.png`` (learned vs true invariant) and ``DIR/<system>_rollouts.png``.
A bad flag is an error naming it (exit status 2) before anything is generated.
"""

import dataclasses
import functools
import json
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxmeta import conservation as cn

from .concernet_config import AUTOENCODED, NO_PARAMS, TASKS, Config, parse_args
from .concernet_plots import plot_invariant, plot_rollouts
from .report import cell, summary, table

# ----------------------------------------------------------------------------- one seed


def mlp(dim: int, key) -> eqx.nn.MLP:
    """The dynamics network of both stages: width 100, 2 hidden layers, tanh (the paper's)."""
    return eqx.nn.MLP(dim, dim, 100, 2, activation=jnp.tanh, key=key)


def train_pair(xs, dxs, invariant, *, mlp_key, fit_key, progress, **common):
    """Stage 2 of the baseline (the MLP) and of ConCerNet (the same MLP projected onto
    ``invariant``, which stays frozen), both on one key (the same minibatches); ``common``:
    `jaxmeta.conservation.train_dynamics`' optimiser, epochs and batch. Returns both fits."""
    net = mlp(xs.shape[-1], mlp_key)
    base = cn.train_dynamics(net, xs, dxs, progress=progress, key=fit_key, **common)
    model = cn.Projected(net, invariant)
    ours = cn.train_dynamics(model, xs, dxs, trainable=cn.field_only(model),
                             progress=progress, key=fit_key, **common)  # fmt: skip
    return base, ours


def _true_invariant(system, ae, z):
    """The system's exact invariant, of a state or (autoencoded systems) of a latent state."""
    return system.invariant(z if ae is None else ae.decode(z), NO_PARAMS)


def _data(config: Config, system, keys):
    """Noisy training states and derivatives, and the test trajectories over the test span."""
    train = cn.make_trajectories(system, system.num_trajectories, key=keys[0])
    long = dataclasses.replace(system, t1=config.span(system.name), num_times=config.eval_points)
    test = cn.make_trajectories(long, config.num_test, key=keys[1])
    xs = train.xs + config.noise * jax.random.normal(keys[2], train.xs.shape)
    dxs = train.dxs + config.noise * jax.random.normal(keys[3], train.dxs.shape)
    return xs, dxs, test


def _autoencode(config: Config, system, seed: int, xs, dxs, optimiser, bar):
    """Train the autoencoder (its own keys, folded from the seed, so the other systems' streams
    stay as they were) and map the data to its latent space (eq. 9-10)."""
    k_init, k_fit = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1))
    ae = cn.Autoencoder(system.state_dim, AUTOENCODED[system.name], key=k_init)
    fit = cn.train_autoencoder(
        ae, xs, optimiser=optimiser, epochs=config.ae_epochs, batch_trajectories=config.batch,
        progress=bar.update, key=k_fit,
    )  # fmt: skip
    return fit, *cn.to_latent(fit.model, xs, dxs)


def _stage1(config: Config, system, ae, xs, keys, optimiser, bar):
    """The invariant ConCerNet projects onto and stage 1's final loss (None for the oracle)."""
    if config.invariant == "true":  # the oracle: project onto the exact law, no stage 1
        bar.update(config.epochs)
        return eqx.Partial(_true_invariant, system, ae), None
    net = cn.InvariantNet(xs.shape[-1], config.learned_invariants(system.name), key=keys[4])
    fit = cn.train_invariant(
        net, xs, loss=config.contrastive_loss, normalise=config.contrastive_loss == "nce",
        optimiser=optimiser, epochs=config.epochs, batch_trajectories=config.batch,
        progress=bar.update, key=keys[5],
    )  # fmt: skip
    return fit.model, float(fit.history[-1])


def invariant_corr(learned, true) -> list[float]:
    """|Pearson correlation| of each true invariant with its best-matching learned coordinate,
    over every test point."""
    flat_l, flat_t = (np.asarray(a).reshape(-1, a.shape[-1]) for a in (learned, true))
    corr = np.abs(np.corrcoef(flat_t.T, flat_l.T)[: flat_t.shape[1], flat_t.shape[1] :])
    return [float(c) for c in corr.max(axis=1)]


def _score(system, ae, invariant, base, ours, test):
    """Both models' rollout metrics and the learned and true invariants on the test states."""
    law = functools.partial(system.invariant, mu=NO_PARAMS)
    kw = dict(substeps=TASKS[system.name].substeps, autoencoder=ae)
    m_base, m_ours = (cn.evaluate(f.model, law, test, **kw) for f in (base, ours))
    code = (lambda x: x) if ae is None else ae.encode
    learned = jax.vmap(jax.vmap(lambda x: invariant(code(x))))(test.xs)
    return m_base, m_ours, learned, jax.vmap(jax.vmap(law))(test.xs)


def run_seed(config: Config, name: str, seed: int, optimiser, bar) -> dict:
    """Train the invariant, the baseline and ConCerNet for one seed; score both rollouts."""
    system, keys = config.system(name), jax.random.split(jax.random.key(seed), 8)
    xs, dxs, test = _data(config, system, keys)
    ae_fit = ae = None
    if name in AUTOENCODED:
        ae_fit, xs, dxs = _autoencode(config, system, seed, xs, dxs, optimiser, bar)
        ae = ae_fit.model
    invariant, stage1_loss = _stage1(config, system, ae, xs, keys, optimiser, bar)
    batch = config.batch
    if config.dyn_batch_points is not None:
        # Stage 2 on minibatches of single points (the authors' `train_dynamics.py` batches
        # flattened points): each point is a length-1 "trajectory".
        xs, dxs = (a.reshape(-1, 1, a.shape[-1]) for a in (xs, dxs))
        batch = config.dyn_batch_points
    base, ours = train_pair(xs, dxs, invariant, mlp_key=keys[6], fit_key=keys[7],
                            progress=bar.update, optimiser=optimiser, epochs=config.epochs,
                            batch_trajectories=batch)  # fmt: skip
    m_base, m_ours, learned, true = _score(system, ae, invariant, base, ours, test)
    losses = {} if ae_fit is None else {"autoencoder": float(ae_fit.history[-1])}
    return dict(
        mse_baseline=float(m_base.mse), mse_concernet=float(m_ours.mse),
        violation_baseline=float(m_base.violation), violation_concernet=float(m_ours.violation),
        violation_sq_baseline=float(m_base.violation_sq),
        violation_sq_concernet=float(m_ours.violation_sq),
        invariant_corr=invariant_corr(learned, true),
        final_loss=dict(**losses, invariant=stage1_loss, baseline=float(base.history[-1]),
                        concernet=float(ours.history[-1])),
        _plot=dict(test=test, base=m_base, ours=m_ours, learned=learned, true=true),
    )  # fmt: skip


# ------------------------------------------------------------------------ summary, table

METRICS = ("mse_baseline", "mse_concernet", "violation_baseline", "violation_concernet",
           "violation_sq_baseline", "violation_sq_concernet")  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    """`experiments.report.summary` of every metric over seeds; of ``invariant_corr``, one per
    true invariant (mean and std over the seed axis of the per-seed lists)."""
    out = {k: summary(r[k] for r in runs) for k in METRICS}
    corrs = np.array([r["invariant_corr"] for r in runs])  # (seeds, true invariants)
    out["invariant_corr"] = [
        {"mean": float(m), "std": float(d), "per_seed": c.tolist()}
        for m, d, c in zip(corrs.mean(0), corrs.std(0), corrs.T)
    ]
    return out


def _setup(config: Config, names) -> str:
    """The sentence of the table's header after the budget: stage 1 (or the oracle) and the
    autoencoded systems' data."""
    if config.invariant == "true":
        stage1 = ". **Oracle**: ConCerNet projects onto the system's exact invariant (no stage 1)"
    else:
        normalised = (
            " on batch-normalised latents (eq. 8)" if config.contrastive_loss == "nce" else ""
        )
        m = {n: config.learned_invariants(n) for n in names}
        stage1 = (
            f". Stage 1 loss: {config.contrastive_loss}{normalised}, learned invariants m = {m}"
        )
    return stage1 + "".join(
        f". {n}: {config.heat_ics} initial states, trained on t in [0, "
        f"{config.system(n).t1:g}], {config.system(n).num_trajectories} "
        f"trajectories; learned in a {AUTOENCODED[n]}-dim autoencoder latent (eq. 9-10), "
        f"autoencoder trained {config.ae_epochs} epochs first; rollouts decoded and scored in "
        "the original space"
        for n in names
        if n in AUTOENCODED
    )


def markdown(results: dict, config: Config) -> str:
    """``table.md``: the run's settings, then our Table 1 beside the paper's."""
    points = (
        ""
        if config.dyn_batch_points is None
        else f" (stage 2: batches of {config.dyn_batch_points} points)"
    )
    intro = [
        "# ConCerNet Table 1: paper vs jaxmeta", "", f"Command: `{config.command}`", "",
        f"Budget: {config.epochs} epochs per stage (paper: 1000), seeds "
        f"{','.join(map(str, config.seeds))}, {config.num_test} test ICs, test rollouts over "
        f"t in [0, T] with T = { {n: config.span(n) for n in results} } at "
        f"{config.eval_points} points (the authors' `--eval_t_end`), noise std "
        f"{config.noise}, Adam {config.lr}, batches of "
        f"{config.batch} trajectories{points}{_setup(config, results)}. Mean ± std "
        "(population) over seeds; paper: 3 seeds.", "",
        "Viol.² is the mean of (I(x̂_t) − I(x_t))² over test trajectories, times and true "
        'invariants: the metric of the authors\' `evaluate_dynamics.py` ("all conservation"), '
        "the one their Table 1 reports; |viol.| is the mean absolute deviation "
        "|I(x̂_t) − I(x_0)|; |corr| is the absolute Pearson correlation, over test points, "
        "of each true invariant with its best-matching coordinate of the projected invariant.", "",
    ]  # fmt: skip
    header = ["Task", "MSE base (paper)", "MSE CCN (paper)", "MSE base (ours)", "MSE CCN (ours)",
              "Viol. base (paper)", "Viol. CCN (paper)", "Viol.² base (ours)",
              "Viol.² CCN (ours)", "\\|viol.\\| base (ours)", "\\|viol.\\| CCN (ours)",
              "\\|corr\\| (ours)"]  # fmt: skip
    rows = []
    for name, res in results.items():
        paper = [cell(dict(mean=m, std=s), ".3g") for m, s in TASKS[name].paper]
        ours = [cell(res["summary"][k], ".3g") for k in METRICS]
        corr = ", ".join(cell(c, ".3g") for c in res["summary"]["invariant_corr"])
        rows.append(
            [TASKS[name].label, *paper[:2], *ours[:2], *paper[2:], *ours[4:], *ours[2:4], corr]
        )
    return "\n".join(intro) + "\n" + table(header, rows)


# ---------------------------------------------------------------------------------- main


def run_system(config: Config, name: str, optimiser, bar) -> dict:
    """Every seed of one system; draws the figures of the first seed."""
    start, runs = time.perf_counter(), []
    for seed in config.seeds:
        bar.set_description(f"{name} seed {seed}")
        runs.append(run_seed(config, name, seed, optimiser, bar))
    p = [r.pop("_plot") for r in runs][0]
    plot_invariant(name, p["learned"], p["true"], config.out / f"{name}_invariant.png")
    plot_rollouts(name, p["test"], p["base"], p["ours"], config.out / f"{name}_rollouts.png")
    return dict(seeds=list(config.seeds), runs=runs, summary=summarise(runs),
                paper=TASKS[name].paper, seconds=time.perf_counter() - start)  # fmt: skip


def main(argv=None) -> None:
    config = parse_args(argv, doc=__doc__)
    config.out.mkdir(parents=True, exist_ok=True)
    optimiser = optax.adam(config.lr)  # one object: compiled steps are reused across seeds
    per_seed = [3 * config.epochs + (config.ae_epochs if n in AUTOENCODED else 0)
                for n in config.systems]  # fmt: skip
    bar = tqdm(total=sum(per_seed) * len(config.seeds), unit="epoch", disable=not config.progress)
    start = time.perf_counter()
    results = {name: run_system(config, name, optimiser, bar) for name in config.systems}
    bar.close()
    meta = dict(command=config.command, jax=jax.__version__, device=str(jax.devices()[0]),
                seconds=time.perf_counter() - start, config=config.to_json())  # fmt: skip
    (config.out / "results.json").write_text(json.dumps(dict(meta=meta, results=results), indent=2))
    text = markdown(results, config)
    (config.out / "table.md").write_text(text)
    print(text)
    print(f"total {meta['seconds']:.0f} s; wrote {config.out}")


if __name__ == "__main__":
    main()
