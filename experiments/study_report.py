"""The study's tables and the verdicts its protocol fixes (``results/study/PROTOCOL.md``),
computed from the finished units of ``experiments.study``."""

import json
from pathlib import Path

import numpy as np

from .registry import METHODS, MODULATIONS
from .report import verdict_lines
from .study import (
    BASE,
    CARRIERS,
    LONG_SYSTEMS,
    SEEDS,
    STAGES,
    SYSTEMS,
    VARIANTS,
    Variant,
    stage_systems,
    stage_variants,
    units,
)
from .verdict import OPTIMISATION

PROTOCOLS = ("paper", "converged")
METRIC = "trajectory_error"
# The paper's ordering holds under a choice when both carriers beat the best
# optimisation-based method on at least this many of the systems (of six).
HOLDS_ON = 5


def _records(out: Path, stage: str, system: str, variant: Variant, method: str) -> list[dict]:
    """Every seed's ``metrics.json`` of a finished unit (all seeds), else []."""
    paths = [out / stage / system / variant.name / method / f"seed{s}" / "metrics.json"
             for s in SEEDS]  # fmt: skip
    if not all(p.exists() for p in paths):
        return []
    return [json.loads(p.read_text()) for p in paths]


def _value(record: dict, protocol: str, metric: str = METRIC):
    scores = record if protocol == "paper" else record.get("converged", {})
    return scores.get(metric)


def summary(records: list[dict], protocol: str, metric: str = METRIC) -> dict | None:
    values = [_value(r, protocol, metric) for r in records]
    if not records or any(v is None for v in values):
        return None
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "per_seed": arr.tolist()}


def _cell(s: dict | None) -> str:
    return "–" if s is None else f"{s['mean']:.3f} ± {s['std']:.3f}"


def collect(out: Path) -> dict:
    """``{(stage, system, variant name, method): [records]}`` of every finished unit."""
    found = {}
    for stage in STAGES:
        for system in SYSTEMS:
            for variant in VARIANTS:
                for method in METHODS:
                    records = _records(out, stage, system, variant, method)
                    if records:
                        found[stage, system, variant.name, method] = records
    return found


def errors(found: dict, stage: str, system: str, protocol: str) -> dict:
    """``{(variant, method): mean error}`` of one (stage, system) under ``protocol``."""
    out = {}
    for (st, sy, variant, method), records in found.items():
        if (st, sy) == (stage, system) and (s := summary(records, protocol)) is not None:
            out[variant, method] = s["mean"]
    return out


def carriers_beat(errs: dict, variant: str) -> bool | None:
    """Whether both carriers in ``variant`` beat the best optimisation-based method (base);
    None while a needed unit is missing."""
    needed = [("base", m) for m in OPTIMISATION] + [(variant, c) for c in CARRIERS]
    if any(k not in errs for k in needed):
        return None
    best = min(errs["base", m] for m in OPTIMISATION)
    return all(errs[variant, c] < best for c in CARRIERS)


def choices(found: dict, stage: str) -> dict:
    """``{(protocol, variant): {system: bool | None}}``: where both carriers beat the best
    optimisation-based method under each choice of the stage (rule 2 of the protocol)."""
    return {
        (protocol, variant.name): {
            system: carriers_beat(errors(found, stage, system, protocol), variant.name)
            for system in stage_systems(stage)
        }
        for protocol in PROTOCOLS
        for variant in stage_variants(stage, long_variant(found))
    }


def _holds(row: dict, need: int) -> tuple[bool | None, int, int]:
    """(holds, systems where it does, systems undecided): None while undecided."""
    yes = sum(v is True for v in row.values())
    unknown = sum(v is None for v in row.values())
    if yes >= need:
        return True, yes, unknown
    if yes + unknown < need:
        return False, yes, unknown
    return None, yes, unknown


