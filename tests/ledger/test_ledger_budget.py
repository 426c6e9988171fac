"""Budgets: refusal before the call, reserve -> commit / release, no overspending under concurrency."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from rag_routing.errors import BudgetExceededError, InvalidInputError, UnknownPriceError
from rag_routing.ledger import Budget, CostLedger, MemoryBudgetStore, SQLiteBudgetStore


def test_reserve_commit_release_accounting():
    budget = Budget(max_usd=1.0, max_tokens=1000)
    r = budget.reserve(usd=0.4, tokens=300)
    assert budget.reserved().usd == 0.4 and budget.spent().usd == 0.0
    assert budget.remaining().usd == pytest.approx(0.6) and budget.remaining().seconds == float("inf")
    charged = r.commit(usd=0.3)  # tokens not reported: charged at the reserved amount
    assert charged.usd == 0.3 and charged.tokens == 300 and r.state == "committed"
    assert budget.reserved().usd == 0.0 and budget.spent().usd == 0.3 and budget.spent().tokens == 300
    r.release()  # no-op once committed
    assert budget.spent().usd == 0.3
    with pytest.raises(InvalidInputError, match="already committed"):
        r.commit()
    r2 = budget.reserve(usd=0.5)
    r2.release()
    assert budget.reserved().usd == 0.0 and budget.spent().usd == 0.3 and r2.state == "released"


def test_refusal_names_the_unit_and_what_is_left():
    budget = Budget(max_usd=0.10, max_tokens=100)
    budget.reserve(tokens=80).commit()
    expected = r"needs 30 tokens but only 20 tokens of 100 tokens is left.*raise max_tokens"
    with pytest.raises(BudgetExceededError, match=expected):
        budget.reserve(tokens=30)
    assert budget.can_afford(tokens=20) and not budget.can_afford(tokens=21)
    assert budget.can_afford(usd=0.1)


def test_overspend_is_recorded_and_seen_by_later_reservations():
    budget = Budget(max_usd=1.0)
    with budget.reserve(usd=0.2) as r:
        r.commit(usd=1.3)  # the call cost more than estimated: it is spent all the same
    assert budget.spent().usd == 1.3 and budget.exceeded
    assert budget.remaining().usd == 0.0
    with pytest.raises(BudgetExceededError):
        budget.reserve(usd=0.01)
    budget.reserve(tokens=10).release()  # a unit the call does not spend is not refused


def test_an_overrun_past_the_limit_is_logged_not_silent(caplog):
    budget = Budget(max_usd=1.0)
    with caplog.at_level("WARNING", logger="rag_routing.ledger.budget"):
        budget.reserve(usd=0.2).commit(usd=0.5)     # above its estimate, still within the limit: no warning
        budget.reserve(usd=0.1, seconds=0.0).commit(usd=0.1, seconds=3.0)  # an unlimited unit: no warning
        assert caplog.records == []
        budget.reserve(usd=0.2).commit(usd=0.55)    # carries spending past $1
    [record] = caplog.records
    assert record.levelname == "WARNING" and "request budget passed its limit" in record.getMessage()
    assert "$0.55 against $0.2" in record.getMessage() and "spent $1.15 of $1" in record.getMessage()


def test_context_manager_commits_on_success_and_releases_on_error():
    budget = Budget(max_usd=1.0)
    with budget.reserve(usd=0.25):
        pass
    assert budget.spent().usd == 0.25
    with pytest.raises(RuntimeError):
        with budget.reserve(usd=0.5):
            raise RuntimeError("the call failed")
    assert budget.spent().usd == 0.25 and budget.reserved().usd == 0.0


@pytest.mark.parametrize("kwargs", [{"max_usd": -1}, {"max_tokens": float("nan")}, {"scope": "galaxy"},
                                    {"scope": "principal"}])
def test_invalid_budgets(kwargs):
    with pytest.raises(InvalidInputError):
        Budget(**kwargs)


def test_invalid_reservation_amounts():
    with pytest.raises(InvalidInputError):
        Budget(max_usd=1).reserve(usd=-0.1)
    with pytest.raises(InvalidInputError):
        Budget(max_usd=1).reserve(usd=float("nan"))


def test_guard_refuses_before_the_call_runs():
    ledger = CostLedger(budget=Budget(max_usd=0.01))
    calls = []

    def expensive_llm() -> str:
        calls.append(1)
        return "answer"

    with pytest.raises(BudgetExceededError):
        with ledger.guard(stage="generate", model="gpt-4", est_input_tokens=1000, est_output_tokens=500):
            expensive_llm()
    assert calls == [] and len(ledger) == 0
    assert ledger.budget.reserved().usd == 0.0 and ledger.budget.spent().usd == 0.0


def test_guard_unknown_price_fails_before_reserving():
    ledger = CostLedger(budget=Budget(max_usd=1.0))
    with pytest.raises(UnknownPriceError):
        ledger.guard(stage="generate", model="mystery-llm", est_input_tokens=10)
    assert ledger.budget.reserved().usd == 0.0


def test_guard_records_actual_usage_and_frees_the_rest():
    ledger = CostLedger(budget=Budget(max_usd=0.05))
    with ledger.guard(stage="generate", model="gpt-4o", est_input_tokens=1000, est_output_tokens=1000) as call:
        assert ledger.budget.reserved().usd == pytest.approx(0.0125)
        entry = call.record(usage={"input_tokens": 1000, "output_tokens": 100})
    assert entry.estimated is False and entry.cost_usd == pytest.approx(0.0035)
    assert ledger.budget.spent().usd == pytest.approx(0.0035) and ledger.budget.reserved().usd == 0.0
    assert entry.seconds >= 0 and len(ledger) == 1


def test_guard_without_record_books_the_estimate():
    ledger = CostLedger(budget=Budget(max_usd=1.0))
    with ledger.guard(stage="generate", model="gpt-4o-mini", input_text="hello world", est_output_tokens=10):
        time.sleep(0.01)
    (entry,) = ledger.entries
    assert (entry.input_tokens, entry.output_tokens, entry.estimated) == (2, 10, True)
    assert entry.seconds >= 0.01
    assert ledger.budget.spent().usd == pytest.approx(entry.cost_usd)


def test_guard_releases_when_the_call_raises():
    ledger = CostLedger(budget=Budget(max_usd=1.0))
    with pytest.raises(TimeoutError):
        with ledger.guard(stage="generate", model="gpt-4o", est_input_tokens=100):
            raise TimeoutError
    assert len(ledger) == 0 and ledger.budget.reserved().usd == 0.0 and ledger.budget.spent().usd == 0.0


async def test_async_guard():
    ledger = CostLedger(budget=Budget(max_tokens=250))

    async def call() -> bool:
        try:
            async with ledger.guard(stage="g", model="gpt-4o", est_input_tokens=50, est_output_tokens=50) as g:
                await asyncio.sleep(0.01)  # all reservations are held at once
                g.record(usage={"input_tokens": 50, "output_tokens": 50})
            return True
        except BudgetExceededError:
            return False

    results = await asyncio.gather(*(call() for _ in range(10)))
    assert sum(results) == 2 and len(ledger) == 2 and ledger.budget.spent().tokens == 200


def test_records_outside_a_guard_are_charged_to_the_budget():
    ledger = CostLedger(budget=Budget(max_usd=1.0))
    ledger.record("judge", "j", cost_usd=0.75, input_tokens=5)
    assert ledger.budget.spent().usd == 0.75 and ledger.budget.spent().tokens == 5
    with pytest.raises(BudgetExceededError):
        ledger.reserve(usd=0.5)
    ledger.reserve(usd=0.25).commit()


def test_ledger_reserve_without_budget_is_a_noop():
    r = CostLedger().reserve(usd=100.0)
    assert r.commit().usd == 100.0


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_threads_racing_on_one_budget_never_overspend(store_kind, tmp_path):
    store = MemoryBudgetStore() if store_kind == "memory" else SQLiteBudgetStore(tmp_path / "budget.db")
    budget = Budget(max_tokens=1000, max_usd=10.0, store=store)
    barrier = threading.Barrier(16)
    granted = []

    def worker() -> None:
        barrier.wait()
        for _ in range(20):
            try:
                r = budget.reserve(tokens=7, usd=0.01)
            except BudgetExceededError:
                continue
            granted.append(1)
            time.sleep(0)  # let the others race while this reservation is held
            r.commit()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 1000 // 7  # exactly as many as fit, never one more
    assert budget.spent().tokens == 7 * (1000 // 7) <= 1000
    assert budget.reserved().tokens == 0


def test_guarded_calls_from_threads_never_overspend():
    ledger = CostLedger(budget=Budget(max_usd=0.01))
    ran = []
    lock = threading.Lock()

    def call() -> None:
        try:
            with ledger.guard(stage="g", model="gpt-4o", est_input_tokens=400, est_output_tokens=0):  # $0.001
                with lock:
                    ran.append(1)
                time.sleep(0.005)
        except BudgetExceededError:
            pass

    threads = [threading.Thread(target=call) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ran) == 10 == len(ledger)
    assert ledger.totals()["cost_usd"] == pytest.approx(0.01)
    assert ledger.budget.spent().usd <= 0.01 * (1 + 1e-9)


def test_principal_budgets_are_shared_through_the_store():
    store = MemoryBudgetStore()
    a1 = Budget(max_usd=1.0, scope="principal", principal="alice", store=store)
    a2 = Budget(max_usd=1.0, scope="principal", principal="alice", store=store)
    bob = Budget(max_usd=1.0, scope="principal", principal="bob", store=store)
    a1.reserve(usd=0.75).commit()
    assert a2.spent().usd == 0.75 and bob.spent().usd == 0.0
    with pytest.raises(BudgetExceededError, match="principal budget exceeded"):
        a2.reserve(usd=0.5)
    bob.reserve(usd=0.5).commit()
    a1.reset()
    assert a2.spent().usd == 0.0


def test_request_budgets_are_independent_even_on_one_store():
    store = MemoryBudgetStore()
    one, two = Budget(max_usd=1.0, store=store), Budget(max_usd=1.0, store=store)
    one.reserve(usd=1.0).commit()
    two.reserve(usd=1.0).commit()
    assert one.key != two.key


def test_budget_to_dict():
    budget = Budget(max_usd=2.0, scope="session", key="session:s1")
    budget.reserve(usd=0.5)
    d = budget.to_dict()
    assert d["limits"] == {"usd": 2.0, "tokens": None, "seconds": None, "kwh": None}
    assert d["reserved"]["usd"] == 0.5 and d["key"] == "session:s1"


def test_processes_sharing_a_sqlite_budget_never_overspend(tmp_path):
    path = tmp_path / "shared-budget.db"
    SQLiteBudgetStore(path).close()
    child = textwrap.dedent(
        """
        import sys
        from rag_routing.errors import BudgetExceededError
        from rag_routing.ledger import Budget, SQLiteBudgetStore
        budget = Budget(max_tokens=1000, scope="session", key="session:shared", store=SQLiteBudgetStore(sys.argv[1]))
        granted = 0
        for _ in range(100):
            try:
                budget.reserve(tokens=7).commit()
                granted += 1
            except BudgetExceededError:
                pass
        print(granted)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", child, str(path)], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    granted = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(granted) == 1000 // 7
    budget = Budget(max_tokens=1000, scope="session", key="session:shared", store=SQLiteBudgetStore(path))
    assert budget.spent().tokens == 7 * (1000 // 7) and budget.reserved().tokens == 0
