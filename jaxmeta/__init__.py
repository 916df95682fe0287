"""jaxmeta: meta-learning structure-preserving dynamics in JAX."""

import importlib.metadata

from . import (
    data as data,
    meta as meta,
    metrics as metrics,
    modulation as modulation,
    nn as nn,
    rollout as rollout,
    solvers as solvers,
    systems as systems,
)

__version__ = importlib.metadata.version("jaxmeta")
