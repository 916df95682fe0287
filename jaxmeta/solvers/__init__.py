"""Diffrax solvers jaxmeta adds: classical RK4 (and symplectic integrators)."""

from ._rk4 import RK4 as RK4
