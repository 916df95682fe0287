"""Trajectory data of ConCerNet's systems with exact derivatives (ConCerNet trains on true
derivatives plus noise, §4), simulated by `jaxmeta.rollout`."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_int
from .._rollout import rollout
from ..systems import AbstractConservedSystem


class Trajectories(eqx.Module):
    """Trajectories of a system: states ``xs``, exact derivatives ``dxs`` and save times ``ts``.

    One system: ``xs``, ``dxs`` of shape ``(traj, time, dim)`` and ``ts`` of shape
    ``(time,)``; several (`make_trajectories` with rows of ``mu``): a leading ``systems`` axis
    on all three.
    """

    xs: Float[Array, "*systems traj time dim"]
    dxs: Float[Array, "*systems traj time dim"]
    ts: Float[Array, "*systems time"]


def _solve(system, mu, x0s, ts) -> Trajectories:
    """Trajectories of ``system`` at ``mu`` from each of ``x0s`` saved on ``ts``, with their
    exact derivatives: RK4 stepping on the grid (``system.rtol`` None) or an adaptive Tsit5
    solve (``atol = rtol / 100``)."""
    field = eqx.Partial(system.vector_field, mu=mu)
    tol = {}
    if system.rtol is not None:  # RK4 has no error estimate: adaptive solves need Tsit5
        tol = {"solver": diffrax.Tsit5(), "rtol": system.rtol, "atol": system.rtol * 1e-2}
    xs = jax.vmap(lambda x: rollout(field, x, ts, **tol))(x0s)
    dxs = jax.vmap(jax.vmap(field))(xs)
    return Trajectories(xs=xs, dxs=dxs, ts=ts)


def _one_system(system, mu, num, key):
    x0 = jax.vmap(lambda k: system.sample_initial_state(k, mu))(jax.random.split(key, num))
    return _solve(system, mu, x0, system.times(x0.dtype))


@eqx.filter_jit
def _systems(system, mu, keys, num):
    return jax.vmap(lambda m, k: _one_system(system, m, num, k))(mu, keys)


def make_trajectories(
    system: AbstractConservedSystem,
    num: int,
    *,
    mu: Float[Array, "*systems params"] | None = None,
    key: PRNGKeyArray,
) -> Trajectories:
    """Simulate ``num`` trajectories of ``system`` from sampled initial states, saved on
    ``system.times()``, with their exact derivatives ``f(x; μ)`` (add observation noise
    outside).

    **Arguments:**

    - `system`: an `jaxmeta.systems.AbstractConservedSystem`.
    - `num`: trajectories per system, a positive int.
    - `mu`: the parameters: one vector ``(params,)`` (one system: ``xs`` of shape ``(traj,
      time, dim)``, initial states from ``jax.random.split(key, num)``), or rows
      ``(systems, params)`` (each system from its key of ``jax.random.split(key, systems)``,
      vmapped and jitted: ``xs`` of shape ``(systems, traj, time, dim)``). Default: the
      empty ``mu`` of a system without parameters, in JAX's default float. Its dtype is the
      data's.
    - `key`: PRNG key of the initial states.
    """
    if not isinstance(system, AbstractConservedSystem):
        raise TypeError(
            f"`system` must be an AbstractConservedSystem, got {type(system).__name__}."
        )
    check_int("num", num)
    if mu is None:
        if system.param_dim:
            raise ValueError(
                f"{system.name} has parameters ({', '.join(system.param_names)}): pass `mu`."
            )
        mu = jnp.zeros((0,))
    system.check_params(mu)
    if jnp.ndim(mu) == 1:
        return _one_system(system, mu, num, key)
    return _systems(system, mu, jax.random.split(key, jnp.shape(mu)[0]), num)
