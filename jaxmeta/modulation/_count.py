"""Parameter counts of modulated and plain models (README table)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from ..nn import HNN
from ._base import AbstractModulation
from ._full_weight import FullWeight
from ._low_rank import LowRank
from ._modulated import Modulated, modulate
from ._multi_rank import MultiRank
from ._rank_one import RankOne
from ._shift import Shift


def _is_parameter(x) -> bool:
    # Arrays, or their shapes from `eqx.filter_eval_shape` (counting needs no values).
    if isinstance(x, jax.ShapeDtypeStruct):
        return jnp.issubdtype(x.dtype, jnp.inexact)
    return eqx.is_inexact_array(x)


def _size(tree: PyTree) -> int:
    leaves = jax.tree_util.tree_leaves(tree)
    return int(sum(math.prod(leaf.shape) for leaf in leaves if _is_parameter(leaf)))


def count_parameters(model: PyTree) -> dict[str, int]:
    """Shared (meta) and per-task parameter counts.

    - A `Modulated`: ``shared`` = base weights + hypernetwork (+ `MultiRank` bases),
      ``per_task`` = ``latent_dim`` (only the latent is adapted per task).
    Works on arrays and on `eqx.filter_eval_shape` outputs alike.

    - A plain model (MAML, Reptile, ANIL's backbone): ``shared`` = all its parameters (the
      meta-learned initialisation) and ``per_task`` = all of them again (each task adapts a
      full copy).
    """
    if isinstance(model, Modulated):
        return {"shared": _size(model), "per_task": model.latent_dim}
    size = _size(model)
    if size == 0:
        raise ValueError(f"`model` has no inexact array parameters, got {model!r}."[:300])
    return {"shared": size, "per_task": size}


def parameter_table(
    state_dim: int = 2,
    *,
    width: int = 100,
    depth: int = 4,
    latent_dim: int = 10,
    rank: int = 5,
) -> str:
    """A Markdown table of parameter counts of an `HNN` under every modulation.

    **Arguments:** the `HNN` size (`state_dim`, `width`, `depth`), the latent size and the
    rank of `LowRank` and `MultiRank`.

    **Returns:** the table as a Markdown string (rows: MAML/Reptile and the five modulations).
    """
    # Shapes only (`eqx.filter_eval_shape`): nothing is initialised or compiled.
    key = jax.random.key(0)
    model = eqx.filter_eval_shape(HNN, state_dim, width=width, depth=depth, key=key)
    mods: list[tuple[str, AbstractModulation]] = [
        ("Shift", Shift()),
        ("FW (FullWeight)", FullWeight()),
        ("RO (RankOne)", RankOne()),
        (f"LowRank(rank={rank})", LowRank(rank)),
        (f"MR (MultiRank, rank={rank})", MultiRank(rank=rank)),
    ]
    plain = count_parameters(model)
    lines = [
        f"HNN state_dim={state_dim}, width={width}, depth={depth} "
        f"({depth + 1} linear layers), latent_dim={latent_dim}.",
        "",
        "| method | codes | shared params | per-task params |",
        "|---|---:|---:|---:|",
        f"| MAML / Reptile (plain HNN) | – | {plain['shared']:,} | {plain['per_task']:,} |",
    ]
    for name, mod in mods:
        modulated = eqx.filter_eval_shape(modulate, model, mod, latent_dim=latent_dim, key=key)
        counts = count_parameters(modulated)
        codes = modulated.hypernet.num_codes
        lines.append(f"| {name} | {codes:,} | {counts['shared']:,} | {counts['per_task']:,} |")
    return "\n".join(lines) + "\n"
