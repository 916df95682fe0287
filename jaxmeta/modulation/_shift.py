"""Shift modulation (functa): ``b_ℓ + s_ℓ(z)``."""

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._base import AbstractStatelessModulation, layer_shape, replace_layer, zero_code_bias


class Shift(AbstractStatelessModulation):
    """Shift modulation ``b_ℓ + s_ℓ(z)`` of every biased linear layer (paper eq. 10, functa).

    Codes per layer: ``out`` (``0`` for a layer without bias, which is left unchanged).
    """

    def _check_layers(self, layers: list[eqx.nn.Linear]) -> None:
        del layers

    def code_bias(self, model: PyTree, *, key: PRNGKeyArray) -> Float[Array, " codes"]:
        del key
        return zero_code_bias(self, model)

    def _layer_num_codes(self, index: int, layer: eqx.nn.Linear) -> int:
        out_size, _, has_bias = layer_shape(layer)
        return out_size if has_bias else 0

    def _modulate_layer(
        self, index: int, layer: eqx.nn.Linear, codes: Float[Array, " c"]
    ) -> eqx.nn.Linear:
        if layer.bias is None:
            return layer
        return replace_layer(layer, layer.weight, layer.bias + codes)
