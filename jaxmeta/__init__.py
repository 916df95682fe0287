"""jaxmeta: meta-learning structure-preserving dynamics in JAX."""

import importlib.metadata

from . import (
    conservation as conservation,
    data as data,
    metrics as metrics,
    modulation as modulation,
    nn as nn,
    rollout as rollout,
    systems as systems,
)

__version__ = importlib.metadata.version("jaxmeta")
