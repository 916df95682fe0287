"""Diffrax solvers jaxmeta adds: classical RK4 and symplectic integrators."""

from ._rk4 import RK4 as RK4
from ._solve import Autonomous as Autonomous, solve_at as solve_at
from ._symplectic import (
    ImplicitMidpoint as ImplicitMidpoint,
    StormerVerlet as StormerVerlet,
    Yoshida4 as Yoshida4,
)
