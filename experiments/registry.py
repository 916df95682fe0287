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

#: The modulation whose k-shot figure a run draws: the first of these it has.
KSHOT_ORDER = ("mr", "ro", "fw", "shift")

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


#: Each method's inner (and test-time) learning rate in the paper (App. E-F), for a test-time
#: optimiser other than the method's own Adam (e.g. plain SGD at the same rate).
INNER_LR = {"scratch": 2e-3, "maml": 2e-3, "reptile": 2e-2, "anil": 2e-3,
            **{m: 2e-3 for m in MODULATIONS}}  # fmt: skip


def make_learner(
    name: str,
    *,
    inner_steps: int = 3,
    adapt_steps: int = 100,
    tasks_per_step: int = 5,
    latent_init: str = "mean",
    latent_dim: int = 10,
    adapt_optimiser=None,
    **latent_options,
) -> meta.AbstractMetaLearner:
    """Method name -> meta-learner with the paper's optimisers (App. E-F).

    A modulation name gives `jaxmeta.meta.AutoDecoding` with that modulation, ``latent_dim``,
    ``latent_init`` and any ``latent_options`` (``latent_state``, ``latent_penalty``,
    ``hypernet_penalty``); a baseline name its class (the latent arguments do not apply;
    Scratch takes only ``adapt_steps``). ``adapt_optimiser`` (an
    `optax.GradientTransformation`) replaces the method's test-time Adam.
    """
    _check(name, METHODS)
    extra = {} if adapt_optimiser is None else {"adapt_optimiser": adapt_optimiser}
    if name == "scratch":
        return meta.Scratch(adapt_steps=adapt_steps, **extra)
    common = dict(inner_steps=inner_steps, adapt_steps=adapt_steps, tasks_per_step=tasks_per_step,
                  **extra)  # fmt: skip
    if name in MODULATIONS:
        return meta.AutoDecoding(make_modulation(name), latent_dim=latent_dim,
                                 latent_init=latent_init, **common, **latent_options)  # fmt: skip
    return BASELINES[name](**common)
