"""ConCerNet: contrastively learned invariants imposed on learned dynamics by projection."""

from ._autoencoder import (
    Autoencoder as Autoencoder,
    evaluate_latent as evaluate_latent,
    to_latent as to_latent,
    train_autoencoder as train_autoencoder,
)
from ._contrastive import (
    InvariantNet as InvariantNet,
    batch_normalise as batch_normalise,
    contrastive_loss as contrastive_loss,
    contrastive_loss_from_latents as contrastive_loss_from_latents,
    square_ratio_loss_from_latents as square_ratio_loss_from_latents,
)
from ._meta import (
    MetaAdapted as MetaAdapted,
    MetaConCerNet as MetaConCerNet,
    MetaTrainResult as MetaTrainResult,
    ParametricSpring as ParametricSpring,
    SpringFamily as SpringFamily,
    adapt as adapt,
    family_trajectories as family_trajectories,
    system_at as system_at,
    train_meta_dynamics as train_meta_dynamics,
    train_meta_invariant as train_meta_invariant,
)
from ._projection import (
    Projected as Projected,
    gram_schmidt as gram_schmidt,
    project as project,
    project_out as project_out,
)
from ._systems import (
    AbstractConservedSystem as AbstractConservedSystem,
    ChemicalKinetics as ChemicalKinetics,
    HeatEquation as HeatEquation,
    KeplerOrbit as KeplerOrbit,
    SpringMass as SpringMass,
    Trajectories as Trajectories,
    make_trajectories as make_trajectories,
)
from ._train import (
    RolloutMetrics as RolloutMetrics,
    TrainResult as TrainResult,
    evaluate as evaluate,
    field_only as field_only,
    rollout as rollout,
    train_dynamics as train_dynamics,
    train_invariant as train_invariant,
)
