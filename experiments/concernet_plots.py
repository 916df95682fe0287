"""The figures of ``experiments.concernet`` and ``experiments.concernet_meta``: learned against
true invariants, rollouts beside the truth, and the conservation violation over time."""

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .plots import save  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save(fig, path, dpi=120)


def plot_invariant(name: str, learned, true, path: Path) -> None:
    """Each learned invariant coordinate against each true invariant, over test points
    (``learned``, ``true``: ``(traj, time, m)`` and ``(traj, time, k)``)."""
    learned, true = np.asarray(learned), np.asarray(true)
    fig, axes = plt.subplots(1, learned.shape[-1], figsize=(4.5 * learned.shape[-1], 4))
    for j, ax in enumerate(np.atleast_1d(axes)):
        for i in range(true.shape[-1]):
            ax.scatter(true[..., i].ravel(), learned[..., j].ravel(), s=3, label=f"true I{i}")
        ax.set(xlabel="true invariant", ylabel=f"learned H{j}", title=f"{name}: H{j} vs truth")
        ax.legend()
    _save(fig, path)


def _trajectory(ax, name: str, test, base, ours) -> None:
    """Test trajectory 0: a phase portrait, or (a field on a grid: heat) profiles at t = 0, T."""
    ts = np.asarray(test.ts)
    if test.xs.shape[-1] > 4:
        for i, alpha in ((0, 0.4), (-1, 1.0)):
            ax.plot(np.asarray(test.xs[0, i]), "k", alpha=alpha, label=f"truth t={ts[i]:g}")
            ax.plot(np.asarray(base.rollouts[0, i]), "r--", alpha=alpha, label="baseline NN")
            ax.plot(np.asarray(ours.rollouts[0, i]), "b-.", alpha=alpha, label="ConCerNet")
        ax.set(xlabel="node", ylabel="u", title=f"{name}: test trajectory 0")
        return
    ax.plot(*np.asarray(test.xs[0, :, :2]).T, "k", label="truth")
    ax.plot(*np.asarray(base.rollouts[0, :, :2]).T, "r--", label="baseline NN")
    ax.plot(*np.asarray(ours.rollouts[0, :, :2]).T, "b-.", label="ConCerNet")
    ax.set(xlabel="x[0]", ylabel="x[1]", title=f"{name}: test trajectory 0")


def plot_rollouts(name: str, test, base, ours, path: Path) -> None:
    """Test trajectory 0 of the baseline and ConCerNet beside the truth, and their
    conservation violation and coordinate MSE over time (`RolloutMetrics` ``base``, ``ours``)."""
    ts = np.asarray(test.ts)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    _trajectory(axes[0], name, test, base, ours)
    for ax, attr, title in (
        (axes[1], "violation_curve", "conservation violation"),
        (axes[2], "mse_curve", "coordinate MSE"),
    ):
        ax.plot(ts, np.asarray(getattr(base, attr)), "r--", label="baseline NN")
        ax.plot(ts, np.asarray(getattr(ours, attr)), "b-.", label="ConCerNet")
        ax.set(xlabel="t", title=title, yscale="log")
    for ax in axes:
        ax.legend()
    _save(fig, path)


def plot_meta(plot: dict, labels: dict[str, str], path: Path) -> None:
    """Meta-ConCerNet on held-out system 0: the adapted and the per-system learned invariant
    against the true energy, every method's rollout of trajectory 0 and its violation over
    time (``labels``: method -> legend)."""
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
        axes[2].plot(*np.asarray(r.rollouts[0]).T, style[m], label=labels[m].split(" (")[0])
        axes[3].plot(ts, np.asarray(r.violation_curve), style[m], label=labels[m])
    axes[2].set(xlabel="q", ylabel="p",
                title=f"test system 0 (k={stiffness:.2f}, m={mass:.2f}): trajectory 0")  # fmt: skip
    axes[3].set(xlabel="t", title="conservation violation |I(x̂_t) − I(x_0)|", yscale="log")
    axes[2].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    _save(fig, path)
