"""jaxmeta: meta-learning structure-preserving dynamics in JAX.

Data flows one way: `systems` (ground truth) -> `data` (`TaskSet`s) -> `nn` (HNN, GENERIC NN)
-> `modulation` (latent-driven transforms of their MLPs) -> `meta` (meta-learners, their
trainer) -> `rollout` / `metrics`; `conservation` holds ConCerNet, `solvers` the Diffrax
solvers jaxmeta adds, `io` checkpoints.
"""

import importlib.metadata

from . import (
    conservation as conservation,
    data as data,
    io as io,
    losses as losses,
    meta as meta,
    metrics as metrics,
    modulation as modulation,
    nn as nn,
    solvers as solvers,
    systems as systems,
)
from ._rollout import rollout as rollout, symplectic_rollout as symplectic_rollout

__version__ = importlib.metadata.version("jaxmeta")
