"""ConCerNet: contrastively learned invariants imposed on learned dynamics by projection, and
Meta-ConCerNet, its modulated, meta-learned variant on a parametric family."""

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
from ._evaluate import (
    RolloutMetrics as RolloutMetrics,
    evaluate as evaluate,
    rk4_rollout as rk4_rollout,
    score as score,
)
from ._family import SpringFamily as SpringFamily, family_trajectories as family_trajectories
from ._fit import ConCerNetFit as ConCerNetFit
from ._meta_adapt import MetaAdapted as MetaAdapted, adapt_meta_concernet as adapt_meta_concernet
from ._meta_model import MetaConCerNet as MetaConCerNet
from ._meta_train import (
    MetaConCerNetFit as MetaConCerNetFit,
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
    field_only as field_only,
    train_dynamics as train_dynamics,
    train_invariant as train_invariant,
)
