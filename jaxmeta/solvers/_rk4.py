"""Classical fourth-order Runge–Kutta as a Diffrax solver (diffrax ships no RK4 class)."""

from collections.abc import Callable
from typing import ClassVar

import diffrax
import numpy as np

_rk4_tableau = diffrax.ButcherTableau(
    c=np.array([0.5, 0.5, 1.0]),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    # Classical RK4 has no embedded method: a zero error estimate. Use it at a fixed step
    # (`diffrax.ConstantStepSize` or `diffrax.StepTo`), never under an adaptive controller.
    b_error=np.zeros(4),
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
)


class RK4(diffrax.AbstractERK):
    """The classical 4th-order Runge–Kutta method (Runge 1895), fixed step only.

    Built from its Butcher tableau on `diffrax.AbstractERK`; 3rd-order Hermite dense output.
    """

    tableau: ClassVar[diffrax.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable[..., diffrax.ThirdOrderHermitePolynomialInterpolation]] = (
        diffrax.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        del terms
        return 4
