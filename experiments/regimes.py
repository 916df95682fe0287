"""Named task regimes: per system, the field overrides that set its parameter and
initial-condition ranges (the paper's Table 3 was lost in conversion).

A regime maps each system name to overrides in the form of ``--set FIELD=VALUE``, applied with
``jaxmeta.systems.get_system(name, **overrides)``:

- ``"ours"``: jaxmeta's own defaults (no overrides), the regime of every result before the
  calibration.

``python -m experiments.calibrate`` measures Scratch (the paper's 4×100 baseline, no
meta-learning) under each regime beside the paper's Scratch row; ``results/calibration/README.md``
gives the candidates measured and the reasons for the choice.
"""

from typing import Any

from jaxmeta import systems

REGIMES: dict[str, dict[str, dict[str, Any]]] = {
    "ours": {name: {} for name in systems.SYSTEMS},
}


def regime_overrides(regime: str, system: str) -> dict[str, Any]:
    """The system field overrides of ``regime`` for ``system`` (a fresh dict)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; valid: {', '.join(REGIMES)}")
    if system not in systems.SYSTEMS:
        raise ValueError(f"unknown system {system!r}; valid: {', '.join(systems.SYSTEMS)}")
    return dict(REGIMES[regime].get(system, {}))
