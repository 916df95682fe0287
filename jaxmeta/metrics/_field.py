"""Vector-field error on a mesh and SSIM of 2-D fields seen as images (paper §4)."""

import math
from collections.abc import Callable

import dm_pix as pix
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._checks import check_positive

State = Float[Array, " dim"]


def field_values(
    field: Callable[[State], State],
    mesh: Float[Array, "points dim"],
    *,
    batch_size: int = 4096,
) -> Float[Array, "points dim"]:
    """Evaluate ``field`` at every mesh point, ``batch_size`` points at a time.

    Uses ``jax.lax.map(..., batch_size=...)``, so the largest mesh (TGC, 30⁴ = 810,000
    points) never materialises more than one chunk of intermediates.

    **Arguments:**

    - `field`: a vector field ``field(x) -> dx/dt`` of one state (a model, or
      ``lambda x: system.vector_field(x, mu)``).
    - `mesh`: the points, shape ``(points, dim)`` (e.g. ``system.mesh()``).
    - `batch_size`: points per vectorised chunk.

    **Returns:** the field values, shape ``(points, dim)``.
    """
    mesh = jnp.asarray(mesh)
    if mesh.ndim != 2:
        raise ValueError(f"`mesh` must have shape (points, dim), got shape {mesh.shape}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if not callable(field):
        raise TypeError(f"`field` must be callable as field(x) -> dx/dt, got {field!r}.")
    out = jax.eval_shape(field, mesh[0])
    if getattr(out, "shape", None) != mesh.shape[1:]:
        raise ValueError(
            f"`field(x)` must return the state's shape {mesh.shape[1:]} for mesh points of "
            f"dimension {mesh.shape[1]}, got {getattr(out, 'shape', out)}."
        )
    return jax.lax.map(field, mesh, batch_size=min(batch_size, mesh.shape[0]))


def field_error(
    model: Callable[[State], State],
    true_field: Callable[[State], State],
    mesh: Float[Array, "points dim"],
    *,
    batch_size: int = 4096,
) -> Float[Array, ""]:
    """Relative ℓ2 error of the learned vector field on a mesh, ``‖f̂ − f‖ / ‖f‖``.

    Norms are taken over all mesh points and state components at once (paper App. F: 100 points
    per axis for the 2-D systems, 30 for DNO and TGC, from ``system.mesh()``).

    **Arguments:**

    - `model`: the learned field ``model(x) -> dx/dt``.
    - `true_field`: the true field, e.g. ``lambda x: system.vector_field(x, mu)``.
    - `mesh`: the points, shape ``(points, dim)``.
    - `batch_size`: points per vectorised chunk (see `field_values`).

    **Returns:** a scalar.
    """
    learned = field_values(model, mesh, batch_size=batch_size)
    true = field_values(true_field, mesh, batch_size=batch_size)
    return relative_error(learned, true)


def relative_error(values, true) -> Float[Array, ""]:
    """``‖values − true‖ / ‖true‖`` over all entries (Frobenius norms)."""
    return jnp.linalg.norm(values - true) / jnp.linalg.norm(true)


def field_ssim(
    model_field_values: Float[Array, "points channels"],
    true_field_values: Float[Array, "points channels"],
    shape: tuple[int, int],
    *,
    floor: float = 1e-12,
) -> Float[Array, ""]:
    """SSIM between the learned and the true 2-D vector field seen as images (paper §4).

    Both ``(points, channels)`` arrays are reshaped to ``(*shape, channels)`` images (a mesh
    from ``system.mesh()`` is in ``indexing="ij"`` order, so axis 0 is ``q`` and axis 1 is
    ``p``; each state component is a channel). Normalisation (jaxmeta's choice; the paper does
    not give its own): each channel of *both* images is divided by the true field's range in
    that channel, ``max − min`` over the mesh (at least ``floor``), and is not shifted, so a
    signed field stays signed. The true image's channels then span an interval of length 1,
    which is the dynamic range handed to `dm_pix.ssim` (``max_val=1``, so SSIM's stabilising
    constants are ``(0.01)²`` and ``(0.03)²`` of the squared range); its other defaults are
    kept (11×11 Gaussian window, σ = 1.5), and SSIM is averaged over pixels and channels.

    Without the shift the score discriminates: a zero field or an unrelated (e.g. random)
    field scores near 0, the true field 1. (Shifting a signed field into ``[0, 1]`` puts
    every local mean near 0.5, so the luminance term alone gave a zero field 0.56–0.71.)

    Signed images can have local means or covariances of opposite sign, so SSIM's luminance
    term ``l`` and contrast-structure term ``cs`` can each be negative, and plain SSIM,
    their product, scores two disagreements as an agreement: the exactly reversed field,
    ``l ≈ cs ≈ −1`` wherever the field is not flat, scored +0.43 on a 50×50 pendulum mesh.
    Here a pixel where either term is negative scores ``−|l · cs|``, so a reversed field
    scores ≤ 0 (about −1 where it is not flat) and a match is still the product. Both maps
    come from `dm_pix.ssim` (``l`` with ``k2`` so large that ``cs = 1``, ``cs`` with ``k1``
    so large that ``l = 1`` in the working precision). The score lies in ``[−1, 1]``.

    **Arguments:**

    - `model_field_values`: the learned field on the mesh, shape ``(points, channels)``.
    - `true_field_values`: the true field on the same mesh, same shape.
    - `shape`: the mesh's grid shape ``(n0, n1)`` with ``n0 n1 = points``, each ≥ 11.
    - `floor`: smallest per-channel range (guards a constant true channel).

    **Returns:** a scalar, 1 for identical fields.
    """
    learned = jnp.asarray(model_field_values)
    true = jnp.asarray(true_field_values)
    if learned.shape != true.shape or true.ndim != 2:
        raise ValueError(
            f"`model_field_values` and `true_field_values` must both have shape "
            f"(points, channels), got {learned.shape} and {true.shape}."
        )
    shape = tuple(shape)
    if len(shape) != 2 or not all(isinstance(n, int) for n in shape):
        raise ValueError(f"`shape` must be a 2-D grid shape (n0, n1), got {shape!r}.")
    if math.prod(shape) != true.shape[0]:
        raise ValueError(
            f"`shape` {shape} has {math.prod(shape)} points but the field values have "
            f"{true.shape[0]}."
        )
    if min(shape) < 11:
        raise ValueError(f"`shape` must be at least 11 per axis (SSIM window), got {shape}.")
    check_positive("floor", floor)
    scale = jnp.maximum(jnp.max(true, axis=0) - jnp.min(true, axis=0), floor)

    def image(values):
        return (values / scale[None, :]).reshape(*shape, -1)

    a, b = image(learned), image(true)
    # dm-pix mixes int and float inside its Gaussian window: allow standard promotion there.
    with jax.numpy_dtype_promotion("standard"):
        lum = pix.ssim(a, b, max_val=1.0, k2=_HUGE, return_map=True)
        cs = pix.ssim(a, b, max_val=1.0, k1=_HUGE, return_map=True)
    product = lum * cs
    return jnp.mean(jnp.where((lum < 0) | (cs < 0), -jnp.abs(product), product))


# A stabilising constant that swamps its term: (2 μ₀μ₁ + C)/(μ₀² + μ₁² + C) is 1 to working
# precision for the unit-range images `field_ssim` builds (C = _HUGE² = 1e12).
_HUGE = 1e6
