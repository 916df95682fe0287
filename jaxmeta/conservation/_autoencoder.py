"""ConCerNet on a large system (§4.3, heat equation): an autoencoder compresses states, the
invariant and the dynamics are learned on latent trajectories ``(z, ż)`` (eq. 9–10), and
latent rollouts are decoded and scored in the original space (`evaluate` with an
``autoencoder``, their Table 1)."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from ._fit import ConCerNetFit, fit_minibatches


class _TanhStack(eqx.Module):
    """Linear layers with tanh between them (none after the last)."""

    layers: tuple[eqx.nn.Linear, ...]

    def __init__(self, sizes, *, dtype, key):
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            eqx.nn.Linear(i, o, dtype=dtype, key=k) for i, o, k in zip(sizes[:-1], sizes[1:], keys)
        )

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jnp.tanh(layer(x))
        return self.layers[-1](x)


class Autoencoder(eqx.Module):
    """The autoencoder pair ``(E_θE, D_θD)`` of ConCerNet §4.3: ``E: R^dim → R^code``,
    ``D: R^code → R^dim``, MLPs with tanh (the code is the "latent" state of eq. 9–10).

    The default hidden widths ``(32, 16)`` (decoder mirrored: ``(16, 32)``) are those of the
    authors' ``AE1D`` model (their heat-equation script: ``dim = 101``, ``latent = 9``).

    **Arguments:**

    - `dim`: state dimension.
    - `code_dim`: dimension of the code ``z = E(x)``, in ``[1, dim]`` (the paper: 9).
    - `widths`: hidden widths of the encoder, outermost first; the decoder uses them reversed.
    - `dtype`: parameter dtype; ``None`` follows JAX's default float.
    - `key`: PRNG key of the initialisation.
    """

    encoder: _TanhStack
    decoder: _TanhStack
    dim: int = eqx.field(static=True)
    code_dim: int = eqx.field(static=True)

    def __init__(
        self,
        dim: int,
        code_dim: int,
        *,
        widths: Sequence[int] = (32, 16),
        dtype=None,
        key: PRNGKeyArray,
    ):
        if not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"`dim` must be a positive int, got dim={dim!r}.")
        if not (isinstance(code_dim, int) and 1 <= code_dim <= dim):
            raise ValueError(
                f"`code_dim` must be an int in [1, dim={dim}], got code_dim={code_dim!r}."
            )
        widths = tuple(widths)
        if not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"`widths` must be positive ints, got widths={widths!r}.")
        k_e, k_d = jax.random.split(key)
        self.encoder = _TanhStack((dim, *widths, code_dim), dtype=dtype, key=k_e)
        self.decoder = _TanhStack((code_dim, *widths[::-1], dim), dtype=dtype, key=k_d)
        self.dim = dim
        self.code_dim = code_dim

    def encode(self, x: Float[Array, " dim"]) -> Float[Array, " code"]:
        """``z = E(x)`` of one state (eq. 9)."""
        return self.encoder(x)

    def decode(self, z: Float[Array, " code"]) -> Float[Array, " dim"]:
        """``x̂ = D(z)`` of one code."""
        return self.decoder(z)

    def __call__(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """The reconstruction ``D(E(x))`` of one state."""
        return self.decode(self.encode(x))


def check_states(ae, name: str, xs, *, arg: str = "ae") -> None:
    """Raise unless ``ae`` (the argument ``arg``) is an `Autoencoder` and ``xs`` (the
    argument ``name``) ends in its state dimension."""
    if not isinstance(ae, Autoencoder):
        raise TypeError(f"`{arg}` must be an Autoencoder, got {type(ae).__name__}.")
    if xs.ndim < 1 or xs.shape[-1] != ae.dim:
        raise ValueError(
            f"`{name}` must end in the autoencoder's state dimension {ae.dim}, got shape "
            f"{xs.shape}."
        )


def _reconstruction_objective(ae, xs):
    """Mean over points and coordinates of ``(D(E(x)) − x)²`` (the authors' ``MSE``)."""
    flat = xs.reshape(-1, xs.shape[-1])
    return jnp.mean((jax.vmap(ae)(flat) - flat) ** 2)


def train_autoencoder(
    ae: Autoencoder,
    xs: Float[Array, "traj time dim"],
    *,
    optimiser: optax.GradientTransformation,
    epochs: int,
    batch_trajectories: int = 10,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50,
    key: PRNGKeyArray,
) -> ConCerNetFit:
    """Fit ``ae`` by the reconstruction MSE on minibatches of ``batch_trajectories`` whole
    trajectories (pass ``xs.reshape(-1, 1, dim)`` for minibatches of single points).

    The loop, ``chunk``, ``progress`` and the key scheme are `train_invariant`'s. Returns a
    `ConCerNetFit`: the trained autoencoder and the mean minibatch loss of each epoch.
    """
    check_states(ae, "xs", xs)
    if xs.ndim != 3:
        raise ValueError(f"`xs` must have shape (traj, time, dim), got shape {xs.shape}.")
    return fit_minibatches(
        ae, _reconstruction_objective, xs, optimiser=optimiser, epochs=epochs,
        batch_trajectories=batch_trajectories, progress=progress, chunk=chunk, key=key,
    )  # fmt: skip


@eqx.filter_jit
def to_latent(
    ae: Autoencoder, xs: Float[Array, "*batch dim"], dxs: Float[Array, "*batch dim"]
) -> tuple[Float[Array, "*batch code"], Float[Array, "*batch code"]]:
    """Map states and their time derivatives to the latent space (eq. 9–10):
    ``z = E(x)`` and ``ż = (∂E/∂x)(x) ẋ``, the chain rule as one Jacobian-vector product.

    **Returns:** ``(z, ż)``, each of shape ``(*batch, code_dim)``.
    """
    check_states(ae, "xs", xs)
    if dxs.shape != xs.shape:
        raise ValueError(
            f"`xs` and `dxs` must have the same shape, got {xs.shape} and {dxs.shape}."
        )
    flat_x, flat_dx = xs.reshape(-1, ae.dim), dxs.reshape(-1, ae.dim)
    z, dz = jax.vmap(lambda x, dx: jax.jvp(ae.encode, (x,), (dx,)))(flat_x, flat_dx)
    lead = xs.shape[:-1]
    return z.reshape(*lead, ae.code_dim), dz.reshape(*lead, ae.code_dim)
