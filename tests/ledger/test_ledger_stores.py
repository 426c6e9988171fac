"""Stores: memory, SQLite round trip, crash safety, corruption detection, concurrency."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from rag_routing.errors import CorruptStateError
from rag_routing.ledger import CostLedger, LedgerEntry, LedgerStore, MemoryStore, SQLiteStore

CHILD = textwrap.dedent(
    """
    import os, sys
    from rag_routing.ledger import CostLedger, SQLiteStore
    path, stop_after = sys.argv[1], int(sys.argv[2])
    ledger = CostLedger(store=SQLiteStore(path), ledger_id="child")
    i = 0
    while True:
        i += 1
        ledger.record("generate", "m", input_tokens=i, cost_usd=0.5, metadata={"i": i})
        print(i, flush=True)  # printed only after the entry's transaction committed
        if i == stop_after:
            os._exit(1)  # no close, no atexit, no flush of anything else
    """
)


def test_stores_satisfy_the_protocol(tmp_path):
    assert isinstance(MemoryStore(), LedgerStore)
    assert isinstance(SQLiteStore(tmp_path / "a.db"), LedgerStore)


def test_memory_store_write_through_and_reload():
    store = MemoryStore()
    ledger = CostLedger(store=store)
    ledger.record("retrieve", "bm25", seconds=0.1)
    ledger.record("generate", "gpt-4o", cost_usd=0.5)
    assert len(store) == 2
    again = CostLedger.from_store(store)
    assert again.entries == ledger.entries
    again.record("judge", "j")
    assert len(store) == 3


def test_sqlite_round_trip_keeps_every_field(tmp_path):
    path = tmp_path / "ledger.db"
    ledger = CostLedger(store=SQLiteStore(path), principal="alice")
    ledger.record("retrieve", "bm25", seconds=0.125)
    ledger.record_call(stage="generate", model="Meta-Llama-3-8B", usage={"input_tokens": 30, "output_tokens": 7},
                       seconds=0.5, decision_id="d-1", metadata={"route": ["a", "b"], "score": 0.5})
    ledger.record_call(stage="generate", model="unknown-llm", input_tokens=3, allow_unpriced=True)
    ledger.store.close()
    reloaded = CostLedger.from_store(SQLiteStore(path))
    assert reloaded.entries == ledger.entries
    e = reloaded.entries[1]
    assert {k: e.metadata[k] for k in ("route", "score")} == {"route": ["a", "b"], "score": 0.5}  # + price_source
    assert e.estimated is False and e.energy_kwh > 0
    assert reloaded.entries[2].priced is False and reloaded.entries[0].energy_kwh is None
    assert reloaded.totals() == ledger.totals()
    # the reloaded ledger keeps appending to the same file, with ids that do not collide
    reloaded.record("judge", "j", cost_usd=0.25)
    assert len(SQLiteStore(path)) == 4
    assert len({x.entry_id for x in SQLiteStore(path).load_entries()}) == 4


def test_sqlite_uses_wal_and_full_sync(tmp_path):
    store = SQLiteStore(tmp_path / "ledger.db")
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_sqlite_namespaces_share_a_file(tmp_path):
    path = tmp_path / "shared.db"
    a = CostLedger(store=SQLiteStore(path, namespace="svc-a"))
    b = CostLedger(store=SQLiteStore(path, namespace="svc-b"))
    a.record("g", "x", cost_usd=1.0)
    b.record("g", "y", cost_usd=2.0)
    b.record("g", "y", cost_usd=2.0)
    assert CostLedger.from_store(SQLiteStore(path, namespace="svc-a")).totals()["cost_usd"] == 1.0
    assert CostLedger.from_store(SQLiteStore(path, namespace="svc-b")).totals()["calls"] == 2
    assert SQLiteStore(path).namespaces() == ["svc-a", "svc-b"]


def test_sqlite_skips_an_entry_already_stored(tmp_path):
    store = SQLiteStore(tmp_path / "ledger.db")
    entry = CostLedger().record("g", "x", cost_usd=1.0)
    store.append(entry)
    store.append(entry)  # a retried write
    assert store.load_entries() == [entry]
    # hand-made entries get distinct ids, so they are not mistaken for retries
    a, b = LedgerEntry("g", "y"), LedgerEntry("g", "y")
    store.append(a)
    store.append(b)
    assert a.entry_id != b.entry_id and len(store.load_entries()) == 3


def test_sqlite_is_thread_safe(tmp_path):
    ledger = CostLedger(store=SQLiteStore(tmp_path / "ledger.db", synchronous="NORMAL"))

    def work() -> None:
        for _ in range(50):
            ledger.record("g", "x", input_tokens=1, cost_usd=0.5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reloaded = SQLiteStore(ledger.store.path).load_entries()
    assert len(reloaded) == 400 and sum(e.input_tokens for e in reloaded) == 400
    assert sorted(e.entry_id for e in reloaded) == sorted(e.entry_id for e in ledger.entries)


def _check_consistent(path) -> list:
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    entries = SQLiteStore(path).load_entries()
    # committed in order, without gaps, each complete
    assert [e.input_tokens for e in entries] == list(range(1, len(entries) + 1))
    assert all(e.metadata == {"i": e.input_tokens} and e.cost_usd == 0.5 for e in entries)
    return entries


def test_process_exit_mid_run_loses_nothing_committed(tmp_path):
    path = tmp_path / "crash.db"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), "60"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    printed = [int(x) for x in proc.stdout.split()]
    assert printed[-1] == 60
    assert len(_check_consistent(path)) == 60


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_while_writing_loses_nothing_committed(tmp_path):
    path = tmp_path / "killed.db"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "0"], stdout=subprocess.PIPE, text=True)
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        seen = int(line)
        if seen >= 150:
            os.kill(proc.pid, signal.SIGKILL)  # somewhere in the middle of the next write
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    entries = _check_consistent(path)
    assert len(entries) >= seen  # everything reported committed is there (maybe one more)
    CostLedger.from_store(SQLiteStore(path)).record("after", "crash")  # and the file is still writable


def test_garbage_file_raises_corrupt_state(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CorruptStateError, match="not a readable ledger database"):
        SQLiteStore(path)


def test_damaged_pages_raise_corrupt_state(tmp_path):
    path = tmp_path / "damaged.db"
    ledger = CostLedger(store=SQLiteStore(path))
    for i in range(300):
        ledger.record("g", "x", input_tokens=i, metadata={"pad": "x" * 200})
    ledger.store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.store.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8192
    data[4096:8192] = os.urandom(4096)  # overwrite a whole page in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptStateError):
        CostLedger.from_store(SQLiteStore(path))


def test_foreign_database_raises_corrupt_state(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE ledger_entries (id INTEGER, stuff TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptStateError, match="lacks columns"):
        SQLiteStore(path)


def test_tampered_row_raises_corrupt_state(tmp_path):
    path = tmp_path / "tampered.db"
    CostLedger(store=SQLiteStore(path)).record("g", "x", metadata={"a": 1})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE ledger_entries SET metadata = '{broken'")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptStateError, match="unreadable entry"):
        SQLiteStore(path).load_entries()
