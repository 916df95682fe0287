"""Multi-rank ("SVD-like") modulation of the paper: ``W_ℓ + Σ_i d_ℓi(z) u_ℓi v_ℓiᵀ``."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .._checks import check_int, check_non_negative
from ._base import AbstractModulation, layer_shape, linear_layers, replace_layer
from ._low_rank import check_layer_ranks, layer_rank


def _orthonormal(key, rows: int, cols: int, dtype):
    q, r = jnp.linalg.qr(jax.random.normal(key, (rows, cols), dtype))
    return q * jnp.where(jnp.diag(r) < 0, -1, 1).astype(dtype)[None, :]


def _safe_norm(x):
    # Frobenius norm with a zero (not NaN) gradient at x = 0.
    sq = jnp.sum(x**2)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1)), 0)


class MultiRank(AbstractModulation):
    """The paper's multi-rank modulation ``W_ℓ + Σ_i d_ℓi(z) u_ℓi v_ℓiᵀ``, ``b_ℓ + s_ℓ(z)``.

    The bases ``U_ℓ = [u_ℓi] ∈ R^{out×r}``, ``V_ℓ ∈ R^{in×r}`` are base (meta) parameters held
    here (`bases`, created orthonormal by `init`); only ``d_ℓ = ReLU(codes) ≥ 0`` and ``s_ℓ``
    come from the latent (paper eqs. 8-9, 13 and App. F). `penalty` is
    ``orth_weight Σ_ℓ (‖U_ℓᵀU_ℓ − I‖ + ‖V_ℓᵀV_ℓ − I‖) + sparsity_weight Σ_ℓ ‖d_ℓ‖₁``
    (Frobenius norms; ``0.01`` and ``1e-5`` as in the paper). On a layer with
    ``min(out, in) < rank`` the rank is clipped to ``min(out, in)``.
    Codes per layer: ``r_ℓ (+ out)``.

    The hypernetwork bias of the ``d`` codes starts at ``d_init`` (``1e-2``, our choice), not
    0: ``ReLU`` has zero gradient at 0, so zero codes would be a dead start for the latents.
    """

    rank: int = eqx.field(static=True, default=5)
    bases: tuple[tuple[Float[Array, "out r"], Float[Array, "in r"]], ...] | None = None
    orth_weight: float = eqx.field(static=True, default=0.01)
    sparsity_weight: float = eqx.field(static=True, default=1e-5)
    d_init: float = eqx.field(static=True, default=1e-2)

    def __check_init__(self):
        check_int("rank", self.rank)
        for name in ("orth_weight", "sparsity_weight", "d_init"):
            check_non_negative(name, getattr(self, name))

    def _check_layers(self, layers: list[eqx.nn.Linear]) -> None:
        check_layer_ranks(self.rank, layers)

    def init(self, model: PyTree, *, key: PRNGKeyArray) -> "MultiRank":
        """A copy holding orthonormal bases ``(U_ℓ, V_ℓ)`` for every linear layer of `model`."""
        layers = linear_layers(model)
        check_layer_ranks(self.rank, layers)
        bases = []
        for layer, k in zip(layers, jax.random.split(key, len(layers))):
            out_size, in_size, _ = layer_shape(layer)
            r, dtype = layer_rank(self.rank, layer), layer.weight.dtype
            ku, kv = jax.random.split(k)
            bases.append(
                (_orthonormal(ku, out_size, r, dtype), _orthonormal(kv, in_size, r, dtype))
            )
        return eqx.tree_at(lambda m: m.bases, self, tuple(bases), is_leaf=lambda x: x is None)

    def _check_bound(self, layers: list[eqx.nn.Linear]) -> None:
        if self.bases is None:
            raise ValueError(
                "`MultiRank` has no bases yet (bases=None): call `modulation.init(model, key=...)`"
                " first (`modulate` does it)."
            )
        expected = [
            ((layer_shape(lay)[0], layer_rank(self.rank, lay)), (lay.weight.shape[1],))
            for lay in layers
        ]
        got = [(u.shape, v.shape[:1]) for u, v in self.bases]
        if got != expected:
            raise ValueError(
                f"`model` does not match the MultiRank bases: bases built for (U, V) shapes "
                f"{[(u.shape, v.shape) for u, v in self.bases]}, model layers need "
                f"{[(e[0], (e[1][0], e[0][1])) for e in expected]}."
            )

    def _layer_num_codes(self, index: int, layer: eqx.nn.Linear) -> int:
        out_size, _, has_bias = layer_shape(layer)
        return layer_rank(self.rank, layer) + (out_size if has_bias else 0)

    def _modulate_layer(
        self, index: int, layer: eqx.nn.Linear, codes: Float[Array, " c"]
    ) -> eqx.nn.Linear:
        u, v = self.bases[index]
        r = u.shape[1]
        d = jax.nn.relu(codes[:r])
        bias = layer.bias + codes[r:] if layer.bias is not None else None
        return replace_layer(layer, layer.weight + (u * d[None, :]) @ v.T, bias)

    def code_bias(self, model: PyTree, *, key: PRNGKeyArray) -> Float[Array, " codes"]:
        del key
        parts = []
        for layer in linear_layers(model):
            out_size, _, has_bias = layer_shape(layer)
            r, dtype = layer_rank(self.rank, layer), layer.weight.dtype
            parts += [
                jnp.full(r, self.d_init, dtype),
                jnp.zeros(out_size if has_bias else 0, dtype),
            ]
        return jnp.concatenate(parts)

    def penalty(self, model: PyTree, codes: Float[Array, " codes"]) -> Float[Array, ""]:
        _, chunks = self._split(model, codes)
        orth = sparse = jnp.zeros((), jnp.result_type(codes))
        for (u, v), c in zip(self.bases, chunks):
            r = u.shape[1]
            eye = jnp.eye(r, dtype=u.dtype)
            orth = orth + _safe_norm(u.T @ u - eye) + _safe_norm(v.T @ v - eye)
            sparse = sparse + jnp.sum(jax.nn.relu(c[:r]))
        return self.orth_weight * orth + self.sparsity_weight * sparse