def choice_verdicts(found: dict, stage: str) -> list[str]:
    """Rule 2: the ordering holds under a choice when both carriers beat the best
    optimisation-based method on at least `HOLDS_ON` of the six systems (stage e2000; both
    systems at e10000); a choice flips it when it holds under it and not under the base
    choice (paper protocol, base variant). Undecided while units are missing."""
    table = choices(found, stage)
    need = HOLDS_ON if stage == "e2000" else len(LONG_SYSTEMS)
    base, *_ = _holds(table["paper", "base"], need)
    lines = []
    for (protocol, variant), row in table.items():
        holds, yes, unknown = _holds(row, need)
        if holds is None:
            word = f"undecided ({unknown} system(s) missing)"
        else:
            word = "holds" if holds else "does not hold"
            if unknown:
                word += f" ({unknown} system(s) missing cannot change it)"
        if holds and base is False:
            word += "; flips it"
        where = ", ".join(s for s, v in row.items() if v) or "none"
        lines.append(f"| {protocol} | {variant} | {yes} of {len(row)}: {where} | {word} |")
    return lines


def variant_ratios(found: dict) -> dict[str, float | None]:
    """Rule 3's scores: for each non-base variant, the mean over the six systems and both
    carriers of its stage-e2000 converged-protocol trajectory error relative to the base
    variant's; None while a needed unit is missing."""
    scores = {}
    for variant in VARIANTS[1:]:
        ratios = []
        for system in SYSTEMS:
            errs = errors(found, "e2000", system, "converged")
            ratios += [errs[variant.name, c] / errs["base", c] for c in CARRIERS
                       if (variant.name, c) in errs and ("base", c) in errs]  # fmt: skip
        complete = len(ratios) == len(SYSTEMS) * len(CARRIERS)
        scores[variant.name] = float(np.mean(ratios)) if complete else None
    return scores


def long_variant(found: dict) -> str | None:
    """The variant stage e10000 repeats (rule 3 of the protocol): the non-base variant with
    the lowest `variant_ratios` score. None (undecided) until every score is known."""
    return _pick(variant_ratios(found))


def _pick(scores: dict[str, float | None]) -> str | None:
    if any(v is None for v in scores.values()):
        return None
    return min(scores, key=scores.get)


def _rule_three(found: dict) -> list[str]:
    scores = variant_ratios(found)
    pick = _pick(scores)
    lines = ["### Rule 3: the variant stage e10000 repeats\n",
             "Mean over the six systems and both carriers of the converged trajectory error "
             "relative to the base variant's, at stage e2000:\n",
             "| variant | mean ratio to base |", "|---|---|"]  # fmt: skip
    lines += [f"| {v} | {'undecided' if r is None else f'{r:.3f}'} |" for v, r in scores.items()]
    lines.append(f"\nPicked: {pick}." if pick else "\nPicked: undecided (units missing).")
    return lines + [""]


