"""Full-weight modulation (CoDA): ``W_ℓ + ΔW_ℓ(z)``, ``b_ℓ + Δb_ℓ(z)``."""

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._base import AbstractStatelessModulation, layer_shape, replace_layer, zero_code_bias


class FullWeight(AbstractStatelessModulation):
    """Full-weight modulation ``W_ℓ + ΔW_ℓ(z)``, ``b_ℓ + Δb_ℓ(z)`` (paper eq. 11, CoDA).

    ``ΔW_ℓ`` is a full ``out × in`` matrix from the hypernetwork. Codes per layer:
    ``out·in (+ out)``. The most expressive and by far the largest hypernetwork.
    """

    def _check_layers(self, layers: list[eqx.nn.Linear]) -> None:
        del layers

    def code_bias(self, model: PyTree, *, key: PRNGKeyArray) -> Float[Array, " codes"]:
        del key
        return zero_code_bias(self, model)

    def _layer_num_codes(self, index: int, layer: eqx.nn.Linear) -> int:
        out_size, in_size, has_bias = layer_shape(layer)
        return out_size * in_size + (out_size if has_bias else 0)

    def _modulate_layer(
        self, index: int, layer: eqx.nn.Linear, codes: Float[Array, " c"]
    ) -> eqx.nn.Linear:
        out_size, in_size, has_bias = layer_shape(layer)
        n_w = out_size * in_size
        weight = layer.weight + codes[:n_w].reshape(out_size, in_size)
        bias = layer.bias + codes[n_w:] if has_bias else None
        return replace_layer(layer, weight, bias)
