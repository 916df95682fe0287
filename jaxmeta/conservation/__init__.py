"""ConCerNet: contrastively learned invariants imposed on learned dynamics by projection, and
Meta-ConCerNet, its modulated, meta-learned variant on a parametric family. The systems, with
their known invariants, are `jaxmeta.systems`' (`jaxmeta.systems.CONSERVED_SYSTEMS`)."""

from ._autoencoder import (
    Autoencoder as Autoencoder,
    to_latent as to_latent,
    train_autoencoder as train_autoencoder,
)
from ._contrastive import InvariantNet as InvariantNet, contrastive_loss as contrastive_loss
from ._evaluate import RolloutMetrics as RolloutMetrics, evaluate as evaluate
from ._fit import ConCerNetFit as ConCerNetFit
from ._meta_adapt import MetaAdapted as MetaAdapted, adapt_meta_concernet as adapt_meta_concernet
from ._meta_model import MetaConCerNet as MetaConCerNet
from ._meta_train import (
    train_meta_dynamics as train_meta_dynamics,
    train_meta_invariant as train_meta_invariant,
)
from ._projection import Projected as Projected
from ._train import (
    field_only as field_only,
    train_dynamics as train_dynamics,
    train_invariant as train_invariant,
)
from ._trajectories import Trajectories as Trajectories, make_trajectories as make_trajectories
