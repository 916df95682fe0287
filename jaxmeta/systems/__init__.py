"""Ground-truth parametric systems: the meta-learning benchmarks with their Hamiltonian/GENERIC
structure, and ConCerNet's systems with their known invariants."""

from ._base import (
    AbstractGenericSystem as AbstractGenericSystem,
    AbstractHamiltonianSystem as AbstractHamiltonianSystem,
    AbstractSystem as AbstractSystem,
)
from ._conserved import (
    AbstractConservedSystem as AbstractConservedSystem,
    ChemicalKinetics as ChemicalKinetics,
    HeatEquation as HeatEquation,
    KeplerOrbit as KeplerOrbit,
    SpringMass as SpringMass,
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
from ._registry import (
    CONSERVED_SYSTEMS as CONSERVED_SYSTEMS,
    SYSTEMS as SYSTEMS,
    get_system as get_system,
    register as register,
)
from ._spring_family import SpringFamily as SpringFamily
from ._structure import (
    canonical_poisson as canonical_poisson,
    energy_rate as energy_rate,
    generic_degeneracy as generic_degeneracy,
    generic_field as generic_field,
    symplectic_gradient as symplectic_gradient,
)
