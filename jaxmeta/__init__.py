"""jaxmeta: meta-learning structure-preserving dynamics in JAX."""

import importlib.metadata

from . import (
    data as data,
    metrics as metrics,
    rollout as rollout,
    solvers as solvers,
    systems as systems,
)

__version__ = importlib.metadata.version("jaxmeta")
