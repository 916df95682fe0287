"""Every table of ``experiments``: summaries over seeds, ``mean ± std`` cells, Markdown tables,
our numbers beside the paper's, and verdict tables. Nothing here trains or scores."""

from collections.abc import Iterable, Sequence

import numpy as np

#: The cell of a missing value.
MISSING = "–"


def summary(values: Iterable[float]) -> dict:
    """``{"mean", "std", "per_seed"}`` of per-seed values (population std, as every table)."""
    arr = np.asarray(list(values), dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "per_seed": arr.tolist()}


def cell(s: dict | None, spec: str = ".3f") -> str:
    """``"mean ± std"`` of a `summary` (or of any ``{"mean", "std"}``), `MISSING` for None."""
    if s is None:
        return MISSING
    return f"{s['mean']:{spec}} ± {s['std']:{spec}}"


def number(value: float | None, spec: str = ".3f") -> str:
    """One number, `MISSING` for None."""
    return MISSING if value is None else f"{value:{spec}}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table: the header row, the rule, then one line per row (cells as given)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# One run: results.json and table.md --------------------------------------------------------

# The paper's three metrics (§4), then ours: rollout error, structure, time.
PAPER_METRICS = ("trajectory_error", "field_error", "ssim")
EXTRA_METRICS = ("rollout_error", "max_energy_drift", "min_entropy_rate")
METRICS = (*PAPER_METRICS, "rollout_error", "energy_drift", "max_energy_drift",
           "min_entropy_rate", "max_degeneracy", "mu_r2", "train_seconds")  # fmt: skip
#: Marks an SSIM scored before it counted a negative luminance or structure term against the
#: match (records without ``ssim_definition``): those scores need their trained states to be
#: re-made.
OLD_SSIM = "†"
OLD_SSIM_NOTE = (f"{OLD_SSIM} SSIM of the earlier definition, which scored two negative terms "
                 "as a match (a reversed field scored +0.54): not comparable with the others.")  # fmt: skip


def paper_settings(config) -> dict:
    """`experiments.paper.paper_value`'s keywords for a run: its K, latent initialisation and
    the user's ``--set`` overrides only. A named regime keeps the paper's values: it is our
    reading of the paper's unstated ranges, not a departure from them; ``--set`` is."""
    return {"k": config.shots, "latent_init": config.latent_init, "overrides": config.set}


def table_header(config, k: int, platform: str) -> str:
    """A run table's title: system, budget, K, seeds, device, and any non-default setting."""
    preset = config.budget
    budget = (f"preset {config.preset}: {config.epochs} epochs, width {preset.width}, "
              f"depth {preset.depth}, K = {k}, seeds {list(config.seeds)}")  # fmt: skip
    header = f"### {config.system} (regime {config.regime}; {budget}; device {platform})"
    if config.latent_init != "mean":
        header += f"; latent init {config.latent_init}"
    if config.converged:
        header += "; also scored by the converged protocol"
    if config.overrides:
        header += "; system overrides " + ", ".join(f"{f} = {v!r}" for f, v in config.overrides)
    return header


def summarise(records: dict) -> dict:
    """One method's entry of ``results.json``: per metric the `summary` over its finished
    seeds (``records``: seed -> ``metrics.json``), the seeds, and whether its SSIM is of the
    earlier definition."""
    rows = list(records.values())
    out = {m: summary([r[m] for r in rows]) for m in METRICS if m in rows[0]}
    if "ssim" in out and not all(r.get("ssim_definition") == "signed" for r in rows):
        out["ssim"]["old_definition"] = True
    out["seeds"] = list(records)
    return out


def _ours(s: dict, metric: str, spec: str) -> str:
    if "diverged" in s:
        return "diverged"
    mark = OLD_SSIM if s.get(metric, {}).get("old_definition") else ""
    return cell(s.get(metric), spec) + mark


