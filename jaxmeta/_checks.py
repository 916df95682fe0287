"""Argument checks shared by every subpackage (package-internal: not part of the public API).

Each raises at trace time with a message that names the argument and prints the bad value:
a `TypeError` for a value of the wrong type, a `ValueError` for one out of range.
"""

import math


def check_int(name: str, value, *, minimum: int = 1) -> None:
    """Raise unless ``value`` is an ``int`` (not a ``bool``) and ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {name}={value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {name}={value!r}.")


def check_positive(name: str, value) -> None:
    """Raise unless ``value`` is a finite real number ``> 0`` (an ``int`` or ``float``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a number, got {name}={value!r}.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be positive and finite, got {name}={value!r}.")


def check_non_negative(name: str, value) -> None:
    """Raise unless ``value`` is a finite real number ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a number, got {name}={value!r}.")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be non-negative and finite, got {name}={value!r}.")
