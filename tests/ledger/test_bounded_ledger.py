"""A ledger that holds only its newest entries (long-running servers) keeps exact totals and reports."""

from __future__ import annotations

import json
import threading

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.ledger import CostLedger, SQLiteStore


def _close(a: dict, b: dict) -> bool:
    """Nested dicts equal, floats to 1e-12 (sums folded in another order)."""
    if a.keys() != b.keys():
        return False
    return all(_close(a[k], b[k]) if isinstance(a[k], dict) else a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-15)
               for k in a)


def _fill(ledger: CostLedger, n: int) -> None:
    for i in range(n):
        ledger.record("generation" if i % 3 else "retrieval", f"c{i % 4}", input_tokens=i, output_tokens=1,
                      cost_usd=0.001 * (i % 7), seconds=0.01, decision_id=f"d{i}", principal=f"p{i % 2}")


def test_bounded_ledger_keeps_the_newest_entries_and_exact_totals():
    full, bounded = CostLedger(), CostLedger(max_entries=10)
    _fill(full, 100)
    _fill(bounded, 100)
    assert len(bounded) == 10 and bounded.evicted == 90
    assert [e.decision_id for e in bounded.entries] == [f"d{i}" for i in range(90, 100)]
    assert bounded.totals() == pytest.approx(full.totals())
    for by in ("stage", "component", "model", "principal"):
        assert _close(bounded.breakdown(by), full.breakdown(by))
    assert set(bounded.breakdown("decision_id")) == {f"d{i}" for i in range(90, 100)}  # held entries only
    assert bounded.report() == full.report()
    doc = json.loads(bounded.to_json())
    assert doc["totals"]["calls"] == 100 and len(doc["entries"]) == 10
    assert _close(doc["breakdown"]["stage"], full.breakdown("stage"))


def test_bounded_ledger_folds_in_batches_and_stays_exact():
    full, bounded = CostLedger(), CostLedger(max_entries=100)
    for n in (5, 109, 110, 111, 1000):
        _fill(full, n - len(full.entries))
        _fill(bounded, n - bounded.totals()["calls"])
        assert bounded.totals() == pytest.approx(full.totals())
        assert _close(bounded.breakdown("component"), full.breakdown("component"))
        assert len(bounded) == min(n, 100) and bounded.evicted == max(0, n - 100)
        assert [e.decision_id for e in bounded.entries] == [e.decision_id for e in full.entries][-100:]
    assert json.loads(bounded.to_json())["evicted_entries"] == 900


def test_bounded_ledger_under_threads():
    ledger = CostLedger(max_entries=50)
    threads = [threading.Thread(target=_fill, args=(ledger, 200)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    totals = ledger.totals()
    assert totals["calls"] == 800 and len(ledger) == 50 and ledger.evicted == 750
    assert totals["input_tokens"] == 4 * sum(range(200))


def test_bounded_ledger_from_a_store_holds_only_the_newest(tmp_path):
    store = SQLiteStore(tmp_path / "ledger.sqlite")
    _fill(CostLedger(store=store), 30)
    reopened = CostLedger.from_store(SQLiteStore(tmp_path / "ledger.sqlite"), max_entries=5)
    assert len(reopened) == 5 and reopened.totals()["calls"] == 30
    reopened.record("generation", "late", cost_usd=0.5)
    assert reopened.totals()["calls"] == 31 and len(SQLiteStore(tmp_path / "ledger.sqlite").load_entries()) == 31


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_max_entries_is_validated(bad):
    with pytest.raises(InvalidInputError):
        CostLedger(max_entries=bad)
