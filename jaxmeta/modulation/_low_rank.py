"""Low-rank modulation: ``W_ℓ + U_ℓ(z) V_ℓ(z)ᵀ``, ``b_ℓ + s_ℓ(z)`` (paper, later version)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .._checks import check_int
from ._base import AbstractStatelessModulation, layer_shape, linear_layers, replace_layer


def layer_rank(rank: int, layer: eqx.nn.Linear) -> int:
    """Rank used on one layer: ``min(rank, out, in)`` (a rank-r term cannot exceed it)."""
    out_size, in_size, _ = layer_shape(layer)
    return min(rank, out_size, in_size)


def check_layer_ranks(rank: int, layers: list[eqx.nn.Linear]) -> None:
    """Raise if `rank` exceeds ``min(out, in)`` of every layer (then it is surely a mistake).

    On a layer narrower than `rank` (an HNN's 2 → 100 input layer with ``rank=5``) the rank is
    clipped to ``min(out, in)``: the correction is then as expressive as it can be.
    """
    widest = max(min(layer_shape(lay)[:2]) for lay in layers)
    if rank > widest:
        raise ValueError(
            f"`rank` must be at most the largest min(out, in) over the linear layers "
            f"({widest}), got rank={rank!r}."
        )


def low_rank_num_codes(rank: int, layer: eqx.nn.Linear) -> int:
    out_size, in_size, has_bias = layer_shape(layer)
    return layer_rank(rank, layer) * (out_size + in_size) + (out_size if has_bias else 0)


def low_rank_layer(rank: int, layer: eqx.nn.Linear, codes) -> eqx.nn.Linear:
    """``W + U Vᵀ``, ``b + s`` with codes laid out as ``[U (out·r), V (in·r), s (out)]``."""
    out_size, in_size, has_bias = layer_shape(layer)
    r = layer_rank(rank, layer)
    u = codes[: out_size * r].reshape(out_size, r)
    v = codes[out_size * r : (out_size + in_size) * r].reshape(in_size, r)
    bias = layer.bias + codes[(out_size + in_size) * r :] if has_bias else None
    return replace_layer(layer, layer.weight + u @ v.T, bias)


def low_rank_code_bias(rank: int, model: PyTree, *, key: PRNGKeyArray) -> Float[Array, " c"]:
    """LoRA-style hypernetwork bias: ``U`` and ``s`` parts zero, ``V`` part ``N(0, 1/in)``.

    Then the zero latent gives the base model exactly, and the gradient in ``U`` (hence in the
    latent) is not zero there: with both factors zero the bilinear ``U Vᵀ`` is a saddle.
    """
    parts = []
    for layer, k in zip(linear_layers(model), jax.random.split(key, len(linear_layers(model)))):
        out_size, in_size, has_bias = layer_shape(layer)
        r, dtype = layer_rank(rank, layer), layer.weight.dtype
        v = jax.random.normal(k, (in_size * r,), dtype) / jnp.sqrt(in_size).astype(dtype)
        tail = jnp.zeros(out_size if has_bias else 0, dtype)
        parts += [jnp.zeros(out_size * r, dtype), v, tail]
    return jnp.concatenate(parts)


class LowRank(AbstractStatelessModulation):
    """Low-rank modulation ``W_ℓ + U_ℓ(z) V_ℓ(z)ᵀ``, ``b_ℓ + s_ℓ(z)`` (paper eq. 6 at rank r).

    ``U_ℓ ∈ R^{out×r}``, ``V_ℓ ∈ R^{in×r}`` and ``s_ℓ`` all come from the hypernetwork (the
    later version's "MR"; ``LowRank(1)`` equals `RankOne`). On layers with
    ``min(out, in) < rank`` the rank is clipped to ``min(out, in)``. Codes per layer:
    ``r_ℓ (out + in) (+ out)``. The hypernetwork bias starts LoRA-style (`code_bias`).
    """

    rank: int = eqx.field(static=True)

    def __check_init__(self):
        check_int("rank", self.rank)

    def _check_layers(self, layers: list[eqx.nn.Linear]) -> None:
        check_layer_ranks(self.rank, layers)

    def _layer_num_codes(self, index: int, layer: eqx.nn.Linear) -> int:
        return low_rank_num_codes(self.rank, layer)

    def _modulate_layer(
        self, index: int, layer: eqx.nn.Linear, codes: Float[Array, " c"]
    ) -> eqx.nn.Linear:
        return low_rank_layer(self.rank, layer, codes)

    def code_bias(self, model: PyTree, *, key: PRNGKeyArray) -> Float[Array, " codes"]:
        check_layer_ranks(self.rank, linear_layers(model))
        return low_rank_code_bias(self.rank, model, key=key)
