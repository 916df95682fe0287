"""The ConCerNet projection layer (eq. 6): remove from a vector field its components along the
Gram–Schmidt-orthonormalised gradients of a set of invariants."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def _gram_schmidt(vectors: Float[Array, "m dim"], *, eps: float = 1e-5) -> Float[Array, "m dim"]:
    """Orthonormalise the rows of ``vectors`` by (modified) Gram–Schmidt, safely.

    **Degenerate fallback.** Row ``i`` is first stripped of its components along the rows
    already accepted; if the norm of that residual is below ``eps · max(1, ‖vectors[i]‖)``
    (a zero gradient, or one linearly dependent on the previous ones to within ``eps``), the
    output row is exactly zero and that direction is skipped. The square root and the division
    only ever see a safe value (the "double-where" trick), so neither values nor gradients
    become NaN at the degenerate point.

    **Arguments:**

    - `vectors`: ``m`` vectors of dimension ``dim``, one a row.
    - `eps`: relative threshold of the degenerate fallback.

    **Returns:** rows that are orthonormal or zero, shape ``(m, dim)``; the nonzero rows span
    the same space as ``vectors`` up to the dropped (near-)dependent directions.
    """
    if vectors.ndim != 2:
        raise ValueError(f"`vectors` must have shape (m, dim), got shape {vectors.shape}.")
    basis = []
    for i in range(vectors.shape[0]):
        v = vectors[i]
        for e in basis:
            v = v - jnp.dot(e, v) * e
        norm2 = jnp.sum(v**2)
        scale2 = jnp.maximum(jnp.sum(vectors[i] ** 2), 1.0)
        ok = norm2 > (eps**2) * scale2
        safe_norm = jnp.sqrt(jnp.where(ok, norm2, 1.0))
        basis.append(jnp.where(ok, v / safe_norm, jnp.zeros_like(v)))
    return jnp.stack(basis)


def _project_out(
    value: Float[Array, " dim"], gradients: Float[Array, "m dim"], *, eps: float = 1e-5
) -> Float[Array, " dim"]:
    """``value − Σ_i ⟨value, ĝ_i⟩ ĝ_i`` with ``ĝ`` = `_gram_schmidt` of ``gradients`` (eq. 6).

    The result is orthogonal to every row of ``gradients`` (to rounding), so a flow along it
    keeps each invariant constant: ``d g_i / dt = ⟨∇g_i, f̃⟩ = 0``.
    """
    if value.ndim != 1 or gradients.ndim != 2 or gradients.shape[1] != value.shape[0]:
        raise ValueError(
            f"`value` must have shape (dim,) and `gradients` shape (m, dim), got "
            f"{value.shape} and {gradients.shape}."
        )
    if gradients.shape[0] > value.shape[0]:
        raise ValueError(
            f"The number of invariants m={gradients.shape[0]} exceeds the state dimension "
            f"dim={value.shape[0]}: m <= dim is needed for a nonzero projected field."
        )
    basis = _gram_schmidt(gradients, eps=eps)
    return value - basis.T @ (basis @ value)


class Projected(eqx.Module):
    """A vector field projected onto the level sets of invariants (ConCerNet eq. 5–6).

    ``Projected(field, invariant)(x) = f(x) − Σ_i ⟨f(x), ĝ_i(x)⟩ ĝ_i(x)`` where
    ``ĝ_i`` are the Gram–Schmidt-orthonormalised rows of the Jacobian ``∂invariant/∂x``.
    Works on any callable field — a plain MLP, an HNN, a modulated model — and any callable
    invariant ``x ↦ R^m`` (a learned `InvariantNet`, or a known conservation law). Both are
    pytree children: train only the field with a filter spec (see `train_dynamics`).

    **Fields:**

    - `field`: callable ``x -> dx/dt`` of one state, shape ``(dim,) -> (dim,)``.
    - `invariant`: callable ``x -> g(x)`` of one state, shape ``(dim,) -> (m,)`` (or ``()``
      for a single invariant); needs ``m <= dim``.
    - `eps`: threshold of the degenerate-gradient fallback: a gradient whose residual after
      Gram–Schmidt against the previous ones has a norm below ``eps · max(1, ‖∇g_i‖)`` (a
      zero gradient, or one dependent on the others) is dropped, with finite values and
      gradients.
    """

    field: Callable[[Float[Array, " dim"]], Float[Array, " dim"]]
    invariant: Callable[[Float[Array, " dim"]], Float[Array, " m"]]
    eps: float = eqx.field(static=True, default=1e-5)

    def __check_init__(self):
        if not callable(self.field):
            raise TypeError(f"`field` must be callable, got {type(self.field).__name__}.")
        if not callable(self.invariant):
            raise TypeError(f"`invariant` must be callable, got {type(self.invariant).__name__}.")
        if not self.eps > 0:
            raise ValueError(f"`eps` must be positive, got eps={self.eps!r}.")

    def __call__(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        if x.ndim != 1:
            raise ValueError(f"`x` must be one state of shape (dim,), got shape {x.shape}.")
        gradients = jax.jacrev(lambda y: jnp.atleast_1d(self.invariant(y)))(x)
        return _project_out(self.field(x), gradients, eps=self.eps)
