"""Budgets in $, tokens, seconds and kWh that refuse a call *before* it runs.

A call first reserves its estimated cost (:meth:`Budget.reserve`); if spent + reserved + estimate would pass a
limit, :class:`~rag_routing.errors.BudgetExceededError` is raised and the call never runs. After the call,
:meth:`Reservation.commit` charges what it actually cost and returns the rest of the reservation. An actual
cost above the estimate is still charged in full (it was spent), so later reservations see it, and a warning
is logged when that carries spending past a limit: a budget is never exceeded silently, also when many threads
or processes reserve at once (the check-and-reserve is atomic in the
:class:`~rag_routing.ledger.budget_stores.BudgetStore`).

A reservation is a *lease* on a store that leases (every store of the library): it expires after the store's
``lease_seconds`` unless renewed, and a heartbeat thread (:mod:`rag_routing.ledger.leases`) renews it while
the call runs. A worker killed while holding one leaks it for at most ``lease_seconds``; no clean-up ever
touches a live one.

Scopes: ``"request"`` (a fresh key per budget), ``"session"`` (pass ``key=`` to share one across objects or,
with a shared store, across processes) and ``"principal"`` (keyed by ``principal``: one quota per user or
API key, shared by every Budget built with the same principal and store).

Example:
    >>> budget = Budget(max_usd=0.10)
    >>> with budget.reserve(usd=0.04) as r:
    ...     _ = r.commit(usd=0.05)          # the call cost more than estimated: still charged
    >>> round(budget.spent().usd, 2), round(budget.remaining().usd, 2)
    (0.05, 0.05)
    >>> budget.can_afford(usd=0.06)
    False
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
import os
import secrets
import threading
import uuid
from typing import Any, Literal

from rag_routing.errors import BudgetExceededError, InvalidInputError
from rag_routing.ledger import leases
from rag_routing.ledger.budget_stores import (
    UNITS,
    ZERO,
    Amounts,
    BudgetStore,
    MemoryBudgetStore,
    first_violation,
)

Scope = Literal["request", "session", "principal"]
logger = logging.getLogger(__name__)
_LIMIT_NAMES = {"usd": "max_usd", "tokens": "max_tokens", "seconds": "max_seconds", "kwh": "max_kwh"}


class Budget:
    """Limits on what calls may spend, with reservations checked before each call.

    Args:
        max_usd, max_tokens, max_seconds, max_kwh: limits; ``None`` = unlimited in that unit.
        scope: ``"request"``, ``"session"`` or ``"principal"`` (see the module docstring).
        principal: the user / API key a ``"principal"`` budget belongs to (required for that scope).
        store: where spent and reserved amounts live (default: a private in-memory store).
        key: the state key in ``store``; defaults to ``principal:<principal>`` or ``<scope>:<random id>``.
    """

    def __init__(self, max_usd: float | None = None, max_tokens: float | None = None,
                 max_seconds: float | None = None, max_kwh: float | None = None, *,
                 scope: Scope = "request", principal: str | None = None,
                 store: BudgetStore | None = None, key: str | None = None):
        if scope not in ("request", "session", "principal"):
            raise InvalidInputError(f"scope must be 'request', 'session' or 'principal', got {scope!r}")
        if scope == "principal" and not principal:
            raise InvalidInputError("a scope='principal' budget needs principal='<user or API key>'")
        given = {"max_usd": max_usd, "max_tokens": max_tokens, "max_seconds": max_seconds, "max_kwh": max_kwh}
        for name, value in given.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                      or not 0 <= value < math.inf):
                raise InvalidInputError(f"{name} must be a finite number >= 0 or None, got {value!r}")
        self.limits = Amounts(*(math.inf if v is None else float(v) for v in given.values()))
        self.scope = scope
        self.principal = principal
        self.store: BudgetStore = store if store is not None else MemoryBudgetStore()
        self.key = key or (f"principal:{principal}" if scope == "principal" else f"{scope}:{uuid.uuid4().hex}")

    # -- reserving ----------------------------------------------------------------------------------------
    def reserve(self, usd: float = 0.0, tokens: float = 0.0, seconds: float = 0.0, kwh: float = 0.0, *,
                label: str | None = None) -> Reservation:
        """Hold an estimated amount, or raise :class:`BudgetExceededError` (the call must not run)."""
        wanted = Amounts(usd, tokens, seconds, kwh).validate()
        if _leases(self.store):
            lease = _new_lease_id()
            granted = self.store.try_reserve(self.key, wanted, self.limits, lease=lease)  # type: ignore[call-arg]
        else:  # a store of the old protocol: the reservation is held until settled
            lease = None
            granted = self.store.try_reserve(self.key, wanted, self.limits)
        if not granted:
            raise BudgetExceededError(self._refusal(wanted, label))
        reservation = Reservation(self, wanted, label=label, lease=lease)
        if lease is not None:
            leases.KEEPER.keep(reservation)
        return reservation

    def can_afford(self, usd: float = 0.0, tokens: float = 0.0, seconds: float = 0.0, kwh: float = 0.0) -> bool:
        """Whether a reservation of this size would succeed now (it reserves nothing)."""
        spent, reserved = self.store.snapshot(self.key)
        return first_violation(spent, reserved, Amounts(usd, tokens, seconds, kwh).validate(), self.limits) is None

    def charge(self, usd: float = 0.0, tokens: float = 0.0, seconds: float = 0.0, kwh: float = 0.0) -> None:
        """Add a cost that was not reserved (it happened; it is recorded even past the limit)."""
        self.store.settle(self.key, ZERO, Amounts(usd, tokens, seconds, kwh).validate())

    # -- state --------------------------------------------------------------------------------------------
    def spent(self) -> Amounts:
        return self.store.snapshot(self.key)[0]

    def reserved(self) -> Amounts:
        return self.store.snapshot(self.key)[1]

    def remaining(self) -> Amounts:
        """Limit - spent - reserved per unit, never below 0; ``inf`` for unlimited units."""
        spent, reserved = self.store.snapshot(self.key)
        return Amounts(*(max(0.0, lim - s - r) for lim, s, r in
                         zip(self.limits.as_tuple(), spent.as_tuple(), reserved.as_tuple())))

    @property
    def exceeded(self) -> bool:
        """True once spending passed a limit (possible only when actual costs beat their reservations)."""
        return any(s > lim for s, lim in zip(self.spent().as_tuple(), self.limits.as_tuple()))

    def reset(self) -> None:
        """Start again from zero (e.g. a new billing period for a principal); live leases of calls still
        running stay reserved."""
        self.store.reset(self.key)

    def to_dict(self) -> dict[str, Any]:
        spent, reserved = self.store.snapshot(self.key)
        return {
            "scope": self.scope, "principal": self.principal, "key": self.key,
            "limits": {u: (None if math.isinf(v) else v) for u, v in self.limits.as_dict().items()},
            "spent": spent.as_dict(), "reserved": reserved.as_dict(),
        }

    def _refusal(self, wanted: Amounts, label: str | None) -> str:
        spent, reserved = self.store.snapshot(self.key)
        unit = first_violation(spent, reserved, wanted, self.limits) or "usd"
        i = UNITS.index(unit)
        left = max(0.0, self.limits.as_tuple()[i] - spent.as_tuple()[i] - reserved.as_tuple()[i])
        what = f" for {label}" if label else ""
        return (
            f"{self.scope} budget exceeded{what}: the call needs {_fmt(unit, wanted.as_tuple()[i])} but only "
            f"{_fmt(unit, left)} of {_fmt(unit, self.limits.as_tuple()[i])} is left "
            f"({_fmt(unit, spent.as_tuple()[i])} spent, {_fmt(unit, reserved.as_tuple()[i])} reserved); "
            f"route to a cheaper candidate, lower the estimate or raise {_LIMIT_NAMES[unit]}"
        )

    def __repr__(self) -> str:
        limits = ", ".join(f"{_LIMIT_NAMES[u]}={v:g}" for u, v in self.limits.as_dict().items() if v != math.inf)
        return f"Budget({limits or 'unlimited'}, scope={self.scope!r})"


class Reservation:
    """An amount held on a budget until the call is committed (charged) or released.

    ``commit`` charges the actual amounts; a unit you do not report is charged at its reserved amount (the
    conservative choice). As a context manager: leaving the block normally commits the reservation if it was
    not committed yet; leaving it with an exception releases it.

    On a leasing store the reservation holds the lease ``lease``, renewed by the heartbeat until it is
    committed or released (or dropped: then it expires and the store reclaims it).
    """

    __slots__ = ("budget", "amounts", "label", "lease", "actual", "_state", "_lock", "__weakref__")

    def __init__(self, budget: Budget | None, amounts: Amounts, *, label: str | None = None,
                 lease: str | None = None):
        self.budget = budget
        self.amounts = amounts
        self.label = label
        self.lease = lease
        self.actual: Amounts | None = None
        self._state = "open"
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``"open"``, ``"committed"`` or ``"released"``."""
        return self._state

    def commit(self, actual: Amounts | Any | None = None, *, usd: float | None = None,
               tokens: float | None = None, seconds: float | None = None, kwh: float | None = None) -> Amounts:
        """Charge the actual cost (an :class:`Amounts`, a ledger entry, or keywords) and free the rest."""
        if actual is not None and not isinstance(actual, Amounts):  # a LedgerEntry
            usd = actual.cost_usd if usd is None else usd
            tokens = actual.input_tokens + actual.output_tokens if tokens is None else tokens
            seconds = actual.seconds if seconds is None else seconds
            kwh = actual.energy_kwh if kwh is None else kwh
            actual = None
        base = actual if actual is not None else self.amounts
        charged = Amounts(
            base.usd if usd is None else usd, base.tokens if tokens is None else tokens,
            base.seconds if seconds is None else seconds, base.kwh if kwh is None else kwh,
        ).validate()
        with self._lock:
            if self._state != "open":
                raise InvalidInputError(f"this reservation is already {self._state}; reserve again for a new call")
            self._state = "committed"
        self.actual = charged
        self._settle(charged)
        return charged

    def _settle(self, charged: Amounts) -> None:
        if self.budget is None:
            return
        if self.lease is None:
            self.budget.store.settle(self.budget.key, self.amounts, charged)
        else:
            leases.KEEPER.drop(self)
            self.budget.store.settle(self.budget.key, self.amounts, charged, lease=self.lease)  # type: ignore[call-arg]
        self._warn_if_overrun(charged)

    def _warn_if_overrun(self, charged: Amounts) -> None:
        """A call that cost more than its reservation may carry spending past a limit (its estimate was low: an
        upstream's tokenizer counting more than ours, an ignored ``max_tokens``). It is charged in full and later
        calls are refused; this says so in the log. The store is read only after such an overrun, in a limited
        unit."""
        if self.budget is None:
            return
        limits, cost, estimate = self.budget.limits.as_tuple(), charged.as_tuple(), self.amounts.as_tuple()
        if not any(cost[i] > estimate[i] and math.isfinite(limits[i]) for i in range(len(UNITS))):
            return
        spent = self.budget.spent().as_tuple()
        passed = [i for i in range(len(UNITS)) if spent[i] > limits[i]]
        if passed:
            logger.warning(
                "%s budget passed its limit: a call cost more than the estimate reserved for it (%s); spent %s. "
                "It is charged in full and later calls are refused.", self.budget.scope,
                ", ".join(f"{_fmt(u, cost[i])} against {_fmt(u, estimate[i])}" for i, u in enumerate(UNITS)
                          if cost[i] > estimate[i]),
                ", ".join(f"{_fmt(UNITS[i], spent[i])} of {_fmt(UNITS[i], limits[i])}" for i in passed))

    def release(self) -> None:
        """Give the reserved amount back (the call did not happen). No-op once committed or released."""
        with self._lock:
            if self._state != "open":
                return
            self._state = "released"
        self._settle(ZERO)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.release()
        elif self._state == "open":
            self.commit()

    def __repr__(self) -> str:
        return f"Reservation({self.amounts}, state={self._state!r})"


# Lease ids: a random per-process prefix (64 bits, new in a forked child) and a counter. Unique across the
# processes sharing a store like uuid4, without an os.urandom call per reservation on the hot path.
_LEASE_PREFIX = secrets.token_hex(8)
_LEASE_COUNTER = itertools.count(1)


def _new_lease_id() -> str:
    return f"{_LEASE_PREFIX}-{next(_LEASE_COUNTER):x}"


def _new_lease_prefix() -> None:
    global _LEASE_PREFIX, _LEASE_COUNTER
    _LEASE_PREFIX, _LEASE_COUNTER = secrets.token_hex(8), itertools.count(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lease_prefix)


def _leases(store: BudgetStore) -> bool:
    """Whether ``store`` takes leased reservations (``lease=`` and ``renew``)."""
    return callable(getattr(store, "renew", None)) and bool(getattr(store, "lease_seconds", None))


def _fmt(unit: str, value: float) -> str:
    if math.isinf(value):
        return "unlimited"
    return {"usd": f"${value:.6g}", "tokens": f"{value:.0f} tokens", "seconds": f"{value:.3g} s",
            "kwh": f"{value:.4g} kWh"}[unit]


__all__ = ["Budget", "Reservation", "Amounts", "Scope"]
