"""Trajectory data: Diffrax simulation, finite differences, task sets and the disk cache."""

from ._cache import load_or_generate as load_or_generate
from ._dataset import (
    Dataset as Dataset,
)
from ._dataset import (
    TaskSet as TaskSet,
)
from ._dataset import (
    generate_dataset as generate_dataset,
)
from ._dataset import (
    split_counts as split_counts,
)
from ._simulate import finite_difference as finite_difference
from ._simulate import simulate as simulate
