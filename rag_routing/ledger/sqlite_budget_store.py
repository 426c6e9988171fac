"""Budget state in a SQLite file shared by the threads and processes of one machine, with leased reservations.

Every write takes SQLite's write lock (``BEGIN IMMEDIATE``), so the check-and-reserve is atomic across
processes. A reservation made with ``lease=`` is a row of ``budget_leases`` with a deadline (wall clock of the
machine); the holder renews it (:meth:`SQLiteBudgetStore.renew`, done by the Budget's heartbeat) and every
later operation on the budget returns the amounts of leases whose deadline passed: a process killed with
``kill -9`` while holding a reservation leaks it for at most ``lease_seconds``. A file locked by another writer
for the whole ``timeout`` raises the retryable :class:`~rag_routing.errors.StoreBusyError`.

Example:
    >>> import math, os, tempfile
    >>> from rag_routing.ledger.budget_stores import Amounts
    >>> store = SQLiteBudgetStore(os.path.join(tempfile.mkdtemp(), "budgets.db"), lease_seconds=30)
    >>> limits = Amounts(usd=1.0, tokens=math.inf, seconds=math.inf, kwh=math.inf)
    >>> store.try_reserve("k", Amounts(usd=0.6), limits, lease="call-1")
    True
    >>> store.clear_reserved("k"); store.snapshot("k")[1].usd    # a live lease is never cleared
    0.6
    >>> store.settle("k", Amounts(usd=0.6), Amounts(usd=0.5), lease="call-1"); store.snapshot("k")
    (Amounts(usd=0.5, tokens=0.0, seconds=0.0, kwh=0.0), Amounts(usd=0.0, tokens=0.0, seconds=0.0, kwh=0.0))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rag_routing.ledger.budget_stores import (
    DEFAULT_LEASE_SECONDS,
    ZERO,
    Amounts,
    check_lease_seconds,
    clamp,
    first_violation,
)
from rag_routing.sqlite_connection import connect_shared, sqlite_errors

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_state (
    key TEXT PRIMARY KEY,
    spent_usd REAL NOT NULL DEFAULT 0, spent_tokens REAL NOT NULL DEFAULT 0,
    spent_seconds REAL NOT NULL DEFAULT 0, spent_kwh REAL NOT NULL DEFAULT 0,
    reserved_usd REAL NOT NULL DEFAULT 0, reserved_tokens REAL NOT NULL DEFAULT 0,
    reserved_seconds REAL NOT NULL DEFAULT 0, reserved_kwh REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS budget_leases (
    key TEXT NOT NULL, lease TEXT NOT NULL,
    usd REAL NOT NULL, tokens REAL NOT NULL, seconds REAL NOT NULL, kwh REAL NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (key, lease)
);
"""
_WHAT = "budget store"


class SQLiteBudgetStore:
    """Budget state in a SQLite file, safe across threads and processes (``BEGIN IMMEDIATE``).

    Args:
        path: the database file (created if missing).
        timeout: seconds to wait for another process's write lock before :class:`StoreBusyError`.
        lease_seconds: how long a leased reservation lives without being renewed.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self.path = str(path)
        self.lease_seconds = check_lease_seconds(lease_seconds)
        self._lock = threading.Lock()
        self._conn = connect_shared(self.path, schema=_SCHEMA, what=_WHAT, synchronous="FULL", timeout=timeout)

    # -- rows -----------------------------------------------------------------------------------------------
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
            (key, *spent.as_tuple(), *clamp(reserved).as_tuple()),
        )

    def _sum_leases(self, key: str, condition: str, *args: float) -> Amounts:
        row = self._conn.execute(
            f"SELECT TOTAL(usd), TOTAL(tokens), TOTAL(seconds), TOTAL(kwh) FROM budget_leases "
            f"WHERE key = ? AND {condition}", (key, *args)).fetchone()
        return Amounts(*row)

    def _lease(self, key: str, lease: str) -> Amounts | None:
        row = self._conn.execute("SELECT usd, tokens, seconds, kwh FROM budget_leases WHERE key = ? AND lease = ?",
                                 (key, lease)).fetchone()
        return None if row is None else Amounts(*row)

    def _live_row(self, key: str) -> tuple[Amounts, Amounts]:
        """(spent, reserved) with expired leases returned and deleted (inside a write transaction)."""
        spent, reserved = self._row(key)
        now = time.time()
        expired = self._sum_leases(key, "expires < ?", now)
        if expired != ZERO:
            self._conn.execute("DELETE FROM budget_leases WHERE key = ? AND expires < ?", (key, now))
            reserved = clamp(reserved - expired)
            self._write(key, spent, reserved)
        return spent, reserved

    def _transaction(self, fn: Callable[[], T]) -> T:
        with self._lock, sqlite_errors(self.path, _WHAT):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    # -- the BudgetStore protocol --------------------------------------------------------------------------
    def try_reserve(self, key: str, wanted: Amounts, limits: Amounts, *, lease: str | None = None) -> bool:
        def run() -> bool:
            spent, reserved = self._live_row(key)
            if first_violation(spent, reserved, wanted, limits) is not None:
                return False
            self._write(key, spent, reserved + wanted)
            if lease is not None:
                self._conn.execute("INSERT OR REPLACE INTO budget_leases VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (key, lease, *wanted.as_tuple(), time.time() + self.lease_seconds))
            return True

        return self._transaction(run)

    def renew(self, key: str, lease: str) -> bool:
        """Extend a live lease by ``lease_seconds``; ``False`` if it expired and was reclaimed (or never was)."""
        def run() -> bool:
            self._live_row(key)
            cursor = self._conn.execute("UPDATE budget_leases SET expires = ? WHERE key = ? AND lease = ?",
                                        (time.time() + self.lease_seconds, key, lease))
            return cursor.rowcount == 1

        return self._transaction(run)

    def settle(self, key: str, reserved: Amounts, actual: Amounts, *, lease: str | None = None) -> None:
        def run() -> None:
            spent, held = self._live_row(key)
            if lease is not None:
                leased = self._lease(key, lease)
                returned = ZERO if leased is None else leased  # a reclaimed lease was returned already
                self._conn.execute("DELETE FROM budget_leases WHERE key = ? AND lease = ?", (key, lease))
            else:
                returned = reserved
            self._write(key, spent + actual, held - returned)

        self._transaction(run)

    def snapshot(self, key: str) -> tuple[Amounts, Amounts]:
        """(spent, reserved); leases past their deadline are not counted (read-only: nothing is written)."""
        with self._lock, sqlite_errors(self.path, _WHAT):
            self._conn.execute("BEGIN")
            try:
                spent, reserved = self._row(key)
                expired = self._sum_leases(key, "expires < ?", time.time())
            finally:
                self._conn.execute("COMMIT")
        return spent, clamp(reserved - expired)

    def reset(self, key: str) -> None:
        """Forget what was spent and every reservation except live leases (their holders are still running)."""
        self._drop(key, spent=True)

    def clear_reserved(self, key: str) -> None:
        """Drop expired leases and reservations held without a lease (the old protocol); live leases stay."""
        self._drop(key, spent=False)

    def _drop(self, key: str, *, spent: bool) -> None:
        def run() -> None:
            kept_spent, _ = self._live_row(key)
            live = self._sum_leases(key, "1")
            self._write(key, ZERO if spent else kept_spent, live)

        self._transaction(run)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteBudgetStore({self.path!r}, lease_seconds={self.lease_seconds:g})"


__all__ = ["SQLiteBudgetStore"]
