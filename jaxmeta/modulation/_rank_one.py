"""Rank-one modulation: ``W_ℓ + u_ℓ(z) v_ℓ(z)ᵀ``, ``b_ℓ + s_ℓ(z)`` (paper)."""

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._base import AbstractStatelessModulation
from ._low_rank import low_rank_code_bias, low_rank_layer, low_rank_num_codes


class RankOne(AbstractStatelessModulation):
    """Rank-one modulation ``W_ℓ + u_ℓ(z) v_ℓ(z)ᵀ``, ``b_ℓ + s_ℓ(z)`` (paper eqs. 6-7, 12: "RO").

    ``u_ℓ ∈ R^out``, ``v_ℓ ∈ R^in``, ``s_ℓ`` all from the hypernetwork; the same map as
    ``LowRank(1)``. Codes per layer: ``out + in (+ out)``. The hypernetwork bias starts
    LoRA-style: ``u`` part zero, ``v`` part random (see `LowRank`).
    """

    def _check_layers(self, layers: list[eqx.nn.Linear]) -> None:
        del layers  # rank 1 fits every layer

    def _layer_num_codes(self, index: int, layer: eqx.nn.Linear) -> int:
        return low_rank_num_codes(1, layer)

    def _modulate_layer(
        self, index: int, layer: eqx.nn.Linear, codes: Float[Array, " c"]
    ) -> eqx.nn.Linear:
        return low_rank_layer(1, layer, codes)

    def code_bias(self, model: PyTree, *, key: PRNGKeyArray) -> Float[Array, " codes"]:
        return low_rank_code_bias(1, model, key=key)
