"""Figures: phase-space vector fields (paper Figs. 1, 3-5), trajectories (Fig. 2), and
validation curves. Matplotlib with the Agg backend; every function writes one PNG."""

import io
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from jaxmeta import meta, rollout  # noqa: E402

#: The size limit of every committed figure, in bytes (`save`, ``scripts/shrink_figures.py``).
LIMIT = 200_000  # bytes
_COLOURS = (256, 128, 64)
_SCALES = (1.0, 0.9, 0.8, 0.75)


def _encode(image: Image.Image, colours: int) -> bytes:
    palette = image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", optimize=True, dpi=image.info.get("dpi", (72, 72)))
    return buffer.getvalue()


def shrink(path: Path, limit: int = LIMIT) -> tuple[int, int]:
    """Re-encode ``path`` in place if it is over ``limit`` bytes; (size before, size after)."""
    before = path.stat().st_size
    if before <= limit:
        return before, before
    with Image.open(path) as opened:
        dpi = opened.info.get("dpi")
        image = opened.convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, image).convert("RGB")  # figures are opaque
    best = None
    for scale in _SCALES:
        scaled = image
        if scale != 1.0:
            size = (round(image.width * scale), round(image.height * scale))
            scaled = image.resize(size, Image.Resampling.LANCZOS)
        if dpi:
            scaled.info["dpi"] = tuple(d * scale for d in dpi)
        for colours in _COLOURS:
            data = _encode(scaled, colours)
            if best is None or len(data) < len(best):
                best = data
            if len(data) <= limit:
                path.write_bytes(data)
                return before, len(data)
    path.write_bytes(best)  # the smallest legible encoding, still over the limit
    return before, len(best)


def save(fig, path: Path, dpi: int = 90) -> None:
    """Write ``fig`` to ``path`` as a PNG of at most `LIMIT` bytes (`shrink`), and close it."""
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    shrink(Path(path))


def _plane(system, n=25):
    """A (q, p) grid; other coordinates at the middle of the mesh (the entropy level set)."""
    bounds = system.mesh_bounds or ((-1.5, 1.5), (-1.5, 1.5))
    (q0, q1), (p0, p1) = bounds[0], bounds[1]
    q, p = np.meshgrid(np.linspace(q0, q1, n), np.linspace(p0, p1, n), indexing="ij")
    rest = [0.5 * (lo + hi) for lo, hi in bounds[2:]]
    pts = np.stack([q.ravel(), p.ravel(), *[np.full(q.size, r) for r in rest]], axis=-1)
    return q, p, jnp.asarray(pts, jnp.float32), rest


