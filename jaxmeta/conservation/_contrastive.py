"""Contrastive learning of trajectory invariants (ConCerNet §3.1, eq. 4 and eq. 8)."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class InvariantNet(eqx.Module):
    """The invariant network ``H_θc: R^dim → R^m`` of ConCerNet: an MLP (3 linear layers of
    width 100 with tanh by default, as in the paper's code).

    **Arguments:**

    - `dim`: state dimension.
    - `num_invariants`: latent dimension ``m`` (the number of learned invariants).
    - `width`, `depth`: hidden width and number of hidden layers (``depth=2``: 3 layers).
    - `dtype`: parameter dtype; ``None`` follows JAX's default float.
    - `key`: PRNG key of the initialisation.
    """

    mlp: eqx.nn.MLP

    def __init__(
        self,
        dim: int,
        num_invariants: int,
        *,
        width: int = 100,
        depth: int = 2,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"`dim` must be a positive int, got dim={dim!r}.")
        if not (isinstance(num_invariants, int) and 1 <= num_invariants <= dim):
            raise ValueError(
                f"`num_invariants` must be an int in [1, dim={dim}], got {num_invariants!r}."
            )
        self.mlp = eqx.nn.MLP(
            dim, num_invariants, width, depth, activation=jnp.tanh, dtype=dtype, key=key
        )

    def __call__(self, x: Float[Array, " dim"]) -> Float[Array, " m"]:
        return self.mlp(x)


def _batch_normalise(h: Float[Array, "batch m"], *, eps: float = 1e-6) -> Float[Array, "batch m"]:
    """Standardise each latent coordinate over the batch (eq. 8): ``(h − μ_batch) / σ_batch``.

    Stops the contrastive loss from collapsing the latent (a constant ``H`` would make every
    pair "similar"); ``eps`` is added to the variance so a constant output gives no NaN.
    """
    if h.ndim != 2:
        raise ValueError(f"`h` must have shape (batch, m), got shape {h.shape}.")
    mu = jnp.mean(h, axis=0, keepdims=True)
    var = jnp.mean((h - mu) ** 2, axis=0, keepdims=True)
    return (h - mu) / jnp.sqrt(var + eps)


def _flat_latents(h):
    """Check ``h`` is ``(traj, time, m)`` with at least 2×2 points; return ``(traj·time, m)``."""
    if h.ndim != 3:
        raise ValueError(f"`h` must have shape (traj, time, m), got shape {h.shape}.")
    n, t, m = h.shape
    if n < 2 or t < 2:
        raise ValueError(
            f"The contrastive loss needs at least 2 trajectories of at least 2 points, got "
            f"shape (traj, time, m)={h.shape}."
        )
    return h.reshape(n * t, m)


def _nce(h: Float[Array, "traj time m"]) -> Float[Array, ""]:
    """Eq. 4 on latents ``h[i, t] = H(x_t^i)`` (already normalised, if wanted).

    For every anchor ``(i, t1)``: ``−log(Σ_{t2≠t1} e^{−‖h_i,t1 − h_i,t2‖²} /
    Σ_{(j,t2)≠(i,t1)} e^{−‖h_i,t1 − h_j,t2‖²})``, averaged over the ``traj · time`` anchors.
    Positives are the other points of the same trajectory (many positives, as in NaCl).
    """
    flat = _flat_latents(h)
    n, t = h.shape[:2]
    sq = jnp.sum(flat**2, axis=-1)
    dist = sq[:, None] + sq[None, :] - 2 * flat @ flat.T
    logits = -jnp.maximum(dist, 0.0)
    traj = jnp.repeat(jnp.arange(n), t)
    self_pair = jnp.eye(n * t, dtype=bool)
    positive = (traj[:, None] == traj[None, :]) & ~self_pair
    neg_inf = jnp.asarray(-jnp.inf, logits.dtype)
    log_num = jax.nn.logsumexp(jnp.where(positive, logits, neg_inf), axis=-1)
    log_den = jax.nn.logsumexp(jnp.where(self_pair, neg_inf, logits), axis=-1)
    return jnp.mean(log_den - log_num)


def _square_ratio(h: Float[Array, "traj time m"]) -> Float[Array, ""]:
    """The loss the authors' code actually trains with (``square_ratio`` in their
    ``train_contrastive_conservation.py``, its default, and the one their Kepler script uses):
    for every anchor ``(i, t1)`` and positive ``(i, t2)``, ``t2 ≠ t1``, the ratio
    ``‖h_i,t1 − h_i,t2‖² / Σ_{(j,t)≠(i,t1)} ‖h_i,t1 − h_j,t‖²``, averaged over all such pairs.

    Scale-free (invariant to ``h → c·h``), so it needs no batch normalisation against a
    collapsed latent; it is small when points of one trajectory are close relative to all
    distances from the anchor. A fully collapsed latent gives ``0/0``: the denominator is
    guarded by the smallest positive float.
    """
    flat = _flat_latents(h)
    n, t = h.shape[:2]
    dist = jnp.sum((flat[:, None, :] - flat[None, :, :]) ** 2, axis=-1)  # zero on the diagonal
    total = jnp.maximum(jnp.sum(dist, axis=-1, keepdims=True), jnp.finfo(dist.dtype).tiny)
    traj = jnp.repeat(jnp.arange(n), t)
    positive = (traj[:, None] == traj[None, :]) & ~jnp.eye(n * t, dtype=bool)
    return jnp.sum(jnp.where(positive, dist / total, 0.0)) / (n * t * (t - 1))


#: The stage-1 losses by name (the `loss` argument of `contrastive_loss`).
LOSSES = {"nce": _nce, "square_ratio": _square_ratio}


def contrastive_loss(
    invariant,
    xs: Float[Array, "traj time dim"],
    *,
    normalise: bool = True,
    loss: str = "nce",
) -> Float[Array, ""]:
    """The ConCerNet contrastive loss (eq. 4) of an invariant network on trajectories.

    **Arguments:**

    - `invariant`: callable ``x -> H(x)`` of one state, ``(dim,) -> (m,)`` (or ``()``).
    - `xs`: a batch of trajectories, shape ``(traj, time, dim)``; each trajectory is a class.
    - `normalise`: batch-normalise the latents over all ``traj · time`` points first (eq. 8).
    - `loss`: ``"nce"`` (eq. 4 of the paper) or ``"square_ratio"`` (the scale-free ratio the
      authors' code trains with: for every anchor and positive, their squared distance over the
      sum of the anchor's squared distances to every other point, averaged over the pairs;
      scale-free, so it needs no batch normalisation).

    **Returns:** the scalar loss; lower means points of one trajectory are closer in latent
    space than points of different trajectories.
    """
    if xs.ndim != 3:
        raise ValueError(f"`xs` must have shape (traj, time, dim), got shape {xs.shape}.")
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(LOSSES)}, got {loss!r}.")
    n, t, dim = xs.shape
    h = jax.vmap(lambda x: jnp.atleast_1d(invariant(x)))(xs.reshape(n * t, dim))
    if normalise:
        h = _batch_normalise(h)
    return LOSSES[loss](h.reshape(n, t, h.shape[-1]))
