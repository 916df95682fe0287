"""One-line verdicts: does the paper's ordering hold in a results table?

The paper's claims (§5): modulation-based methods beat the optimisation-based ones (MAML,
Reptile, ANIL), which beat Scratch, and RO or MR is the best method. Each verdict counts how
often that holds in our means and in the paper's numbers for the same table, so a claim that
the paper's own table does not fully support is visible as such.
"""

from .paper import paper_value
from .registry import BASELINES, MODULATIONS

OPTIMISATION = tuple(m for m in BASELINES if m != "scratch")
LOWER_IS_BETTER = {"trajectory_error": True, "field_error": True, "ssim": False}


def _claims(values: dict, lower: bool) -> dict:
    """Counts of the paper's orderings among ``values`` (method -> number)."""
    better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
    mods = [m for m in MODULATIONS if m in values]
    opts = [m for m in OPTIMISATION if m in values]
    out = {}
    if mods and opts:
        best_opt = min(values[m] for m in opts) if lower else max(values[m] for m in opts)
        out["mod"] = (sum(better(values[m], best_opt) for m in mods), len(mods))
    if opts and "scratch" in values:
        out["opt"] = (sum(better(values[m], values["scratch"]) for m in opts), len(opts))
    if values:
        best = (min if lower else max)(values, key=values.get)
        out["best"] = best
    return out


def verdicts(system: str, summary: dict, **paper) -> dict:
    """Per paper metric of ``summary`` (method -> ``{metric: {"mean": ...}}``, as in
    ``results.json``): our counts of the paper's orderings (``"ours"``), the paper's counts
    for the same table (``"paper"``; `paper_value`'s keywords ``paper``; empty where it reports
    no number) and whether the whole ordering ``"holds"`` in ours."""
    out = {}
    for metric, lower in LOWER_IS_BETTER.items():
        ours = {m: s[metric]["mean"] for m, s in summary.items() if metric in s}
        if not ours:
            continue
        theirs = {m: paper_value(system, m, metric, **paper) for m in ours}
        theirs = {m: v for m, v in theirs.items() if v is not None}
        a, b = _claims(ours, lower), _claims(theirs, lower)
        holds = a["best"] in ("ro", "mr") and all(
            a[k][0] == a[k][1] for k in ("mod", "opt") if k in a
        )
        out[metric] = {"ours": a, "paper": b, "holds": holds}
    return out


def verdict_lines(system: str, summary: dict, **paper) -> list[str]:
    """One line per paper metric of ``summary`` (see `verdicts`), comparing our orderings with
    the paper's; the paper's side is left out where it reports no number."""
    lines = []
    for metric, v in verdicts(system, summary, **paper).items():
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
    """One Markdown table of `verdicts` for several systems (``per_system``: system ->
    `verdicts`' dict): a row per (system, metric), ours beside the paper's counts."""
    count = lambda c, k: f"{c[k][0]}/{c[k][1]}" if k in c else "–"
    lines = ["| system | metric | paper's ordering here | modulations < best optimisation-based "
             "(ours / paper) | optimisation-based < Scratch (ours / paper) | best (ours / paper) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for system, per_metric in per_system.items():
        for metric, v in per_metric.items():
            a, b = v["ours"], v["paper"]
            lines.append(f"| {system} | {metric} | {'holds' if v['holds'] else 'does not hold'} | "
                         f"{count(a, 'mod')} / {count(b, 'mod')} | {count(a, 'opt')} / "
                         f"{count(b, 'opt')} | {a['best']} / {b.get('best', '–')} |")  # fmt: skip
    return "\n".join(lines) + "\n"
