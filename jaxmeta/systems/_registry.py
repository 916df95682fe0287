"""Names of the built-in systems: the one place where a string becomes a system."""

from ._base import AbstractSystem
from ._conserved import (
    AbstractConservedSystem,
    ChemicalKinetics,
    HeatEquation,
    KeplerOrbit,
    SpringMass,
)
from ._generic import DampedNonlinearOscillator, TwoGasContainers
from ._hamiltonian import Duffing, Kepler, MassSpring, Pendulum
from ._spring_family import SpringFamily

#: The meta-learning benchmarks (what ``experiments.run`` and its studies iterate over).
SYSTEMS: dict[str, type[AbstractSystem]] = {
    cls.name: cls
    for cls in (MassSpring, Pendulum, Duffing, Kepler, DampedNonlinearOscillator, TwoGasContainers)
}

#: ConCerNet's systems with known invariants (``experiments.concernet`` and
#: ``experiments.concernet_meta``): the four of its Table 1 and Meta-ConCerNet's family.
CONSERVED_SYSTEMS: dict[str, type[AbstractConservedSystem]] = {
    cls.name: cls for cls in (SpringMass, ChemicalKinetics, KeplerOrbit, HeatEquation, SpringFamily)
}


def get_system(name: str, **overrides) -> AbstractSystem:
    """Build a built-in system by name (``"mass-spring"``, ``"pendulum"``, ``"duffing"``,
    ``"kepler"``, ``"dno"``, ``"tgc"``), with optional field overrides such as ``dt=0.05``."""
    if not isinstance(name, str) or name not in SYSTEMS:
        raise ValueError(f"Unknown system {name!r}; valid names are: {', '.join(SYSTEMS)}.")
    return SYSTEMS[name](**overrides)


def register(cls: type[AbstractSystem]) -> type[AbstractSystem]:
    """Add a system class of your own to `SYSTEMS` under its ``name``, so that everything
    that takes a system's name (`get_system`, ``experiments.run --system``) takes it; returns
    the class, so it works as a decorator. Registering the same class again does nothing.

    Raises `TypeError` unless ``cls`` is a concrete `AbstractSystem` subclass with a string
    ``name``, and `ValueError` if another class already holds that name.
    """
    if not (isinstance(cls, type) and issubclass(cls, AbstractSystem)):
        raise TypeError(f"`cls` must be an AbstractSystem subclass, got cls={cls!r}.")
    if getattr(cls, "__abstractmethods__", None):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise TypeError(f"`cls`={cls.__qualname__} is abstract (it lacks {missing}).")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"`cls`={cls.__qualname__} needs a class attribute `name`, a string.")
    held = SYSTEMS.get(name)
    if held is not None and held is not cls:
        raise ValueError(
            f"system name {name!r} is taken by {held.__module__}.{held.__qualname__}; give "
            f"{cls.__module__}.{cls.__qualname__} another `name`."
        )
    SYSTEMS[name] = cls
    return cls
