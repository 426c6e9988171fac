"""Reservations are leases (issue 16, finding 3): a worker killed with kill -9 while holding one leaks it only
until the lease expires (SQLite, Redis, also across a Redis restart), a live holder keeps its lease for as long
as its call runs (heartbeat), and no clean-up (clear_reserved, reset) touches a live lease."""

from __future__ import annotations

import gc
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from redis_fixture import redis_server_fixture  # noqa: F401  (registers the fixture)

from rag_routing.errors import BudgetExceededError
from rag_routing.ledger import Budget, MemoryBudgetStore, SQLiteBudgetStore
from rag_routing.ledger.budget_stores import Amounts

LEASE = 1.0  # seconds; the heartbeat renews every third of it (room for a loaded machine)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from rag_routing.ledger import Budget, SQLiteBudgetStore
    kind, where, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if kind == "sqlite":
        store = SQLiteBudgetStore(where, lease_seconds=lease)
    else:
        from rag_routing.ledger.redis_store import RedisBudgetStore
        store = RedisBudgetStore(where, lease_seconds=lease, spool=None, retry_seconds=20)
    budget = Budget(max_usd=5.0, scope="session", key="session:shared", store=store)
    held = budget.reserve(usd=4.0, label="a long call")
    print("held", flush=True)
    time.sleep(120)  # the call runs; the heartbeat keeps the lease alive until kill -9
    """
)


def _store(kind: str, where: str, lease: float = LEASE):
    if kind == "memory":
        return MemoryBudgetStore(lease_seconds=lease)
    if kind == "sqlite":
        return SQLiteBudgetStore(where, lease_seconds=lease)
    pytest.importorskip("redis", reason="the redis client is an optional extra")
    from rag_routing.ledger.redis_store import RedisBudgetStore

    return RedisBudgetStore(where, lease_seconds=lease, spool=None)


def _budget(store) -> Budget:
    return Budget(max_usd=5.0, scope="session", key="session:shared", store=store)


def _start_holder(kind: str, where: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, where, str(LEASE)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read() if proc.poll() is not None else line
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _wait_reclaimed(budget: Budget, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while budget.reserved().usd > 0:
        assert time.monotonic() - started < timeout, "the dead worker's reservation was never reclaimed"
        time.sleep(0.05)
    return time.monotonic() - started


def _where(kind: str, tmp_path, request) -> str:
    if kind == "redis":
        return request.getfixturevalue("redis_server").url
    return str(tmp_path / "budgets.db")


@pytest.mark.slow  # subprocesses and real waits on leases: runs in CI (make test)
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_killed_workers_reservation_is_reclaimed_and_a_live_one_is_kept(kind, tmp_path, request):
    where = _where(kind, tmp_path, request)
    budget = _budget(_store(kind, where))
    proc = _start_holder(kind, where)
    try:
        time.sleep(2 * LEASE)  # longer than a lease: only the worker's heartbeat keeps it
        assert budget.reserved().usd == 4.0
        with pytest.raises(BudgetExceededError):
            budget.reserve(usd=2.0)
    finally:
        _kill(proc)
    assert budget.reserved().usd == 4.0  # still held right after the kill...
    _wait_reclaimed(budget)              # ...and returned once the lease ran out
    with budget.reserve(usd=5.0) as r:   # the whole budget is usable again
        r.commit(usd=5.0)
    assert budget.spent().usd == 5.0 and budget.reserved().usd == 0.0


@pytest.mark.slow
def test_redis_leases_survive_a_restart_correctly(request):
    server = request.getfixturevalue("redis_server")
    budget = _budget(_store("redis", server.url))
    mine = budget.reserve(usd=0.5)  # a live lease of this process
    proc = _start_holder("redis", server.url)
    _kill(proc)                      # a dead lease of 4.0
    server.restart(down_seconds=0.2)  # kill -9 of Redis too; AOF keeps both leases
    assert budget.reserved().usd == 4.5
    _wait_reclaimed_to(budget, 0.5)  # the dead one is reclaimed after the restart...
    time.sleep(2 * LEASE)
    assert budget.reserved().usd == 0.5  # ...the live one is renewed and kept
    mine.commit(usd=0.25)
    assert budget.spent().usd == 0.25 and budget.reserved().usd == 0.0


def _wait_reclaimed_to(budget: Budget, left: float, timeout: float = 10.0) -> None:
    started = time.monotonic()
    while budget.reserved().usd > left:
        assert time.monotonic() - started < timeout, "the dead worker's reservation was never reclaimed"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_clean_up_never_touches_a_live_lease(kind, tmp_path, request):
    store = _store(kind, _where(kind, tmp_path, request))
    budget = _budget(store)
    running = budget.reserve(usd=4.0)  # a worker's call, running longer than a lease
    time.sleep(2 * LEASE)
    store.clear_reserved(budget.key)  # the only remedy the issue found wiped this and let $7 be spent of $5
    assert budget.reserved().usd == 4.0
    with pytest.raises(BudgetExceededError):
        budget.reserve(usd=3.0)
    store.reset(budget.key)  # a new period forgets what was spent, not what running calls hold
    assert budget.reserved().usd == 4.0
    running.commit(usd=4.0)
    with pytest.raises(BudgetExceededError):
        budget.reserve(usd=3.0)
    assert budget.spent().usd == 4.0 and budget.reserved().usd == 0.0


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_dropped_reservation_expires(kind, tmp_path):
    store = _store(kind, str(tmp_path / "budgets.db"))
    budget = _budget(store)
    budget.reserve(usd=4.0)  # neither committed nor released: nobody renews it once it is garbage
    gc.collect()
    assert _wait_reclaimed(budget) < 10 * LEASE


def test_a_reclaimed_lease_is_not_returned_twice(tmp_path):
    store = SQLiteBudgetStore(tmp_path / "budgets.db", lease_seconds=LEASE)
    limits = Amounts(usd=5.0, tokens=math.inf, seconds=math.inf, kwh=math.inf)
    assert store.try_reserve("k", Amounts(usd=4.0), limits, lease="stalled")
    assert store.try_reserve("k", Amounts(usd=1.0), limits, lease="other")
    time.sleep(LEASE * 1.5)  # neither renewed: both expire
    assert store.try_reserve("k", Amounts(usd=3.0), limits, lease="new")  # reclaims both
    assert not store.renew("k", "stalled")
    store.settle("k", Amounts(usd=4.0), Amounts(usd=4.0), lease="stalled")  # the stalled call ran after all
    spent, reserved = store.snapshot("k")
    assert spent.usd == 4.0 and reserved.usd == 3.0  # charged, and the live lease "new" untouched


class OldProtocolStore:
    """A user's store written for the four-method protocol (no leases): still works, holds until settled."""

    def __init__(self):
        self.inner = MemoryBudgetStore()

    def try_reserve(self, key, wanted, limits):
        return self.inner.try_reserve(key, wanted, limits)

    def settle(self, key, reserved, actual):
        self.inner.settle(key, reserved, actual)

    def snapshot(self, key):
        return self.inner.snapshot(key)

    def reset(self, key):
        self.inner.reset(key)


def test_a_store_without_leases_still_works():
    budget = _budget(OldProtocolStore())
    with budget.reserve(usd=4.0) as r:
        assert r.lease is None and budget.reserved().usd == 4.0
        r.commit(usd=3.0)
    assert budget.spent().usd == 3.0 and budget.reserved().usd == 0.0
