"""Trajectory data: Diffrax simulation, finite differences, task sets and the disk cache."""

from ._cache import load_or_generate as load_or_generate
from ._dataset import (
    Dataset as Dataset,
    estimate_dataset_bytes as estimate_dataset_bytes,
    generate_dataset as generate_dataset,
    split_counts as split_counts,
)
from ._from_arrays import taskset_from_arrays as taskset_from_arrays
from ._simulate import finite_difference as finite_difference, simulate as simulate
from ._taskset import TaskSet as TaskSet
