"""Redis stores against a real redis-server: protocol, atomic multi-limit reservations, exactly-once retries,
processes racing on one budget, a Redis kill -9 and restart mid-run, Redis staying down, corrupt state."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from redis_fixture import RedisServer, redis_server_fixture  # noqa: F401  (registers the fixture)

from rag_routing.errors import BudgetExceededError, CorruptStateError, InvalidInputError, StateLostError
from rag_routing.ledger import Budget, BudgetStore, CostLedger, LedgerEntry, LedgerStore
from rag_routing.ledger.budget_stores import Amounts
from rag_routing.ledger.redis_store import RedisBudgetStore, RedisLedgerStore, StoreUnavailableError

pytest.importorskip("redis", reason="the redis client is an optional extra: pip install 'rag-routing[redis]'")

INF = math.inf


def test_stores_satisfy_the_protocols(redis_server):
    assert isinstance(RedisLedgerStore(redis_server.url), LedgerStore)
    assert isinstance(RedisBudgetStore(redis_server.url), BudgetStore)


def test_ledger_round_trip_and_namespaces(redis_server):
    store = RedisLedgerStore(redis_server.url, namespace="svc-a")
    ledger = CostLedger(store=store, principal="alice")
    ledger.record("retrieve", "bm25", seconds=0.125)
    ledger.record_call(stage="generate", model="gpt-4o", usage={"input_tokens": 30, "output_tokens": 7},
                       decision_id="d-1", metadata={"route": ["a", "b"], "score": 0.5})
    other = CostLedger(store=RedisLedgerStore(redis_server.url, namespace="svc-b"))
    other.record("judge", "j", cost_usd=1.0)
    reloaded = CostLedger.from_store(RedisLedgerStore(redis_server.url, namespace="svc-a"))
    assert reloaded.entries == ledger.entries and reloaded.totals() == ledger.totals()
    reloaded.record("judge", "j", cost_usd=0.25)
    assert len(store) == 3 and len({e.entry_id for e in store.load_entries()}) == 3


def test_append_is_idempotent_per_entry_id(redis_server):
    store = RedisLedgerStore(redis_server.url)
    entry = LedgerEntry(stage="generate", component="m", cost_usd=0.5)
    store.append(entry)
    store.append(entry)  # a retry after a lost reply
    assert store.load_entries() == [entry]


class LoseFirstReply:
    """Runs each command, then pretends the reply was lost once (as a connection dropped mid-reply)."""

    def __init__(self, connection):
        self.connection, self.original, self.lost = connection, connection.call, 0

    def __call__(self, command, **kwargs):
        if self.lost == 0:
            command(self.connection.client)  # applied on the server...
            self.lost += 1                   # ...but the client never saw the reply: it retries
        return self.original(command, **kwargs)


def test_a_retry_after_a_lost_reply_applies_once(redis_server, monkeypatch):
    budget_store = RedisBudgetStore(redis_server.url)
    limits = Amounts(usd=1.0, tokens=INF, seconds=INF, kwh=INF)
    for method, args in (("try_reserve", ("k", Amounts(usd=0.25), limits)),
                         ("settle", ("k", Amounts(usd=0.25), Amounts(usd=0.5)))):
        monkeypatch.setattr(budget_store.connection, "call", LoseFirstReply(budget_store.connection))
        getattr(budget_store, method)(*args)
        monkeypatch.undo()
    spent, reserved = budget_store.snapshot("k")
    assert spent.usd == 0.5 and reserved.usd == 0.0
    ledger_store = RedisLedgerStore(redis_server.url)
    monkeypatch.setattr(ledger_store.connection, "call", LoseFirstReply(ledger_store.connection))
    ledger_store.append(LedgerEntry(stage="g", component="m"))
    assert len(ledger_store) == 1


def test_budget_accounting_matches_the_memory_store(redis_server):
    budget = Budget(max_usd=0.10, store=RedisBudgetStore(redis_server.url))
    with budget.reserve(usd=0.04) as r:
        r.commit(usd=0.05)
    assert budget.spent().usd == pytest.approx(0.05) and budget.reserved().usd == 0
    assert not budget.can_afford(usd=0.06)
    held = budget.reserve(usd=0.03)
    assert budget.reserved().usd == pytest.approx(0.03)
    held.release()
    assert budget.reserved().usd == 0 and budget.remaining().usd == pytest.approx(0.05)
    with pytest.raises(BudgetExceededError, match="request budget exceeded"):
        budget.reserve(usd=0.06)
    budget.charge(usd=0.5)  # an unreserved cost past the limit is still recorded
    assert budget.exceeded


def test_reservation_checks_every_limit_atomically(redis_server):
    store = RedisBudgetStore(redis_server.url)
    budget = Budget(max_usd=1.0, max_tokens=100, store=store, scope="session", key="s")
    budget.reserve(usd=0.9, tokens=10)
    with pytest.raises(BudgetExceededError, match=r"\$"):
        budget.reserve(usd=0.2, tokens=10)  # tokens fit, dollars do not: nothing is reserved
    assert budget.reserved() == Amounts(0.9, 10.0, 0.0, 0.0)
    budget.reserve(tokens=90)  # a free call is not refused because dollars are short
    with pytest.raises(BudgetExceededError, match="tokens"):
        budget.reserve(tokens=1)


def test_principal_budgets_are_shared_and_reset(redis_server):
    store = RedisBudgetStore(redis_server.url)
    a1 = Budget(max_usd=1.0, scope="principal", principal="alice", store=store)
    a2 = Budget(max_usd=1.0, scope="principal", principal="alice", store=RedisBudgetStore(redis_server.url))
    a1.reserve(usd=0.75).commit()
    assert a2.spent().usd == 0.75
    with pytest.raises(BudgetExceededError, match="principal budget exceeded"):
        a2.reserve(usd=0.5)
    held = a1.reserve(usd=0.25)
    store.clear_reserved(a1.key)
    assert a2.reserved().usd == 0.25  # a live lease: no clean-up touches it
    a1.reset()
    assert a2.spent().usd == 0.0 and a2.reserved().usd == 0.25
    held.release()
    assert a2.reserved().usd == 0.0


def test_threads_racing_on_one_budget_never_overspend(redis_server):
    budget = Budget(max_tokens=1000, max_usd=10.0, store=RedisBudgetStore(redis_server.url))
    barrier, granted, lock = threading.Barrier(8), [], threading.Lock()

    def worker() -> None:
        barrier.wait()
        for _ in range(25):
            try:
                r = budget.reserve(tokens=7, usd=0.01)
            except BudgetExceededError:
                continue
            with lock:
                granted.append(1)
            r.commit()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 1000 // 7
    assert budget.spent().tokens == 7 * (1000 // 7) and budget.reserved().tokens == 0


WORKER = textwrap.dedent(
    """
    import sys, time
    from rag_routing.errors import BudgetExceededError
    from rag_routing.ledger import Budget, CostLedger
    from rag_routing.ledger.redis_store import RedisBudgetStore, RedisLedgerStore
    url, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    budget = Budget(max_tokens=1000, max_usd=5.0, scope="session", key="session:shared",
                    store=RedisBudgetStore(url, retry_seconds=20, check_persistence=False))
    ledger = CostLedger(store=RedisLedgerStore(url, namespace="race", retry_seconds=20, check_persistence=False))
    for i in range(n):
        try:
            r = budget.reserve(tokens=7, usd=0.01)
        except BudgetExceededError:
            print("refused", flush=True)
            continue
        entry = ledger.record("generate", "m", input_tokens=7, cost_usd=0.01, reservation=r)
        print("granted", entry.entry_id, flush=True)  # only after the entry and its charge returned
        time.sleep(pause)
    """
)


def _spawn(url: str, n: int, pause: float, count: int) -> list[subprocess.Popen[str]]:
    return [subprocess.Popen([sys.executable, "-c", WORKER, url, str(n), str(pause)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(count)]


def _collect(procs: list[subprocess.Popen[str]]) -> list[str]:
    granted = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        granted += [line.split()[1] for line in out.splitlines() if line.startswith("granted")]
    return granted


def _check_books(url: str, granted: list[str]) -> None:
    budget = Budget(max_tokens=1000, max_usd=5.0, scope="session", key="session:shared",
                    store=RedisBudgetStore(url))
    entries = RedisLedgerStore(url, namespace="race").load_entries()
    ids = [e.entry_id for e in entries]
    assert len(ids) == len(set(ids)), "an entry was written twice"
    assert set(granted) <= set(ids), "an acknowledged entry was lost"
    assert len(ids) == len(granted) <= 1000 // 7
    assert budget.spent().tokens == 7 * len(ids) <= 1000, "spent and the ledger disagree"
    assert budget.reserved().tokens == 0


def test_processes_racing_on_one_budget_never_overspend(redis_server):
    granted = _collect(_spawn(redis_server.url, 30, 0.0, 8))  # 240 attempts for 142 slots
    assert len(granted) == 1000 // 7
    _check_books(redis_server.url, granted)


def _wait_for_entries(url: str, at_least: int, timeout: float = 60.0) -> int:
    store = RedisLedgerStore(url, namespace="race", check_persistence=False)
    deadline = time.monotonic() + timeout
    while (n := len(store)) < at_least:
        assert time.monotonic() < deadline, f"the workers wrote only {n} entries in {timeout} s"
        time.sleep(0.01)
    store.close()
    return n


def test_redis_killed_and_restarted_mid_run_loses_and_doubles_nothing(redis_server):
    procs = _spawn(redis_server.url, 40, 0.02, 4)
    before_kill = _wait_for_entries(redis_server.url, 20)  # the workers are reserving and recording
    redis_server.restart(down_seconds=0.5)  # kill -9: only what AOF fsynced survives
    _wait_for_entries(redis_server.url, before_kill + 20)
    redis_server.restart(down_seconds=0.2)
    granted = _collect(procs)
    assert before_kill < 1000 // 7 and len(granted) == 1000 // 7  # the workers carried on after the restarts
    _check_books(redis_server.url, granted)


def test_redis_staying_down_raises_a_typed_error_in_bounded_time(redis_server):
    store = RedisBudgetStore(redis_server.url, retry_seconds=0.5)
    budget = Budget(max_usd=1.0, store=store)
    redis_server.kill()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="unreachable after 0.5 s"):
        budget.reserve(usd=0.1)
    assert time.monotonic() - started < 3.0
    with pytest.raises(ConnectionError):  # also a ConnectionError for generic handlers
        RedisLedgerStore(redis_server.url, retry_seconds=0.2, spool=None).append(LedgerEntry(stage="g", component="m"))


def test_without_persistence_a_server_is_refused_unless_allowed_and_a_lost_state_raises(tmp_path):
    server = RedisServer(tmp_path, persistent=False).start()
    try:
        for make in (RedisBudgetStore, RedisLedgerStore):
            with pytest.raises(InvalidInputError, match="allow_non_persistent=True"):
                make(server.url, spool=None)
        budget = Budget(max_usd=20.0, scope="session", key="s",
                        store=RedisBudgetStore(server.url, allow_non_persistent=True, spool=None))
        ledger_store = RedisLedgerStore(server.url, allow_non_persistent=True, spool=None)
        ledger = CostLedger(budget=budget, store=ledger_store)
        ledger.record("generate", "m", cost_usd=15.0)
        server.restart()  # no AOF: the $15 and the entry are gone
        with pytest.raises(StateLostError, match="lost the state of budget"):
            budget.reserve(usd=10.0)  # not silently granted against a budget reset to zero
        with pytest.raises(StateLostError):
            budget.spent()
        with pytest.raises(StateLostError, match="lost ledger namespace"):
            ledger.record("generate", "m", cost_usd=1.0)
        with pytest.raises(StateLostError):
            ledger_store.load_entries()
        budget.store.acknowledge_lost_state(budget.key)  # an explicit decision to carry on
        assert budget.spent().usd == 0.0
    finally:
        server.stop()


def test_corrupt_state_is_a_typed_error(redis_server):
    ledger_store = RedisLedgerStore(redis_server.url, namespace="bad")
    client = ledger_store.connection.client
    client.rpush("rag_routing:ledger:{bad}:entries", b"\xff not json")
    with pytest.raises(CorruptStateError, match="unreadable"):
        ledger_store.load_entries()
    budget_store = RedisBudgetStore(redis_server.url)
    client.hset("rag_routing:budget:{k}", "s0", "abc")
    with pytest.raises(CorruptStateError):
        budget_store.snapshot("k")
    with pytest.raises(CorruptStateError):
        budget_store.try_reserve("k", Amounts(usd=1.0), Amounts(usd=2.0, tokens=INF, seconds=INF, kwh=INF))
    client.set("rag_routing:ledger:{wrongtype}:entries", "x")
    with pytest.raises(CorruptStateError, match="rejected"):
        RedisLedgerStore(redis_server.url, namespace="wrongtype").append(LedgerEntry(stage="g", component="m"))


@pytest.mark.parametrize("kwargs", [{"namespace": ""}, {"prefix": ""}, {"retry_seconds": -1}])
def test_invalid_arguments(redis_server, kwargs):
    with pytest.raises(InvalidInputError):
        RedisLedgerStore(redis_server.url, **kwargs)
    with pytest.raises(InvalidInputError):
        RedisLedgerStore(42)  # type: ignore[arg-type]
