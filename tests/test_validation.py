"""Hyper-parameter checks: typed errors naming the parameter, no silent coercion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.validation import check_choice, check_float, check_int, check_number


def test_accepted_values_come_back_typed():
    assert check_int("k", np.int64(3)) == 3 and type(check_int("k", np.int64(3))) is int
    assert check_float("lr", np.float32(0.5)) == 0.5 and check_float("w", 2, high=2) == 2.0
    assert check_choice("mode", "hard", ("soft", "hard")) == "hard"
    check_number("dim", 4, 1, integer=True)
    check_number("lr", 1e-3, 0.0, low_open=True)


@pytest.mark.parametrize("call", [
    lambda: check_int("k", True),                      # a bool is not an integer
    lambda: check_int("k", 2.0),
    lambda: check_int("k", 0),
    lambda: check_int("k", 11, high=10),
    lambda: check_float("lr", math.nan),
    lambda: check_float("lr", math.inf),
    lambda: check_float("lr", "0.1"),
    lambda: check_float("t", 0.0, open_low=True),
    lambda: check_choice("mode", "medium", ("soft", "hard")),
    lambda: check_number("dim", 0, 0, integer=True, low_open=True),
    lambda: check_number("dim", 1.5, 1, integer=True),
    lambda: check_number("p", 1.5, 0.0, 1.0),
])
def test_bad_values_are_named_errors(call):
    with pytest.raises(InvalidInputError):
        call()
