"""Verdicts: does the paper's ordering hold in a results table? (`experiments.report` writes
them as lines and tables.)

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
