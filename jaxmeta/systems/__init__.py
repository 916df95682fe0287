"""Ground-truth parametric systems and their Hamiltonian/GENERIC structure."""

from ._base import (
    AbstractGenericSystem as AbstractGenericSystem,
)
from ._base import (
    AbstractHamiltonianSystem as AbstractHamiltonianSystem,
)
from ._base import (
    AbstractSystem as AbstractSystem,
)
from ._generic import (
    DampedNonlinearOscillator as DampedNonlinearOscillator,
)
from ._generic import (
    TwoGasContainers as TwoGasContainers,
)
from ._hamiltonian import (
    Duffing as Duffing,
)
from ._hamiltonian import (
    Kepler as Kepler,
)
from ._hamiltonian import (
    MassSpring as MassSpring,
)
from ._hamiltonian import (
    Pendulum as Pendulum,
)
from ._registry import SYSTEMS as SYSTEMS
from ._registry import get_system as get_system
from ._structure import (
    canonical_poisson as canonical_poisson,
)
from ._structure import (
    degeneracy_residuals as degeneracy_residuals,
)
from ._structure import (
    energy_rate as energy_rate,
)
from ._structure import (
    generic_field as generic_field,
)
from ._structure import (
    symplectic_gradient as symplectic_gradient,
)