def method_table(system_name: str, summary_: dict, header: str, **paper) -> str:
    """The paper's metrics, ours (mean ± std over seeds) beside the paper's value (``paper``:
    `paper_value`'s ``k``, ``latent_init``, ``overrides``), then our extras (rollout error,
    max energy drift, min dS/dt) for each method."""
    from .paper import paper_value

    present = lambda names: [m for m in names if any(m in s for s in summary_.values())]
    cols, extras = present(PAPER_METRICS), present(EXTRA_METRICS)
    head = ["method"] + [x for c in cols for x in (f"{c} (ours)", f"{c} (paper)")]
    head += [f"{c} (ours)" for c in extras]
    rows = []
    for method, s in summary_.items():
        row = [method]
        for c in cols:
            row += [_ours(s, c, ".3f"), number(paper_value(system_name, method, c, **paper))]
        row += [_ours(s, c, ".3f" if c == "rollout_error" else ".2e") for c in extras]
        rows.append(row)
    old = any(s.get("ssim", {}).get("old_definition") for s in summary_.values())
    return f"{header}\n\n" + table(head, rows) + (f"\n{OLD_SSIM_NOTE}\n" if old else "")


def write_run(config, prep, done: dict, *, draw: bool = True) -> str:
    """Write a run's ``results.json``, ``table.md`` and figures from ``done``: method -> the
    records of its finished seeds (``{seed: record}``, possibly fewer than ``config.seeds``)
    or the message of its divergence. Returns the table."""
    from importlib.metadata import version

    import jax

    from . import plots, store

    summary_, histories, firsts = {}, {}, {}
    for name, records in done.items():
        if isinstance(records, str):
            summary_[name] = {"diverged": records}
        elif records:
            summary_[name] = summarise(records)
            histories.update({f"{name}/seed{s}": r["history"] for s, r in records.items()})
            firsts[name] = next(iter(records))
    header = table_header(config, prep.dataset.train.num_trajectories, jax.devices()[0].platform)
    text = method_table(config.system, summary_, header, **paper_settings(config))
    store.write_text(config.out / "table.md", text)
    results = {
        "system": config.system, "config": config.to_json(), "data_sha256": prep.data,
        "versions": {p: version(p) for p in ("jaxmeta", "jax", "equinox", "optax", "diffrax")},
        "device": str(jax.devices()[0]), "mesh": {"tasks": prep.devices},
        "k": prep.dataset.train.num_trajectories, "methods": summary_,
    }  # fmt: skip
    # "figures": the (method, seed) the figures on disk show; kept from the run that drew them
    # where this one cannot redraw them (None: not known).
    path = config.out / "results.json"
    previous = store.read_json(path).get("figures") if path.exists() else None
    drawn = draw and plots.draw_figures(config, prep, firsts)
    results["figures"] = firsts if drawn else previous
    store.write_json(path, results)
    plots.validation_curves(histories, config.out / "validation.png")
    return text


# Several runs side by side --------------------------------------------------------------


def glance(mains: dict, metric="trajectory_error", *, title="the main tables", paper=None) -> str:
    """One table, methods × columns, of ``metric`` (``mains``: column label -> (results.json's
    ``methods``, its config)): ours (mean ± std), with the paper's beside it where the paper
    reports the metric (`paper_value` with the keywords ``paper[label]``, else the run's own
    `paper_settings`). Methods without the metric are left out."""
    from .paper import paper_value

    has = lambda s, m: metric in s.get(m, {}) or "diverged" in s.get(m, {})
    methods = [m for m in dict.fromkeys(m for s, _ in mains.values() for m in s)
               if any(has(s, m) for s, _ in mains.values())]  # fmt: skip
    settings = {label: (paper or {}).get(label) or paper_settings(config)
                for label, (_, config) in mains.items()}  # fmt: skip
    ref = {(label, m): paper_value(config.system, m, metric, **settings[label])
           for label, (_, config) in mains.items() for m in methods}  # fmt: skip
    papered = any(v is not None for v in ref.values())
    rows = []
    for method in methods:
        row = [method]
        for label, (s, _) in mains.items():
            ours = _ours(s.get(method, {}), metric, ".3f")
            row.append(ours + (f" / {number(ref[label, method])}" if papered else ""))
        rows.append(row)
    head = f"## At a glance: {metric} of {title} (ours{' / paper' * papered})\n\n"
    return head + table(["method", *mains], rows)


def withheld(labels, partial) -> str:
    """The lines that say which of the columns ``labels`` get no verdict (``partial``)."""
    return "".join(f"\nNo verdict for {x}: its job is partial.\n" for x in labels if x in partial)


