"""A SQLite store locked by another writer is a typed, retryable StoreBusyError (issue 16, finding 7): when
writing, reserving, updating bandit state, and when opening, where it used to claim the file was corrupt."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rag_routing.errors import CorruptStateError, StoreBusyError
from rag_routing.ledger import CostLedger, SQLiteBudgetStore, SQLiteStore
from rag_routing.ledger.budget_stores import Amounts
from rag_routing.routers.bandits.store import SQLiteBanditStore

LIMITS = Amounts(usd=1.0, tokens=math.inf, seconds=math.inf, kwh=math.inf)

LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")   # another process holds the write lock
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    """
)


class Locked:
    """Another process holding the file's write lock until the block ends."""

    def __init__(self, path):
        self.path = str(path)

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", LOCKER, self.path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"
        return self

    def __exit__(self, *exc):
        self.proc.communicate("go\n", timeout=30)


def test_opening_a_locked_ledger_is_busy_not_corrupt(tmp_path):
    path = tmp_path / "ledger.db"
    CostLedger(store=SQLiteStore(path)).record("generation", "m", cost_usd=0.5)
    with Locked(path):
        with pytest.raises(StoreBusyError, match="locked") as caught:
            SQLiteStore(path, timeout=0.1)
        assert not isinstance(caught.value, CorruptStateError) and "backup" not in str(caught.value)
        assert isinstance(caught.value, TimeoutError)  # generic handlers can retry it
    assert len(SQLiteStore(path).load_entries()) == 1  # the file was fine all along


def test_writing_to_a_locked_store_is_busy_and_retryable(tmp_path):
    ledger_path, budget_path, bandit_path = tmp_path / "l.db", tmp_path / "b.db", tmp_path / "s.db"
    ledger = CostLedger(store=SQLiteStore(ledger_path, timeout=0.1))
    budgets = SQLiteBudgetStore(budget_path, timeout=0.1)
    bandits = SQLiteBanditStore(bandit_path, timeout=0.1)
    with Locked(ledger_path), Locked(budget_path), Locked(bandit_path):
        with pytest.raises(StoreBusyError):
            ledger.record("generation", "m", cost_usd=0.5)
        with pytest.raises(StoreBusyError):
            budgets.try_reserve("k", Amounts(usd=0.5), LIMITS, lease="a")
        with pytest.raises(StoreBusyError):
            budgets.settle("k", Amounts(), Amounts(usd=0.5))
        with pytest.raises(StoreBusyError):
            bandits.put("arm", {"counts": np.zeros(2)})
    assert len(ledger) == 0 and budgets.snapshot("k")[1].usd == 0.0  # nothing half-written
    ledger.record("generation", "m", cost_usd=0.5)  # the same calls succeed once the lock is gone
    assert budgets.try_reserve("k", Amounts(usd=0.5), LIMITS, lease="a")
    bandits.put("arm", {"counts": np.zeros(2)})
    assert len(SQLiteStore(ledger_path).load_entries()) == 1 and budgets.snapshot("k")[1].usd == 0.5


def test_a_garbage_file_is_still_corrupt(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"not a database" * 200)
    for make in (SQLiteStore, SQLiteBudgetStore, SQLiteBanditStore):
        with pytest.raises(CorruptStateError) as caught:
            make(path)
        assert not isinstance(caught.value, StoreBusyError)
