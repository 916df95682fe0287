"""Shift modulation (functa): ``b_ℓ + s_ℓ(z)``."""

import equinox as eqx
from jaxtyping import Array, Float

from ._base import AbstractModulation, layer_shape, replace_layer


class Shift(AbstractModulation):
    """Shift modulation ``b_ℓ + s_ℓ(z)`` of every biased linear layer (spec §3, functa).

    Codes per layer: ``out`` (``0`` for a layer without bias, which is left unchanged).
    """

    def _layer_num_codes(self, index: int, layer: eqx.nn.Linear) -> int:
        out_size, _, has_bias = layer_shape(layer)
        return out_size if has_bias else 0

    def _modulate_layer(
        self, index: int, layer: eqx.nn.Linear, codes: Float[Array, " c"]
    ) -> eqx.nn.Linear:
        if layer.bias is None:
            return layer
        return replace_layer(layer, layer.weight, layer.bias + codes)
