"""The ambient ledger: ledger_scope, current_ledger, inheritance by asyncio tasks and (helped) threads."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.ledger import (
    Budget,
    CostLedger,
    LedgerThreadPoolExecutor,
    bind_context,
    current_ledger,
    ledger_scope,
    run_in_ledger_context,
)


def _record(stage: str = "work") -> None:
    current_ledger(required=True).record(stage, "c", cost_usd=0.5)


def test_no_ambient_ledger_outside_a_scope():
    assert current_ledger() is None
    with pytest.raises(InvalidInputError, match="ledger_scope"):
        current_ledger(required=True)


def test_scope_creates_or_uses_a_ledger():
    mine = CostLedger()
    with ledger_scope(mine) as ledger:
        assert ledger is mine and current_ledger() is mine
    with ledger_scope(budget=Budget(max_usd=1.0)) as made:
        assert isinstance(made, CostLedger) and made.budget is not None
    with pytest.raises(InvalidInputError):
        with ledger_scope(mine, principal="x"):
            pass
    assert current_ledger() is None


def test_nested_scopes_restore_the_outer_ledger():
    with ledger_scope() as outer:
        _record("outer-1")
        with ledger_scope() as inner:
            assert current_ledger() is inner
            _record("inner")
        assert current_ledger() is outer
        _record("outer-2")
    assert current_ledger() is None
    assert [e.stage for e in outer.entries] == ["outer-1", "outer-2"]
    assert [e.stage for e in inner.entries] == ["inner"]


def test_scope_is_restored_after_an_exception():
    with pytest.raises(RuntimeError):
        with ledger_scope():
            raise RuntimeError("boom")
    assert current_ledger() is None


async def test_asyncio_tasks_inherit_the_scope():
    with ledger_scope() as ledger:
        async def task(i: int) -> None:
            await asyncio.sleep(0)
            _record(f"t{i}")

        await asyncio.gather(*(asyncio.create_task(task(i)) for i in range(200)))
        await asyncio.to_thread(_record, "to_thread")  # to_thread copies the context too
    assert len(ledger) == 201
    assert ledger.totals()["cost_usd"] == 100.5


async def test_concurrent_requests_keep_separate_ledgers():
    async def request(n: int) -> CostLedger:
        with ledger_scope() as ledger:
            for _ in range(n):
                await asyncio.sleep(0)  # interleave with the other requests
                _record()
            return ledger

    ledgers = await asyncio.gather(*(request(n) for n in range(1, 21)))
    assert [len(ledger) for ledger in ledgers] == list(range(1, 21))


def test_plain_threads_do_not_inherit_but_the_executor_does():
    seen: list[object] = []
    with ledger_scope() as ledger:
        t = threading.Thread(target=lambda: seen.append(current_ledger()))
        t.start()
        t.join()
        with ThreadPoolExecutor(2) as plain:
            seen.append(plain.submit(current_ledger).result())
        with LedgerThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(_record, "submitted") for _ in range(50)]
            for f in futures:
                f.result()
            list(pool.map(lambda _: _record("mapped"), range(50)))
    assert seen == [None, None]  # documented: threads start with an empty context
    assert ledger.breakdown("stage")["submitted"]["calls"] == 50
    assert ledger.breakdown("stage")["mapped"]["calls"] == 50


def test_executor_uses_the_context_of_each_submit_call():
    with LedgerThreadPoolExecutor(max_workers=2) as pool:
        with ledger_scope() as first:
            f1 = pool.submit(_record)
        with ledger_scope() as second:
            f2 = pool.submit(_record)
            f3 = pool.submit(_record)
        for f in (f1, f2, f3):
            f.result()
    assert (len(first), len(second)) == (1, 2)


def test_run_in_ledger_context_and_bind_context_for_threads():
    ledger = CostLedger()
    t = threading.Thread(target=run_in_ledger_context, args=(_record,), kwargs={"ledger": ledger})
    t.start()
    t.join()
    assert len(ledger) == 1

    with ledger_scope() as scoped:
        bound = bind_context(_record)
        threads = [threading.Thread(target=bound) for _ in range(8)]  # one bound fn, many threads at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(scoped) == 8
    assert current_ledger() is None


def test_run_in_ledger_context_defaults_to_the_current_ledger():
    with ledger_scope() as ledger:
        assert run_in_ledger_context(current_ledger) is ledger
