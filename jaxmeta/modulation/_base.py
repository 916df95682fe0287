"""Modulations: pure transforms ``(model, codes) -> model`` of every linear layer of a pytree."""

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree


def _is_linear(x) -> bool:
    return isinstance(x, eqx.nn.Linear)


def linear_layers(model: PyTree) -> list[eqx.nn.Linear]:
    """Every ``eqx.nn.Linear`` of a pytree, in `jax.tree_util` flattening order.

    Layers are found by type (never by attribute name), so this works on an ``eqx.nn.MLP``,
    an `HNN`, both MLPs and the friction core of a `GNN`, or a tuple of layers.

    **Raises:** `TypeError` if the pytree holds no ``eqx.nn.Linear``.
    """
    leaves = jax.tree_util.tree_leaves(model, is_leaf=_is_linear)
    layers = [leaf for leaf in leaves if _is_linear(leaf)]
    if not layers:
        raise TypeError(
            f"`model` must contain at least one eqx.nn.Linear to modulate, got a "
            f"{type(model).__name__} with none: {model!r}."[:400]
        )
    return layers


def layer_shape(layer: eqx.nn.Linear) -> tuple[int, int, bool]:
    """``(out, in, has_bias)`` of a linear layer; ``"scalar"`` sizes count as 1."""
    out_size, in_size = layer.weight.shape
    return out_size, in_size, layer.bias is not None


def replace_layer(layer: eqx.nn.Linear, weight, bias) -> eqx.nn.Linear:
    """A copy of `layer` with a new weight (and bias, when the layer has one)."""
    if layer.bias is None:
        return eqx.tree_at(lambda lay: lay.weight, layer, weight)
    return eqx.tree_at(lambda lay: (lay.weight, lay.bias), layer, (weight, bias))


class AbstractModulation(eqx.Module):
    """A per-task correction of every linear layer of a model by a flat code vector.

    A modulation is a pure function ``apply(model, codes) -> model`` (paper App. B): the codes
    (the output of the hypernetwork, ``codes = A z + c``) are split layer by layer, in
    `linear_layers` order, and each ``eqx.nn.Linear`` is replaced with ``eqx.tree_at``.
    **All** linear layers are modulated, the output layer included (our choice):
    the paper does not restrict it and the output layer is where a shift in energy scale
    lives. Layers without bias get no bias code. Zero codes return the base model exactly.

    `num_codes` and `apply` are final. A modulation implements the per-layer hooks
    (`_layer_num_codes`, `_modulate_layer`, `_check_layers`, `_check_bound`) and `init`,
    `code_bias`, `penalty`; one with no meta parameters of its own derives from
    `AbstractStatelessModulation`, which fixes `init`, `_check_bound` and `penalty`.
    """

    @abc.abstractmethod
    def _layer_num_codes(self, index: int, layer: eqx.nn.Linear) -> int:
        """Number of codes used by the `index`-th linear layer."""

    @abc.abstractmethod
    def _modulate_layer(
        self, index: int, layer: eqx.nn.Linear, codes: Float[Array, " c"]
    ) -> eqx.nn.Linear:
        """The corrected `index`-th linear layer."""

    @abc.abstractmethod
    def _check_layers(self, layers: list[eqx.nn.Linear]) -> None:
        """Raise if this modulation cannot be sized for these layers."""

    @abc.abstractmethod
    def _check_bound(self, layers: list[eqx.nn.Linear]) -> None:
        """Raise unless this modulation's own meta parameters (if any) fit these layers;
        checked before it acts (`apply`, `penalty`)."""

    @abc.abstractmethod
    def init(self, model: PyTree, *, key: PRNGKeyArray) -> "AbstractModulation":
        """This modulation bound to `model`'s layer shapes (creates meta parameters, if any)."""

    @abc.abstractmethod
    def code_bias(self, model: PyTree, *, key: PRNGKeyArray) -> Float[Array, " codes"]:
        """Initial bias of the hypernetwork, shape ``(num_codes(model),)``."""

    @abc.abstractmethod
    def penalty(self, model: PyTree, codes: Float[Array, " codes"]) -> Float[Array, ""]:
        """Regulariser added to the loss."""

    def num_codes(self, model: PyTree) -> int:
        """Length of the code vector that `apply` expects for `model`."""
        layers = linear_layers(model)
        self._check_layers(layers)
        return sum(self._layer_num_codes(i, lay) for i, lay in enumerate(layers))

    def _split(self, model: PyTree, codes) -> tuple[list[eqx.nn.Linear], list[Any]]:
        layers = linear_layers(model)
        self._check_layers(layers)
        self._check_bound(layers)
        sizes = [self._layer_num_codes(i, lay) for i, lay in enumerate(layers)]
        total = sum(sizes)
        if jnp.ndim(codes) != 1 or jnp.shape(codes)[0] != total:
            raise ValueError(
                f"`codes` must have shape ({total},) for {type(self).__name__} on this model "
                f"({len(layers)} linear layers), got shape {jnp.shape(codes)}; was the "
                "modulation or hypernetwork built for another model?"
            )
        chunks, start = [], 0
        for size in sizes:
            chunks.append(codes[start : start + size])
            start += size
        return layers, chunks

    def apply(self, model: PyTree, codes: Float[Array, " codes"]) -> PyTree:
        """`model` with every linear layer corrected by its slice of `codes`.

        **Arguments:**

        - `model`: any pytree holding ``eqx.nn.Linear`` layers (same structure is returned).
        - `codes`: flat vector of length ``num_codes(model)``.
        """
        layers, chunks = self._split(model, codes)
        new = [self._modulate_layer(i, lay, c) for i, (lay, c) in enumerate(zip(layers, chunks))]
        return eqx.tree_at(linear_layers, model, new)


def zero_code_bias(modulation: AbstractModulation, model: PyTree) -> Float[Array, " codes"]:
    """A zero hypernetwork bias for ``modulation`` on ``model``."""
    dtype = linear_layers(model)[0].weight.dtype
    return jnp.zeros(modulation.num_codes(model), dtype)


class AbstractStatelessModulation(AbstractModulation):
    """A modulation whose every parameter comes from the codes (no meta parameters of its
    own): `init` only checks the model, there is nothing to bind, and `penalty` is zero."""

    def _check_bound(self, layers: list[eqx.nn.Linear]) -> None:
        del layers

    def init(self, model: PyTree, *, key: PRNGKeyArray) -> "AbstractStatelessModulation":
        del key
        self.num_codes(model)
        return self

    def penalty(self, model: PyTree, codes: Float[Array, " codes"]) -> Float[Array, ""]:
        self._split(model, codes)
        return jnp.zeros((), jnp.result_type(codes))
