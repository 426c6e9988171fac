"""Ledger entry ids never collide and a true duplicate is an error (issue 16, finding 6); a ledger export that
cannot be read is a typed error (finding 13)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest
from redis_fixture import redis_server_fixture  # noqa: F401  (registers the fixture)

from rag_routing.errors import CorruptStateError, DuplicateEntryError, InvalidInputError
from rag_routing.ledger import CostLedger, LedgerEntry, MemoryStore, SQLiteStore

RESTORE = textwrap.dedent(
    """
    import sys
    from rag_routing.ledger import CostLedger, SQLiteStore
    export, path = sys.argv[1], sys.argv[2]
    ledger = CostLedger.from_json(export, store=SQLiteStore(path))
    for _ in range(100):
        ledger.record("generation", "m", cost_usd=0.5)
    """
)


def _store(kind: str, tmp_path, request, namespace: str = "svc"):
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "ledger.db", namespace=namespace)
    pytest.importorskip("redis", reason="the redis client is an optional extra")
    from rag_routing.ledger.redis_store import RedisLedgerStore

    return RedisLedgerStore(request.getfixturevalue("redis_server").url, namespace=namespace, spool=None)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_restart_with_a_fixed_ledger_id_keeps_every_entry(kind, tmp_path, request):
    store = _store(kind, tmp_path, request)
    for _ in range(2):  # the service restarts with the same ledger_id
        ledger = CostLedger(store=store, ledger_id="billing")
        for _ in range(10):
            ledger.record("generation", "m", cost_usd=1.0)
    entries = store.load_entries()
    assert len(entries) == 20 and len({e.entry_id for e in entries}) == 20
    assert sum(e.cost_usd for e in entries) == 20.0


@pytest.mark.slow  # two subprocesses: runs in CI (make test)
def test_one_export_restored_in_two_processes_keeps_every_entry(tmp_path):
    source = CostLedger(ledger_id="exported")
    source.record("generation", "m", cost_usd=0.25)
    export = tmp_path / "ledger.json"
    source.to_json(export)
    path = tmp_path / "shared.db"
    SQLiteStore(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", RESTORE, str(export), str(path)], stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    entries = SQLiteStore(path).load_entries()
    assert len(entries) == 200 and sum(e.cost_usd for e in entries) == 100.0


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_a_true_duplicate_is_an_error_and_a_retry_is_not(kind, tmp_path, request):
    store = _store(kind, tmp_path, request)
    entry = LedgerEntry(stage="generation", component="m", cost_usd=0.5, entry_id="fixed:1")
    store.append(entry)
    store.append(entry)  # the same write again (a retry) is applied once
    other = dataclasses.replace(entry, cost_usd=7.0)
    with pytest.raises(DuplicateEntryError, match="fixed:1"):
        store.append(other)  # another entry under a stored id: never silently dropped
    assert store.load_entries() == [entry]
    ledger = CostLedger(store=store)
    with pytest.raises(DuplicateEntryError):
        ledger.add_entry(other)
    assert len(ledger) == 0  # nothing half-recorded


def test_unreadable_exports_raise_typed_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="cannot read"):
        CostLedger.from_json(tmp_path / "missing.json")
    with pytest.raises(InvalidInputError):
        CostLedger.from_json(tmp_path)  # a folder
    latin = tmp_path / "latin1.json"
    latin.write_bytes(b'{"entries": [], "ledger_id": "caf\xe9"}')
    with pytest.raises(CorruptStateError, match="UTF-8"):
        CostLedger.from_json(latin)
    deep = tmp_path / "deep.json"
    deep.write_text('{"entries": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CorruptStateError, match="deeply"):
        CostLedger.from_json(deep)
    with pytest.raises(CorruptStateError, match="deeply"):
        CostLedger.from_json("{" + '"a":{' * 50_000 + "}" * 50_001)
    for text in ('{"entries": {}}', '{"entries": [], "ledger_id": 5}', '{"entries": [1]}'):
        with pytest.raises(CorruptStateError):
            CostLedger.from_json(text)
    with pytest.raises(InvalidInputError):
        CostLedger.from_json(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_metadata_too_deep_to_store_is_a_typed_error(kind, tmp_path, request):
    deep: dict = {}
    node = deep
    for _ in range(5_000):
        node["a"] = {}
        node = node["a"]
    ledger = CostLedger(store=_store(kind, tmp_path, request))
    with pytest.raises(InvalidInputError, match="metadata"):
        ledger.record("generation", "m", metadata=deep)
    assert len(ledger) == 0
