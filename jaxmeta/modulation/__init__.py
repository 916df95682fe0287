"""Modulations: per-task corrections of every linear layer of a model by a latent (paper
§3.1, App. B).

A modulation is a pure transform ``apply(model, codes) -> model`` of any pytree holding
``eqx.nn.Linear`` layers (an `HNN`, a `GNN`, an MLP, Flax Dense parameters via the adapter);
a linear `Hypernet` maps the task latent ``z`` to the codes, and `Modulated` bundles both.
"""

from ._base import (
    AbstractModulation as AbstractModulation,
    AbstractStatelessModulation as AbstractStatelessModulation,
    linear_layers as linear_layers,
)
from ._count import count_parameters as count_parameters, parameter_table as parameter_table
from ._flax import (
    flax_num_codes as flax_num_codes,
    linears_from_flax as linears_from_flax,
    linears_to_flax as linears_to_flax,
    mlp_from_flax as mlp_from_flax,
    modulate_flax as modulate_flax,
)
from ._full_weight import FullWeight as FullWeight
from ._hypernet import Hypernet as Hypernet
from ._low_rank import LowRank as LowRank
from ._modulated import Modulated as Modulated, modulate as modulate
from ._multi_rank import MultiRank as MultiRank
from ._rank_one import RankOne as RankOne
from ._shift import Shift as Shift
