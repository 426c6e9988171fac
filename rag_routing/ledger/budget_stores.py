"""Where a budget's state (spent and reserved amounts) lives: in memory, or in SQLite shared by processes.

A :class:`BudgetStore` holds, per budget key, what was spent and what is reserved, and checks-and-reserves
atomically. The memory store is one lock; :class:`~rag_routing.ledger.sqlite_budget_store.SQLiteBudgetStore`
takes SQLite's write lock (``BEGIN IMMEDIATE``), so several processes can share a session or per-principal
budget through one file; :class:`~rag_routing.ledger.redis_budget_store.RedisBudgetStore` does it in Lua.

Reservations are leases
-----------------------
A reservation made with ``lease=<id>`` expires ``lease_seconds`` after it was made or last renewed
(:meth:`renew`); a :class:`~rag_routing.ledger.budget.Budget` renews its open reservations from a heartbeat
thread while the call runs (:mod:`rag_routing.ledger.leases`). When the holder is gone (killed, hung, its
:class:`~rag_routing.ledger.budget.Reservation` garbage-collected) the lease is not renewed and the next
operation on the budget reclaims it. ``settle`` of a lease that was reclaimed still charges what was spent
and returns nothing twice. No clean-up (:meth:`clear_reserved`, :meth:`reset`) touches a live lease.

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
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rag_routing.errors import InvalidInputError

# Rounding slack when comparing a float sum with a limit, so that spending exactly the limit in a few
# steps (0.1 + 0.2 against 0.3) is not refused; it can overshoot a limit by at most this fraction.
_REL_TOL = 1e-9
UNITS = ("usd", "tokens", "seconds", "kwh")
_PLAIN = (float, int)


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
        usd, tokens, seconds, kwh = self.usd, self.tokens, self.seconds, self.kwh
        if (type(usd) in _PLAIN and type(tokens) in _PLAIN and type(seconds) in _PLAIN and type(kwh) in _PLAIN
                and 0 <= usd < math.inf and 0 <= tokens < math.inf and 0 <= seconds < math.inf
                and 0 <= kwh < math.inf):
            return self  # the common case, checked without building tuples
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
    """Budget state keyed by budget key; every method is atomic.

    Stores that lease reservations (all of the library's) also take ``lease=`` in ``try_reserve`` and
    ``settle``, have ``renew(key, lease) -> bool`` and a ``lease_seconds`` attribute; a store without them
    holds reservations until they are settled.
    """

    def try_reserve(self, key: str, wanted: Amounts, limits: Amounts) -> bool:
        """Reserve ``wanted`` if spent + reserved + wanted fits ``limits``; ``False`` (and no change) if not."""

    def settle(self, key: str, reserved: Amounts, actual: Amounts) -> None:
        """Return ``reserved`` (or the lease) and add ``actual`` to spent (``reserved=ZERO`` for a direct charge)."""

    def snapshot(self, key: str) -> tuple[Amounts, Amounts]:
        """(spent, reserved)."""

    def reset(self, key: str) -> None:
        """Forget everything spent and reserved under ``key``."""


def check_lease_seconds(value: float) -> float:
    """``lease_seconds`` as a float; :class:`InvalidInputError` unless a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise InvalidInputError(f"lease_seconds must be a finite number of seconds > 0, got {value!r}")
    return float(value)


#: Default lifetime of a lease that is not renewed (the heartbeat renews every third of it).
DEFAULT_LEASE_SECONDS = 60.0


class MemoryBudgetStore:
    """Budget state in this process, behind one lock. Share one instance to share a budget.

    Args:
        lease_seconds: how long a leased reservation lives without being renewed.
    """

    def __init__(self, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.lease_seconds = check_lease_seconds(lease_seconds)
        self._lock = threading.Lock()
        # key -> [spent usd, tokens, seconds, kwh, reserved usd, tokens, seconds, kwh]; plain floats because
        # this sits on the hot path of every recorded call. Reserved includes the leases' amounts.
        self._state: dict[str, list[float]] = {}
        self._leases: dict[str, dict[str, tuple[Amounts, float]]] = {}  # key -> lease -> (amounts, deadline)
        # key -> no lease of it expires before this (a lower bound: renewals only push deadlines later), so an
        # operation scans the leases only when one may have expired, not on every call.
        self._earliest: dict[str, float] = {}

    def _reclaim(self, key: str, state: list[float]) -> None:
        leases = self._leases.get(key)
        if not leases:
            return
        now = time.monotonic()
        if now <= self._earliest.get(key, 0.0):
            return
        for lease in [name for name, (_, deadline) in leases.items() if deadline < now]:
            _subtract(state, leases.pop(lease)[0])
        self._earliest[key] = min((deadline for _, deadline in leases.values()), default=math.inf)

    def _get(self, key: str) -> list[float]:
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = [0.0] * 8
        self._reclaim(key, state)
        return state

    def try_reserve(self, key: str, wanted: Amounts, limits: Amounts, *, lease: str | None = None) -> bool:
        with self._lock:
            state = self._get(key)
            if _violates(state, wanted, limits):
                return False
            state[4] += wanted.usd
            state[5] += wanted.tokens
            state[6] += wanted.seconds
            state[7] += wanted.kwh
            if lease is not None:
                deadline = time.monotonic() + self.lease_seconds
                held = self._leases.get(key)
                if not held:
                    held = self._leases[key] = {}
                    self._earliest[key] = deadline
                elif deadline < self._earliest.get(key, math.inf):
                    self._earliest[key] = deadline
                held[lease] = (wanted, deadline)
            return True

    def renew(self, key: str, lease: str) -> bool:
        """Extend a live lease by ``lease_seconds``; ``False`` if it expired and was reclaimed (or never was)."""
        with self._lock:
            self._get(key)
            held = self._leases.get(key, {}).get(lease)
            if held is None:
                return False
            self._leases[key][lease] = (held[0], time.monotonic() + self.lease_seconds)
            return True

    def settle(self, key: str, reserved: Amounts, actual: Amounts, *, lease: str | None = None) -> None:
        with self._lock:
            state = self._get(key)
            state[0] += actual.usd
            state[1] += actual.tokens
            state[2] += actual.seconds
            state[3] += actual.kwh
            if lease is not None:
                held = self._leases.get(key, {}).pop(lease, None)
                if held is not None:  # a reclaimed lease was returned already
                    _subtract(state, held[0])
            elif reserved is not ZERO:
                _subtract(state, reserved)

    def snapshot(self, key: str) -> tuple[Amounts, Amounts]:
        with self._lock:
            state = list(self._get(key))
        return Amounts(*state[:4]), Amounts(*state[4:])

    def clear_reserved(self, key: str) -> None:
        """Drop expired leases and reservations held without a lease; live leases stay."""
        self._drop(key, spent=False)

    def reset(self, key: str) -> None:
        """Forget what was spent and every reservation except live leases (their holders are still running)."""
        self._drop(key, spent=True)

    def _drop(self, key: str, *, spent: bool) -> None:
        with self._lock:
            state = self._get(key)
            live = ZERO
            for amounts, _ in self._leases.get(key, {}).values():
                live = live + amounts
            state[4:] = list(live.as_tuple())
            if spent:
                state[:4] = [0.0] * 4


def _violates(state: list[float], wanted: Amounts, limits: Amounts) -> bool:
    """``first_violation(spent, reserved, wanted, limits) is not None`` on a memory state row, unrolled (the
    same comparisons, without building two Amounts per reservation)."""
    tol = 1 + _REL_TOL
    w = wanted.usd
    if w > 0 and state[0] + state[4] + w > limits.usd * tol:
        return True
    w = wanted.tokens
    if w > 0 and state[1] + state[5] + w > limits.tokens * tol:
        return True
    w = wanted.seconds
    if w > 0 and state[2] + state[6] + w > limits.seconds * tol:
        return True
    w = wanted.kwh
    return w > 0 and state[3] + state[7] + w > limits.kwh * tol


def _subtract(state: list[float], amounts: Amounts) -> None:
    # max(0, ...): float subtraction can leave -1e-18 behind; reservations are never negative.
    usd, tokens, seconds, kwh = state[4] - amounts.usd, state[5] - amounts.tokens, state[6] - amounts.seconds, \
        state[7] - amounts.kwh
    state[4] = usd if usd > 0.0 else 0.0
    state[5] = tokens if tokens > 0.0 else 0.0
    state[6] = seconds if seconds > 0.0 else 0.0
    state[7] = kwh if kwh > 0.0 else 0.0


def clamp(amounts: Amounts) -> Amounts:
    """``amounts`` with negatives (float residue of a subtraction) set to 0."""
    return Amounts(*(max(0.0, v) for v in amounts.as_tuple()))


def __getattr__(name: str) -> object:
    # SQLiteBudgetStore always lived here; it is defined in its own module (imported lazily: no import cycle).
    if name == "SQLiteBudgetStore":
        from rag_routing.ledger.sqlite_budget_store import SQLiteBudgetStore

        return SQLiteBudgetStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Amounts", "ZERO", "BudgetStore", "MemoryBudgetStore", "SQLiteBudgetStore", "first_violation",
           "check_lease_seconds", "DEFAULT_LEASE_SECONDS", "clamp"]