# Verdicts -------------------------------------------------------------------------------


def verdict_lines(system: str, summary_: dict, **paper) -> list[str]:
    """One line per paper metric of ``summary_`` (see `experiments.verdict.verdicts`),
    comparing our orderings with the paper's; the paper's side is left out where it reports
    no number."""
    from .verdict import verdicts

    lines = []
    for metric, v in verdicts(system, summary_, **paper).items():
        a, b = v["ours"], v["paper"]
        bits = []
        ref = lambda key, b=b: f" (paper {b[key][0]}/{b[key][1]})" if key in b else ""
        if "mod" in a:
            bits.append(f"modulations beating the best optimisation-based method {a['mod'][0]}/"
                        f"{a['mod'][1]}{ref('mod')}")  # fmt: skip
        if "opt" in a:
            bits.append(f"optimisation-based beating Scratch {a['opt'][0]}/{a['opt'][1]}"
                        f"{ref('opt')}")  # fmt: skip
        bits.append(f"best {a['best']}" + (f" (paper {b['best']})" if "best" in b else ""))
        verdict = "holds" if v["holds"] else "does not hold"
        lines.append(f"**{metric}**: the paper's ordering {verdict} here: " + "; ".join(bits) + ".")
    return lines


def verdict_table(per_system: dict) -> str:
    """One Markdown table of verdicts for several systems (``per_system``: system ->
    `experiments.verdict.verdicts`' dict): a row per (system, metric), ours beside the
    paper's counts."""
    count = lambda c, k: f"{c[k][0]}/{c[k][1]}" if k in c else MISSING
    head = ["system", "metric", "paper's ordering here",
            "modulations < best optimisation-based (ours / paper)",
            "optimisation-based < Scratch (ours / paper)", "best (ours / paper)"]  # fmt: skip
    rows = [[system, metric, "holds" if v["holds"] else "does not hold",
             f"{count(v['ours'], 'mod')} / {count(v['paper'], 'mod')}",
             f"{count(v['ours'], 'opt')} / {count(v['paper'], 'opt')}",
             f"{v['ours']['best']} / {v['paper'].get('best', MISSING)}"]
            for system, per_metric in per_system.items() for metric, v in per_metric.items()]  # fmt: skip
    return table(head, rows)


def summary_text(mains: dict, partial=()) -> str:
    """``summary.md``: the main tables side by side (trajectory and field error, ours beside
    the paper's; the R² of the latent -> mu map) and one table of the verdicts of every system
    not in ``partial`` (those with a main-job (method, seed) still to run)."""
    from .verdict import verdicts

    parts = [glance(mains, m) for m in ("trajectory_error", "field_error", "mu_r2")]
    table = verdict_table({
        system: verdicts(system, summary, **paper_settings(config))
        for system, (summary, config) in mains.items() if system not in partial
    })  # fmt: skip
    return (
        "\n".join(parts) + "\n## Verdicts of the main tables\n\n" + table
        + withheld(mains, partial)
    )  # fmt: skip


def varying_k_text(shots: dict, metric: str = "trajectory_error", partial=()) -> str:
    """``varying-k.md``: Tables 4-8 side by side (``shots``: system -> K -> (results.json's
    ``methods``, its config); the main job is the system's default K): ``metric``, ours
    beside the paper's at the same K, and the verdict on it of every (system, K) whose label
    ``"<system> K=<K>"`` is not in ``partial``. Each job's full table (every metric, every
    verdict) is in ``tables.md``."""
    from .verdict import verdicts

    columns, paper = {}, {}
    for system, by_k in shots.items():
        for k in sorted(by_k):
            label = f"{system} K={k}"
            columns[label] = by_k[k]
            paper[label] = {**paper_settings(by_k[k][1]), "k": k}
    text = glance(columns, metric, title="the varying-K tables 4-8", paper=paper)
    table = verdict_table({
        label: {metric: verdicts(config.system, summary, **paper[label])[metric]}
        for label, (summary, config) in columns.items() if label not in partial
    })  # fmt: skip
    verdict_title = f"## Verdicts of the varying-K tables ({metric})"
    return f"{text}\n{verdict_title}\n\n{table}" + withheld(columns, partial)
