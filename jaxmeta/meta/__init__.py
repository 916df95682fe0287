"""Meta-learners (auto-decoding, MAML, ANIL, Reptile, Scratch), their one trainer, test-time
adaptation (the paper's fixed steps, or to convergence), seeds as a batch axis and the task
axis sharded over devices."""

from ._autodecoding import AutoDecoding as AutoDecoding
from ._base import (
    AbstractMetaLearner as AbstractMetaLearner,
    AbstractMetaTrained as AbstractMetaTrained,
    Adapted as Adapted,
    MetaState as MetaState,
)
from ._converged import (
    Converged as Converged,
    ConvergedAdapted as ConvergedAdapted,
    adapt_converged as adapt_converged,
)
from ._identify import LatentMap as LatentMap, fit_latent_map as fit_latent_map
from ._inner import optimise as optimise, optimise_path as optimise_path
from ._maml import ANIL as ANIL, MAML as MAML
from ._optimisation import inner_adam as inner_adam, last_layer_spec as last_layer_spec
from ._reptile import Reptile as Reptile
from ._result import History as History, TrainResult as TrainResult
from ._scratch import Scratch as Scratch
from ._sharding import largest_divisor as largest_divisor, task_mesh as task_mesh
from ._trainer import (
    adapt as adapt,
    fit as fit,
    fit_seeds as fit_seeds,
    flatten_query as flatten_query,
    flatten_support as flatten_support,
    validation_error as validation_error,
)
