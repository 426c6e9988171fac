"""Checks of hyper-parameters and settings: a clear :class:`~rag_routing.errors.InvalidInputError` that names
the parameter, never a silent coercion (``True`` is not an integer, ``nan`` is not a number).

Example:
    >>> check_int("k", 5), check_float("temperature", 0.5, open_low=True), check_choice("mode", "soft", ("soft", "hard"))
    (5, 0.5, 'soft')
    >>> check_number("lr", 0.0, 0.0, low_open=True)
    Traceback (most recent call last):
    ...
    rag_routing.errors.InvalidInputError: lr must be a finite number in (0.0, inf], got 0.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError


def check_int(name: str, value: Any, low: int = 1, high: float = math.inf) -> int:
    """``value`` as an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or value > high:
        bound = f">= {low}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise InvalidInputError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def check_float(name: str, value: Any, low: float = 0.0, high: float = math.inf, *, open_low: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` when ``open_low``)."""
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or value < low or (open_low and value == low):
        bracket = "(" if open_low else "["
        raise InvalidInputError(f"{name} must be a finite number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {choices}, got {value!r}")
    return str(value)


def check_number(name: str, value: Any, low: float, high: float = math.inf, integer: bool = False,
                 low_open: bool = False) -> None:
    """:func:`check_int` or :func:`check_float` as a statement: ``low <= value <= high`` (``low < value`` if
    ``low_open``)."""
    if integer:
        check_int(name, value, math.floor(low) + 1 if low_open else math.ceil(low), high)
    else:
        check_float(name, value, low, high, open_low=low_open)


__all__ = ["check_int", "check_float", "check_choice", "check_number"]
