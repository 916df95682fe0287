"""Names of the built-in systems: the one place where a string becomes a system."""

from ._base import AbstractSystem
from ._generic import DampedNonlinearOscillator, TwoGasContainers
from ._hamiltonian import Duffing, Kepler, MassSpring, Pendulum

SYSTEMS: dict[str, type[AbstractSystem]] = {
    cls.name: cls
    for cls in (MassSpring, Pendulum, Duffing, Kepler, DampedNonlinearOscillator, TwoGasContainers)
}


def get_system(name: str, **overrides) -> AbstractSystem:
    """Build a built-in system by name (``"mass-spring"``, ``"pendulum"``, ``"duffing"``,
    ``"kepler"``, ``"dno"``, ``"tgc"``), with optional field overrides such as ``dt=0.05``."""
    if not isinstance(name, str) or name not in SYSTEMS:
        raise ValueError(f"Unknown system {name!r}; valid names are: {', '.join(SYSTEMS)}.")
    return SYSTEMS[name](**overrides)