def _draw_fields(system, test, fields: dict, q, p, rest, path: Path, fn: int, title: str) -> None:
    """One streamplot panel per entry of ``fields`` with test function ``fn``'s support (red)
    and query (green) trajectories."""
    cols = len(fields)
    rows = (cols + 5) // 6
    fig, axes = plt.subplots(rows, min(cols, 6), figsize=(3 * min(cols, 6), 3 * rows),
                             squeeze=False)  # fmt: skip
    for ax in axes.ravel()[cols:]:
        ax.axis("off")
    for ax, (name, f) in zip(axes.ravel(), fields.items()):
        f = np.asarray(f)
        ax.streamplot(q.T, p.T, f[:, 0].reshape(q.shape).T, f[:, 1].reshape(q.shape).T,
                      density=0.8, linewidth=0.6, color="0.3")  # fmt: skip
        for xs, colour in ((test.xs[fn], "tab:red"), (test.query_xs[fn], "tab:green")):
            for x in np.asarray(xs):
                ax.plot(x[:, 0], x[:, 1], color=colour, lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("q")
    axes[0][0].set_ylabel(
        "p" + (f"  (other coords at {np.round(rest, 2).tolist()})" if rest else "")
    )
    mu = ", ".join(f"{n} = {v:.3g}" for n, v in zip(system.param_names, np.asarray(test.mu[fn])))
    fig.suptitle(f"{system.name}: {mu}  {title}")
    fig.tight_layout()
    save(fig, path)


def phase_portraits(system, test, adapted: dict, path: Path, fn: int = 0) -> None:
    """True field and each method's adapted field (``adapted``: method -> `jaxmeta.meta.Adapted`) on the (q, p) plane for test function ``fn``
    (paper Figs. 1, 4, 5; for DNO/TGC the plane at mid-range entropies, cf. Fig. 3)."""
    if system.state_dim > 4:  # Kepler: plot orbits instead
        return orbits(system, test, adapted, path, fn)
    q, p, pts, rest = _plane(system)
    mu = test.mu[fn]
    fields = {"truth": jax.vmap(lambda x: system.vector_field(x, mu))(pts)}
    for name, a in adapted.items():
        fields[name] = jax.vmap(a.model(fn))(pts)
    _draw_fields(system, test, fields, q, p, rest, path, fn, "")


def kshot_fields(system, test, learner, state, path: Path, fn: int = 0,
                 steps=(0, 5, 10, 25, 50)) -> None:  # fmt: skip
    """The field of an auto-decoding learner after 0, 5, 10, ... adaptation steps on test
    function ``fn`` (paper Figs. 10-12); 0-shot is the model at the mean training latent."""
    if system.state_dim > 4 or state.latents is None:
        return
    q, p, pts, rest = _plane(system)
    f, k, t, d = test.xs.shape
    xs, dxs = test.xs[fn].reshape(k * t, d), test.dxs[fn].reshape(k * t, d)
    start = learner.adapt_start(state, key=jax.random.key(0))
    loss = lambda z: learner.adapt_loss(state, z, xs, dxs)  # one run, read at every count
    latents, _ = meta.optimise_path(loss, start, learner.adapt_optimiser, max(steps))
    field = jax.jit(lambda z: jax.vmap(learner.adapt_model(state, z))(pts))  # one compile
    fields = {}
    for n in steps:
        latent = jnp.mean(state.latents, axis=0) if n == 0 else latents[n - 1]
        fields[f"{n}-shot"] = field(latent)
    fields["target"] = jax.vmap(lambda x: system.vector_field(x, test.mu[fn]))(pts)
    _draw_fields(
        system, test, fields, q, p, rest, path, fn, f"({type(learner.modulation).__name__})"
    )


def trajectories(system, test, adapted: dict, path: Path, fn: int = 0, traj: int = 0) -> None:
    """Each state coordinate of one query trajectory: truth vs each method's rollout."""
    ts = np.asarray(test.ts)
    x_true = test.query_xs[fn, traj]
    dims = min(system.state_dim, 4)
    fig, axes = plt.subplots(1, dims, figsize=(3.2 * dims, 2.8), squeeze=False)
    for name, a in adapted.items():
        xs = np.asarray(rollout(a.model(fn), x_true[0], test.ts))
        for d in range(dims):
            axes[0][d].plot(ts, xs[:, d], lw=1, label=name)
    for d in range(dims):
        axes[0][d].plot(ts, np.asarray(x_true[:, d]), "k--", lw=1.5, label="truth")
        axes[0][d].set_title(system.state_names[d])
        axes[0][d].set_xlabel("t")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    save(fig, path)


def orbits(system, test, adapted: dict, path: Path, fn: int = 0) -> None:
    """Kepler: both bodies' orbits in the plane, truth vs each method (first query IC)."""
    x_true = test.query_xs[fn, 0]
    fig, axes = plt.subplots(1, len(adapted) + 1, figsize=(3 * (len(adapted) + 1), 3))
    runs = {"truth": np.asarray(x_true)}
    for name, a in adapted.items():
        runs[name] = np.asarray(rollout(a.model(fn), x_true[0], test.ts))
    for ax, (name, xs) in zip(np.atleast_1d(axes), runs.items()):
        ax.plot(xs[:, 0], xs[:, 1], lw=1)
        ax.plot(xs[:, 2], xs[:, 3], lw=1)
        ax.set_title(name)
        ax.set_aspect("equal", "datalim")
    fig.tight_layout()
    save(fig, path)


def validation_curves(histories: dict, path: Path) -> None:
    """Validation error (Algorithm 2, relative field error on queries) against epoch."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, hist in histories.items():
        if hist["val_epoch"]:
            ax.semilogy(hist["val_epoch"], hist["val_error"], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error")
    if ax.get_legend_handles_labels()[0]:  # Scratch alone has no validation curve
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def adapted_portrait(system, model, xs, rollouts, path: Path, title: str = "") -> None:
    """A learned field (streamlines) on the plane of the first two state coordinates, over the
    range of the data ``xs`` ``(K, T, dim)`` (other coordinates at the data's mean), with the
    data (red) and the model's rollouts from the same initial states (``rollouts``, dashed)."""
    xs, rollouts = np.asarray(xs), np.asarray(rollouts)
    lo, hi = xs[..., :2].min(axis=(0, 1)), xs[..., :2].max(axis=(0, 1))
    pad = 0.15 * np.maximum(hi - lo, 1e-3)
    q, p = np.meshgrid(*(np.linspace(a - m, b + m, 25) for a, b, m in zip(lo, hi, pad)),
                       indexing="ij")  # fmt: skip
    rest = xs[..., 2:].mean(axis=(0, 1))
    pts = np.concatenate([np.stack([q.ravel(), p.ravel()], -1),
                          np.broadcast_to(rest, (q.size, rest.size))], axis=-1)  # fmt: skip
    f = np.asarray(jax.vmap(model)(jnp.asarray(pts, xs.dtype)))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.streamplot(q.T, p.T, f[:, 0].reshape(q.shape).T, f[:, 1].reshape(q.shape).T,
                  density=0.8, linewidth=0.6, color="0.3")  # fmt: skip
    for k, (x, r) in enumerate(zip(xs, rollouts)):
        ax.plot(x[:, 0], x[:, 1], color="tab:red", lw=1, label="data" if k == 0 else None)
        ax.plot(r[:, 0], r[:, 1], "--", color="tab:blue", lw=1,
                label="learned rollout" if k == 0 else None)  # fmt: skip
    ax.set_xlabel(system.state_names[0])
    ax.set_ylabel(system.state_names[1] + (f"  (others at {np.round(rest, 2).tolist()})"
                                           if rest.size else ""))  # fmt: skip
    ax.set_title(f"{system.name} {title}".strip(), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def energies(ts, curves: dict, path: Path) -> None:
    """The learned energy along each rollout against time, one panel per entry of ``curves``
    (name -> ``(N, T)`` energies)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3), squeeze=False)
    for ax, (name, values) in zip(axes[0], curves.items()):
        for e in np.asarray(values):
            ax.plot(np.asarray(ts), e, lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("t")
    axes[0][0].set_ylabel("learned energy")
    fig.tight_layout()
    save(fig, path)


def draw_figures(config, prep, firsts: dict) -> bool:
    """Every figure of a run, from the adapted models and trained states on disk (``firsts``:
    method -> the seed to draw, its first finished one). Trained states stay on the machine
    that made them unless committed, so a clone may hold the records but not the states: then
    no figure is redrawn, the files there are kept (each names the methods it shows), and a
    line says so. Returns whether the figures were drawn."""
    from . import pipeline, store
    from .registry import KSHOT_ORDER

    kshot = next((m for m in KSHOT_ORDER if m in firsts), None)
    needed = [store.adapted_path(config, n, s) for n, s in firsts.items()]
    if kshot is not None:
        needed.append(store.state_path(config, kshot, firsts[kshot]))
    missing = [p for p in needed if not p.exists()]
    if missing:
        pipeline.say(f"figures in {config.out} not redrawn: {len(missing)} trained state(s) are "
                     f"not on disk, e.g. {missing[0]} (states stay where they were trained); "
                     "the figures there are kept as last drawn")  # fmt: skip
        return False
    test = prep.dataset.test
    adapted = {n: pipeline.load_adapted(config, prep, n, s) for n, s in firsts.items()}
    if kshot is not None:
        state = pipeline.load_state(config, prep, kshot, firsts[kshot])
        learner = pipeline.make_learner(kshot, config, prep.loss_scale)
        kshot_fields(prep.system, test, learner, state, config.out / f"kshot_{kshot}.png")
    if adapted:
        phase_portraits(prep.system, test, adapted, config.out / "fields.png")
        trajectories(prep.system, test, adapted, config.out / "trajectories.png")
    return True
