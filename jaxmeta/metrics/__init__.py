"""Evaluation metrics (paper §4, spec §5): trajectory and field errors, field SSIM, and
structure checks (energy drift, entropy production, GENERIC degeneracy residuals).

Every metric acts on one model; evaluate a stacked batch of per-function models with
``eqx.filter_vmap`` outside, e.g. ``eqx.filter_vmap(lambda m, xs: trajectory_errors(m, xs,
ts))(models, taskset.query_xs)`` gives the ``(functions, trajectories)`` errors.
"""

from ._field import (
    field_error as field_error,
    field_ssim as field_ssim,
    field_values as field_values,
)
from ._structure import (
    degeneracy_residuals as degeneracy_residuals,
    energy_drift as energy_drift,
    entropy_production as entropy_production,
)
from ._trajectory import (
    trajectory_error as trajectory_error,
    trajectory_errors as trajectory_errors,
)
