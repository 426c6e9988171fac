"""Where a budget's state (spent and reserved amounts) lives: in memory, or in SQLite shared by processes.

A :class:`BudgetStore` holds, per budget key, what was spent and what is reserved, and checks-and-reserves
atomically. The memory store is one lock; :class:`SQLiteBudgetStore` takes SQLite's write lock
(``BEGIN IMMEDIATE``), so several processes can share a session or per-principal budget through one file.
A Redis store would implement the same four methods (``try_reserve`` as a Lua script).

Example:
    >>> store = MemoryBudgetStore()
    >>> limits = Amounts(usd=1.0, tokens=math.inf, seconds=math.inf, kwh=math.inf)
    >>> store.try_reserve("k", Amounts(usd=0.6), limits), store.try_reserve("k", Amounts(usd=0.6), limits)
    (True, False)
    >>> store.settle("k", reserved=Amounts(usd=0.6), actual=Amounts(usd=0.5)); store.snapshot("k")[0].usd
    0.5
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from rag_routing.errors import InvalidInputError
from rag_routing.sqlite_connection import connect_shared

# Rounding slack when comparing a float sum with a limit, so that spending exactly the limit in a few
# steps (0.1 + 0.2 against 0.3) is not refused; it can overshoot a limit by at most this fraction.
_REL_TOL = 1e-9
UNITS = ("usd", "tokens", "seconds", "kwh")


@dataclass(frozen=True, slots=True)
class Amounts:
    """An amount in each budgeted unit: US $, tokens, wall seconds, kWh."""

    usd: float = 0.0
    tokens: float = 0.0
    seconds: float = 0.0
    kwh: float = 0.0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(self.usd + other.usd, self.tokens + other.tokens, self.seconds + other.seconds,
                       self.kwh + other.kwh)

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(self.usd - other.usd, self.tokens - other.tokens, self.seconds - other.seconds,
                       self.kwh - other.kwh)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.usd, self.tokens, self.seconds, self.kwh)

    def as_dict(self) -> dict[str, float]:
        return {"usd": self.usd, "tokens": self.tokens, "seconds": self.seconds, "kwh": self.kwh}

    def validate(self) -> Amounts:
        """Raise :class:`InvalidInputError` unless every amount is a finite number >= 0."""
        for unit, value in zip(UNITS, (self.usd, self.tokens, self.seconds, self.kwh)):
            if type(value) not in (float, int) or not 0 <= value < math.inf:
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
                    raise InvalidInputError(f"{unit} must be a finite number >= 0, got {value!r}")
        return self


ZERO = Amounts()


def first_violation(spent: Amounts, reserved: Amounts, wanted: Amounts, limits: Amounts) -> str | None:
    """The first unit in which ``wanted`` does not fit (``None`` if it fits).

    Only units the call actually uses (``wanted > 0``) are checked: a free local call is not refused
    because the dollar budget is spent.
    """
    for unit, s, r, w, limit in zip(UNITS, spent.as_tuple(), reserved.as_tuple(), wanted.as_tuple(),
                                    limits.as_tuple()):
        if w > 0 and s + r + w > limit * (1 + _REL_TOL):
            return unit
    return None


@runtime_checkable
class BudgetStore(Protocol):
    """Budget state keyed by budget key; every method is atomic."""

    def try_reserve(self, key: str, wanted: Amounts, limits: Amounts) -> bool:
        """Reserve ``wanted`` if spent + reserved + wanted fits ``limits``; ``False`` (and no change) if not."""

    def settle(self, key: str, reserved: Amounts, actual: Amounts) -> None:
        """Return ``reserved`` and add ``actual`` to spent (``reserved=ZERO`` for a direct charge)."""

    def snapshot(self, key: str) -> tuple[Amounts, Amounts]:
        """(spent, reserved)."""

    def reset(self, key: str) -> None:
        """Forget everything spent and reserved under ``key``."""


class MemoryBudgetStore:
    """Budget state in this process, behind one lock. Share one instance to share a budget."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key -> [spent usd, tokens, seconds, kwh, reserved usd, tokens, seconds, kwh]; plain floats because
        # this sits on the hot path of every recorded call.
        self._state: dict[str, list[float]] = {}

    def try_reserve(self, key: str, wanted: Amounts, limits: Amounts) -> bool:
        with self._lock:
            state = self._state.get(key)
            if state is None:
                state = self._state[key] = [0.0] * 8
            if first_violation(Amounts(*state[:4]), Amounts(*state[4:]), wanted, limits) is not None:
                return False
            state[4] += wanted.usd
            state[5] += wanted.tokens
            state[6] += wanted.seconds
            state[7] += wanted.kwh
            return True

    def settle(self, key: str, reserved: Amounts, actual: Amounts) -> None:
        with self._lock:
            state = self._state.get(key)
            if state is None:
                state = self._state[key] = [0.0] * 8
            state[0] += actual.usd
            state[1] += actual.tokens
            state[2] += actual.seconds
            state[3] += actual.kwh
            if reserved is not ZERO:
                # max(0, ...): float subtraction can leave -1e-18 behind; reservations are never negative.
                state[4] = max(0.0, state[4] - reserved.usd)
                state[5] = max(0.0, state[5] - reserved.tokens)
                state[6] = max(0.0, state[6] - reserved.seconds)
                state[7] = max(0.0, state[7] - reserved.kwh)

    def snapshot(self, key: str) -> tuple[Amounts, Amounts]:
        with self._lock:
            state = list(self._state.get(key) or (0.0,) * 8)
        return Amounts(*state[:4]), Amounts(*state[4:])

    def reset(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_state (
    key TEXT PRIMARY KEY,
    spent_usd REAL NOT NULL DEFAULT 0, spent_tokens REAL NOT NULL DEFAULT 0,
    spent_seconds REAL NOT NULL DEFAULT 0, spent_kwh REAL NOT NULL DEFAULT 0,
    reserved_usd REAL NOT NULL DEFAULT 0, reserved_tokens REAL NOT NULL DEFAULT 0,
    reserved_seconds REAL NOT NULL DEFAULT 0, reserved_kwh REAL NOT NULL DEFAULT 0
)
"""


class SQLiteBudgetStore:
    """Budget state in a SQLite file, safe across threads and processes (``BEGIN IMMEDIATE``).

    Reservations of a process that dies stay reserved (the budget errs on the safe side); clear them
    with :meth:`clear_reserved`.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = connect_shared(self.path, schema=_SCHEMA, what="budget store", synchronous="FULL", timeout=timeout)

    def _row(self, key: str) -> tuple[Amounts, Amounts]:
        row = self._conn.execute(
            "SELECT spent_usd, spent_tokens, spent_seconds, spent_kwh, reserved_usd, reserved_tokens, "
            "reserved_seconds, reserved_kwh FROM budget_state WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return ZERO, ZERO
        return Amounts(*row[:4]), Amounts(*row[4:])

    def _write(self, key: str, spent: Amounts, reserved: Amounts) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO budget_state VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, *spent.as_tuple(), *reserved.as_tuple()),
        )

    def _transaction(self, fn):  # type: ignore[no-untyped-def]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def try_reserve(self, key: str, wanted: Amounts, limits: Amounts) -> bool:
        def run() -> bool:
            spent, reserved = self._row(key)
            if first_violation(spent, reserved, wanted, limits) is not None:
                return False
            self._write(key, spent, reserved + wanted)
            return True

        return self._transaction(run)

    def settle(self, key: str, reserved: Amounts, actual: Amounts) -> None:
        def run() -> None:
            spent, held = self._row(key)
            self._write(key, spent + actual, _clamp(held - reserved))

        self._transaction(run)

    def snapshot(self, key: str) -> tuple[Amounts, Amounts]:
        with self._lock:
            return self._row(key)

    def reset(self, key: str) -> None:
        self._transaction(lambda: self._conn.execute("DELETE FROM budget_state WHERE key = ?", (key,)))

    def clear_reserved(self, key: str) -> None:
        """Drop reservations left by processes that died before committing or releasing."""
        def run() -> None:
            spent, _ = self._row(key)
            self._write(key, spent, ZERO)

        self._transaction(run)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _clamp(amounts: Amounts) -> Amounts:
    # Float subtraction can leave -1e-18 behind; reserved amounts are never negative.
    return Amounts(*(max(0.0, v) for v in amounts.as_tuple()))


__all__ = ["Amounts", "ZERO", "BudgetStore", "MemoryBudgetStore", "SQLiteBudgetStore", "first_violation"]
