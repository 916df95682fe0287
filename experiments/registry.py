"""The one place where method names become objects.

``experiments.run``, ``experiments.concernet_meta``, ``experiments.adapt`` and every script under
``benchmarks/`` turn a name such as ``"ro"`` into a modulation or a meta-learner here; nothing
in ``jaxmeta`` takes a method name.

    >>> from experiments.registry import make_learner, make_modulation
    >>> make_modulation("ro")
    RankOne()
"""

from collections.abc import Callable

from jaxmeta import meta, modulation

#: Every method of the paper's tables, in the order the paper prints them.
METHODS = ("scratch", "maml", "reptile", "anil", "shift", "fw", "ro", "mr")

#: Modulation name -> constructor (MR with the paper's rank 5, App. F).
MODULATIONS: dict[str, Callable[[], modulation.AbstractModulation]] = {
    "shift": modulation.Shift,
    "fw": modulation.FullWeight,
    "ro": modulation.RankOne,
    "mr": lambda: modulation.MultiRank(rank=5),
}

#: Optimisation-based baselines: name -> learner class.
BASELINES: dict[str, type[meta.AbstractMetaLearner]] = {
    "scratch": meta.Scratch,
    "maml": meta.MAML,
    "reptile": meta.Reptile,
    "anil": meta.ANIL,
}


def _check(name: str, valid) -> None:
    if name not in valid:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(valid)}")


def make_modulation(name: str) -> modulation.AbstractModulation:
    """Modulation name (``shift``, ``fw``, ``ro``, ``mr``) -> a fresh modulation."""
    _check(name, tuple(MODULATIONS))
    return MODULATIONS[name]()


def make_learner(
    name: str,
    *,
    inner_steps: int = 3,
    adapt_steps: int = 100,
    tasks_per_step: int = 5,
    latent_init: str = "mean",
    latent_dim: int = 10,
) -> meta.AbstractMetaLearner:
    """Method name -> meta-learner with the paper's learning rates (spec §4).

    A modulation name gives `jaxmeta.meta.AutoDecoding` with that modulation, ``latent_dim``
    and ``latent_init``; a baseline name its class (the latent arguments do not apply).
    """
    _check(name, METHODS)
    common = dict(inner_steps=inner_steps, adapt_steps=adapt_steps, tasks_per_step=tasks_per_step)
    if name in MODULATIONS:
        return meta.AutoDecoding(
            make_modulation(name), latent_dim=latent_dim, latent_init=latent_init, **common
        )
    return BASELINES[name](**common)
