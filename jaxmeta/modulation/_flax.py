"""Flax adapter: the same modulations on the parameters of a Flax ``nn.Dense`` stack.

The adapter reads and writes the parameter dicts that Flax's ``init`` returns (plain
mappings of arrays), so it never imports flax; flax itself, to build the Flax model, is the
optional extra ``pip install jaxmeta[flax]``.
"""

import re
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._base import AbstractModulation

FlaxParams = Mapping[str, Any]


def _natural_key(path: tuple[str, ...]):
    return [tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)) for p in path]


def _dense_paths(params: FlaxParams, prefix=()) -> list[tuple[str, ...]]:
    # A Flax Dense layer is a dict with a 2-D "kernel" (its documented parameter layout).
    if isinstance(params, Mapping) and "kernel" in params and jnp.ndim(params["kernel"]) == 2:
        return [prefix]
    if isinstance(params, Mapping):
        return [p for k in params for p in _dense_paths(params[k], (*prefix, k))]
    return []


def _get(params, path):
    for k in path:
        params = params[k]
    return params


def flax_dense_paths(params: FlaxParams) -> list[tuple[str, ...]]:
    """Paths of the ``nn.Dense`` parameter dicts, in layer order (``Dense_2`` before ``Dense_10``).

    **Raises:** `TypeError` if `params` holds no Dense layer.
    """
    paths = sorted(_dense_paths(params), key=_natural_key)
    if not paths:
        raise TypeError(
            f"`params` must hold Flax nn.Dense parameters (dicts with a 2-D 'kernel'), got "
            f"{jax.tree_util.tree_map(jnp.shape, params)!r}."[:400]
        )
    return paths


def linears_from_flax(params: FlaxParams) -> tuple[eqx.nn.Linear, ...]:
    """The Dense layers of Flax `params` as ``eqx.nn.Linear`` (weight = kernelᵀ)."""
    layers = []
    for path in flax_dense_paths(params):
        dense = _get(params, path)
        kernel = jnp.asarray(dense["kernel"])
        bias = dense.get("bias")
        in_size, out_size = kernel.shape
        layer = eqx.nn.Linear(
            in_size,
            out_size,
            use_bias=bias is not None,
            dtype=kernel.dtype,
            key=jax.random.PRNGKey(0),
        )
        new = (kernel.T,) if bias is None else (kernel.T, jnp.asarray(bias))
        where = (
            (lambda lay: (lay.weight,)) if bias is None else (lambda lay: (lay.weight, lay.bias))
        )
        layers.append(eqx.tree_at(where, layer, new))
    return tuple(layers)


def linears_to_flax(layers, params: FlaxParams) -> dict:
    """A copy of Flax `params` whose Dense kernels/biases are taken from `layers`."""
    paths = flax_dense_paths(params)
    if len(layers) != len(paths):
        raise ValueError(
            f"`layers` must have one layer per Dense of `params` ({len(paths)}), got {len(layers)}."
        )
    out = _to_dict(params)
    for path, layer in zip(paths, layers):
        dense = _get(out, path)
        dense["kernel"] = layer.weight.T
        if layer.bias is not None:
            dense["bias"] = layer.bias
    return out


def _to_dict(tree):
    if isinstance(tree, Mapping):
        return {k: _to_dict(v) for k, v in tree.items()}
    return tree


def flax_num_codes(modulation: AbstractModulation, params: FlaxParams) -> int:
    """Length of the codes that `modulate_flax` expects for these Flax `params`."""
    return modulation.num_codes(linears_from_flax(params))


def modulate_flax(
    modulation: AbstractModulation, params: FlaxParams, codes: Float[Array, " codes"]
) -> dict:
    """Flax `params` with every Dense layer corrected by `modulation` (layer order as in Flax).

    The Dense layers are viewed as ``eqx.nn.Linear``; a `MultiRank` must be bound with
    ``modulation.init(linears_from_flax(params), key=...)`` (or to an Equinox MLP of the same
    shapes). Differentiable in `params` and `codes`. Needs no flax import (flax, to build the
    model: ``pip install jaxmeta[flax]``).
    """
    layers = linears_from_flax(params)
    return linears_to_flax(modulation.apply(layers, codes), params)


def mlp_from_flax(
    params: FlaxParams,
    *,
    activation: Callable = jax.nn.tanh,
    final_activation: Callable = lambda x: x,
    scalar_output: bool = False,
) -> eqx.nn.MLP:
    """An ``eqx.nn.MLP`` with the weights of a Flax Dense stack (equal widths assumed)."""
    layers = linears_from_flax(params)
    widths = {lay.weight.shape[0] for lay in layers[:-1]}
    if len(widths) > 1:
        raise ValueError(f"`params` must have hidden layers of one width, got widths {widths}.")
    in_size = layers[0].weight.shape[1]
    out_size = layers[-1].weight.shape[0]
    if scalar_output and out_size != 1:
        raise ValueError(f"`scalar_output=True` needs a final Dense of 1 unit, got {out_size}.")
    width = widths.pop() if widths else out_size
    mlp = eqx.nn.MLP(
        in_size,
        "scalar" if scalar_output else out_size,
        width,
        len(layers) - 1,
        activation,
        final_activation,
        use_bias=all(lay.bias is not None for lay in layers[:-1]),
        use_final_bias=layers[-1].bias is not None,
        dtype=layers[0].weight.dtype,
        key=jax.random.PRNGKey(0),
    )
    leaves = [x for lay in layers for x in (lay.weight, lay.bias) if x is not None]
    return eqx.tree_at(
        lambda m: [x for lay in m.layers for x in (lay.weight, lay.bias) if x is not None],
        mlp,
        leaves,
    )
