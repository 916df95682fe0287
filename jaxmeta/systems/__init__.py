"""Ground-truth parametric systems and their Hamiltonian/GENERIC structure."""

from ._base import (
    AbstractGenericSystem as AbstractGenericSystem,
    AbstractHamiltonianSystem as AbstractHamiltonianSystem,
    AbstractSystem as AbstractSystem,
)
from ._generic import (
    DampedNonlinearOscillator as DampedNonlinearOscillator,
    TwoGasContainers as TwoGasContainers,
)
from ._hamiltonian import (
    Duffing as Duffing,
    Kepler as Kepler,
    MassSpring as MassSpring,
    Pendulum as Pendulum,
)
from ._registry import SYSTEMS as SYSTEMS, get_system as get_system
from ._structure import (
    canonical_poisson as canonical_poisson,
    energy_rate as energy_rate,
    generic_degeneracy as generic_degeneracy,
    generic_field as generic_field,
    symplectic_gradient as symplectic_gradient,
)
