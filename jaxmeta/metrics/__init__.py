"""Evaluation metrics (paper §4, "Evaluation metric"): trajectory and field errors, field
SSIM, the rollout error, and structure checks (energy drift, entropy production, GENERIC
degeneracy residuals).

Every metric acts on one model; evaluate a stacked batch of per-function models with
``eqx.filter_vmap`` outside, e.g. ``eqx.filter_vmap(trajectory_error)(models,
taskset.query_xs, taskset.query_dxs)`` gives one error per test function. `evaluate` scores
a batch of adapted models on a test split with every metric at once (`paper_scores`: the
paper's only; `own_energies`: each model's energy along its own rollouts).
"""

from ._field import (
    field_error as field_error,
    field_ssim as field_ssim,
    field_values as field_values,
)
from ._rollout_error import (
    rollout_error as rollout_error,
    rollout_errors as rollout_errors,
)
from ._scores import (
    ENERGY_SUBSTEPS as ENERGY_SUBSTEPS,
    evaluate as evaluate,
    own_energies as own_energies,
    paper_scores as paper_scores,
)
from ._structure import (
    degeneracy_residuals as degeneracy_residuals,
    energy_drift as energy_drift,
    entropy_production as entropy_production,
)
from ._trajectory import trajectory_error as trajectory_error