def _method_table(found, stage, system) -> list[str]:
    head = ("| method | trajectory error, paper protocol | trajectory error, converged | "
            "field error, paper | field error, converged | support loss, paper → converged "
            "(median) | steps after the paper's (median) | tolerance met | seconds per function "
            "(median) | unit wall time (min) |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        records = found.get((stage, system, "base", method))
        if not records:
            lines.append(f"| {method} |" + " – |" * 9)
            continue
        conv = [r["converged"] for r in records]
        paper_loss = np.median([x for c in conv for x in c["paper_support_loss"]])
        loss = np.median([x for c in conv for x in c["support_loss"]])
        steps = np.median([x for c in conv for x in c["steps"]])
        secs = np.median([x for c in conv for x in c["seconds"]])
        met = [bool(x) for c in conv for x in c["converged"]]
        cells = [_cell(summary(records, p)) for p in PROTOCOLS]
        cells += [_cell(summary(records, p, "field_error")) for p in PROTOCOLS]
        cells += [f"{paper_loss:.3g} → {loss:.3g}", f"{steps:.0f}", f"{sum(met)} of {len(met)}",
                  f"{secs:.2f}", _wall(records)]  # fmt: skip
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


#: After a wall time that may leave out earlier processes' training time.
LAST_PROCESS = "†"
_LAST_PROCESS_NOTE = (
    f"{LAST_PROCESS} the time of the processes that ran the unit before the last one is not "
    "counted (recorded before they were, or resumed from such a record's checkpoint): an "
    "undercount if the unit was resumed (killed and continued)."
)


def _wall(records) -> str:
    """The unit's wall time (training and scoring its three seeds, every process that ran
    it), in minutes; `LAST_PROCESS` marks a record that counted only the last process."""
    seconds = records[0].get("unit_seconds")
    if seconds is None:
        return "–"
    known = records[0].get("unit_seconds_earlier") is not None
    return f"{seconds / 60:.1f}" + ("" if known else LAST_PROCESS)


def _latent_cell(records, path) -> str:
    values = []
    for r in records:
        node = r
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if not isinstance(node, int | float):
            return "–"
        values.append(node)
    return f"{np.mean(values):.3g}"


def _variant_table(found, stage, system) -> list[str]:
    head = ("| variant | method | trajectory error, paper | trajectory error, converged | "
            "training latents: median distance from their mean | test latents, paper: median "
            "largest move | at the reach bound | converged: median largest move | beyond the "
            "bound | unit wall time (min) |")  # fmt: skip
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|"]
    for variant in VARIANTS:
        for method in CARRIERS if variant is not BASE else tuple(MODULATIONS):
            records = found.get((stage, system, variant.name, method))
            if not records:
                continue
            cells = [_cell(summary(records, p)) for p in PROTOCOLS]
            cells += [_latent_cell(records, ("latents", "train_spread")),
                      _latent_cell(records, ("latents", "paper", "median_max_move")),
                      _latent_cell(records, ("latents", "paper", "at_reach")),
                      _latent_cell(records, ("converged", "latents", "median_max_move")),
                      _latent_cell(records, ("converged", "latents", "beyond_reach")),
                      _wall(records)]  # fmt: skip
            lines.append(f"| {variant.name} | {method} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []  # no modulation finished: no table


def either_protocol(found, stage, system) -> str | None:
    """Converged modulations against the optimisation-based methods' best under *either*
    protocol (a longer fit of all weights can overfit the support data, so the converged
    baseline can be worse than its own 100 steps). Not a rule of the protocol: added after
    the first units were seen, reported beside the rules, deciding nothing."""
    errs = {p: errors(found, stage, system, p) for p in PROTOCOLS}
    keys = [("base", m) for m in (*OPTIMISATION, *MODULATIONS)]
    if any(k not in errs[p] for p in PROTOCOLS for k in keys):
        return None
    best, where, method = min((errs[p]["base", m], p, m) for p in PROTOCOLS for m in OPTIMISATION)
    beat = [m for m in MODULATIONS if errs["converged"]["base", m] < best]
    return (
        f"- beside the rules (added after the first results, decides nothing): converged "
        f"modulations beating the optimisation-based best under either protocol ({method}, "
        f"{where}, {best:.3f}): {len(beat)}/{len(MODULATIONS)} ({', '.join(beat) or 'none'})"
    )


def protocol_figure(found: dict, stage: str, path: Path) -> list[str]:
    """``path``: one panel per system with finished base units, each method's mean trajectory
    error under the paper's protocol (open marker) and converged (filled), joined by a line;
    the modulations in colour. Returns the systems drawn (none: no file written)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    from .plots import plt, save

    systems = [s for s in stage_systems(stage) if any(k[:3] == (stage, s, "base") for k in found)]
    if not systems:
        return []
    # Wide enough for the title however few systems have finished.
    width = max(2.6 * len(systems), 4.8)
    fig, axes = plt.subplots(1, len(systems), figsize=(width, 3.1), squeeze=False)
    for ax, system in zip(axes[0], systems):
        errs = {p: errors(found, stage, system, p) for p in PROTOCOLS}
        for x, method in enumerate(METHODS):
            if ("base", method) not in errs["paper"]:
                continue
            paper, conv = (errs[p]["base", method] for p in PROTOCOLS)
            colour = "tab:blue" if method in MODULATIONS else "0.35"
            ax.plot([x, x], [paper, conv], color=colour, lw=1)
            ax.plot(x, paper, "o", mfc="white", mec=colour, ms=5)
            ax.plot(x, conv, "o", color=colour, ms=5)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(range(len(METHODS)), list(METHODS), rotation=90, fontsize=8)
        ax.set_xlim(-0.6, len(METHODS) - 0.4)  # every method's slot, however few have finished
        ax.set_title(system, fontsize=9)
    axes[0][0].set_ylabel("trajectory error (mean of 3 seeds)")
    fig.suptitle(f"Stage {stage}, base variant\npaper protocol (open), converged (filled); "
                 "modulations in blue",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    save(fig, path)
    return systems


def _support_check(found) -> str:
    """How many (unit, seed, function) have a converged support loss at or below the paper
    protocol's (the protocol's check; never a tolerance)."""
    total = ok = 0
    for records in found.values():
        for r in records:
            c = r.get("converged")
            if c is None:
                continue
            pairs = list(zip(c["support_loss"], c["paper_support_loss"]))
            total += len(pairs)
            ok += sum(a <= b for a, b in pairs)
    return (f"Converged support loss at or below the paper protocol's: {ok} of {total} "
            "(unit, seed, test function).")  # fmt: skip


def write_tables(out: Path) -> str:
    """``tables.md`` under ``out``: per stage and system, every method under both protocols
    with their verdicts, the carriers' variants with the latent statistics, then the
    protocol's rule 2 per stage. Returns the text."""
    found = collect(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = ["# The study's tables (made by `python -m experiments.study`; see PROTOCOL.md)\n",
             _support_check(found) + "\n"]  # fmt: skip
    for stage, epochs in STAGES.items():
        systems_done = [s for s in SYSTEMS if any(k[:2] == (stage, s) for k in found)]
        if not systems_done:
            continue
        parts.append(f"## Stage {stage}: {epochs} epochs, width 32, depth 2, seeds "
                     f"{list(SEEDS)}\n")  # fmt: skip
        # Stage e10000 adds the carriers of the variant stage e2000 picks (rule 3).
        planned = len(units(stage, SYSTEMS)) + (
            len(LONG_SYSTEMS) * len(CARRIERS) if stage == "e10000" else 0
        )
        done = sum(k[0] == stage for k in found)
        parts.append(f"Units finished: {done} of {planned} (a unit: one system, variant and "
                     "method, its three seeds).\n")  # fmt: skip
        if any(_wall(r).endswith(LAST_PROCESS) for k, r in found.items() if k[0] == stage):
            parts.append(f"Unit wall time: {_LAST_PROCESS_NOTE}\n")
        for system in systems_done:
            parts.append(f"### {system}\n")
            parts.append("\n".join(_method_table(found, stage, system)) + "\n")
            for protocol in PROTOCOLS:
                base = {m: {METRIC: summary(found[stage, system, "base", m], protocol)}
                        for m in METHODS if (stage, system, "base", m) in found}  # fmt: skip
                if len(base) == len(METHODS):
                    for line in verdict_lines(
                        system, {m: {k: v for k, v in s.items() if v} for m, s in base.items()}
                    ):
                        parts.append(f"- {protocol} protocol: {line}")
                else:
                    parts.append(f"- {protocol} protocol: verdict withheld, {len(base)} of "
                                 f"{len(METHODS)} methods finished")  # fmt: skip
            if (line := either_protocol(found, stage, system)) is not None:
                parts.append(line)
            variants = _variant_table(found, stage, system)
            parts.append("\n" + "\n".join(variants) + "\n" if variants else "")
        parts.append(f"### Rule 2 at stage {stage}: both carriers ({', '.join(CARRIERS)}) "
                     "beat the best optimisation-based method\n")  # fmt: skip
        parts.append("| protocol | variant | systems where they do | the paper's ordering |")
        parts.append("|---|---|---|---|")
        parts += choice_verdicts(found, stage)
        parts.append("")
        if stage == "e2000":
            parts += _rule_three(found)
        protocol_figure(found, stage, out / f"{stage}-protocols.png")
    text = "\n".join(parts) + "\n"
    (out / "tables.md").write_text(text)
    return text
