"""Gradient of a scalar energy of a small state, by reverse or forward mode."""

from collections.abc import Callable

import jax
from jaxtyping import Array, Float

GRAD_MODES = ("reverse", "forward")


def check_grad_mode(grad_mode: str) -> None:
    """Raise a `ValueError` unless `grad_mode` is one of ``"reverse"``, ``"forward"``."""
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"`grad_mode` must be one of {GRAD_MODES}, got grad_mode={grad_mode!r}.")


def energy_gradient(
    energy: Callable[[Float[Array, " dim"]], Float[Array, ""]],
    x: Float[Array, " dim"],
    grad_mode: str,
) -> Float[Array, " dim"]:
    """``∇E(x)`` of a scalar function of one state.

    ``"reverse"`` is one vector-Jacobian product (`jax.grad`); ``"forward"`` is ``dim``
    Jacobian-vector products batched by `jax.jacfwd`. Both give the same values; which is
    faster depends on the state size and on the outer (parameter) derivative, see
    ``benchmarks/field_grad_mode.py``.
    """
    if grad_mode == "reverse":
        return jax.grad(energy)(x)
    return jax.jacfwd(energy)(x)
