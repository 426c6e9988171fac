"""Faults the stores must survive (issue 16, findings 3-6), replayed and counted: kill -9 of a worker holding a
reservation, clean-up racing live workers, a Redis outage longer than the retry window, restarts with a fixed
ledger id.

Run: ``python benchmarks/store_faults.py [--runs 6]`` (needs ``redis-server`` on the PATH; about a minute).
Prints, per store: seconds until a killed worker's reservation is back (lease 1 s), the most ever spent
against a $5 budget while ``clear_reserved`` runs in a loop beside 8 workers, what a 3 s outage did to 20
calls, and how many of 20 entries survive a restart with a fixed ``ledger_id``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

from rag_routing.errors import BudgetExceededError
from rag_routing.ledger import Budget, CostLedger, SQLiteBudgetStore, SQLiteStore

LEASE = 1.0
HOLDER = textwrap.dedent(
    """
    import sys, time
    from rag_routing.ledger import Budget, SQLiteBudgetStore
    from rag_routing.ledger.redis_store import RedisBudgetStore
    kind, where = sys.argv[1], sys.argv[2]
    store = (SQLiteBudgetStore(where, lease_seconds=1.0) if kind == "sqlite"
             else RedisBudgetStore(where, lease_seconds=1.0, spool=None))
    held = Budget(max_usd=5.0, scope="session", key="k", store=store).reserve(usd=4.0)
    print("held", flush=True)
    time.sleep(600)
    """
)


class Redis:
    def __init__(self, folder: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder, self.proc = folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        self.proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", self.folder, "--save", "", "--appendonly", "yes", "--appendfsync",
                                      "always", "--loglevel", "warning"], stdout=subprocess.DEVNULL)
        for _ in range(500):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def budget_store(kind: str, where: str, **kw):
    if kind == "sqlite":
        return SQLiteBudgetStore(where, lease_seconds=LEASE)
    from rag_routing.ledger.redis_store import RedisBudgetStore

    return RedisBudgetStore(where, lease_seconds=LEASE, **{"spool": None, **kw})


def killed_holder(kind: str, where: str) -> float:
    budget = Budget(max_usd=5.0, scope="session", key="k", store=budget_store(kind, where))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, kind, where], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    while budget.reserved().usd > 0:
        if time.monotonic() - started > 30:
            return float("inf")
        time.sleep(0.02)
    return time.monotonic() - started


def clean_up_race(kind: str, where: str) -> float:
    store = budget_store(kind, where)
    budget = Budget(max_usd=5.0, scope="session", key="race", store=store)
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                with budget.reserve(usd=1.0) as r:
                    time.sleep(0.05)  # the call runs
                    r.commit(usd=1.0)
            except BudgetExceededError:
                return

    def janitor() -> None:
        while not stop.is_set():
            store.clear_reserved(budget.key)

    threads = [threading.Thread(target=worker) for _ in range(8)] + [threading.Thread(target=janitor)]
    for t in threads:
        t.start()
    for t in threads[:8]:
        t.join()
    stop.set()
    threads[-1].join()
    return budget.spent().usd


def outage(folder: str, redis: Redis) -> dict[str, float]:
    from rag_routing.ledger.redis_store import RedisBudgetStore, RedisLedgerStore

    budget = Budget(max_usd=100.0, scope="session", key="outage",
                    store=RedisBudgetStore(redis.url, retry_seconds=0.3, spool=os.path.join(folder, "b.db")))
    ledger = CostLedger(budget=budget, store=RedisLedgerStore(redis.url, namespace="outage", retry_seconds=0.3,
                                                              spool=os.path.join(folder, "l.db")))
    ran = 0
    for i in range(20):
        with ledger.guard(stage="generation", model="gpt-4o", est_input_tokens=1000) as call:
            if i == 10:
                redis.kill()  # down for 3 s mid-call: ten calls ran before, this one runs during the outage
            ran += 1
            call.record(input_tokens=1000, output_tokens=100)
        if i == 10:
            time.sleep(3.0)
            redis.start()
    stored = RedisLedgerStore(redis.url, namespace="outage", spool=None).load_entries()
    return {"ran": ran, "recorded": len(stored), "spent_usd": budget.spent().usd,
            "cost_usd": sum(e.cost_usd for e in ledger.entries), "reserved_left": budget.reserved().usd}


def fixed_ledger_id(path: str) -> int:
    for _ in range(2):
        ledger = CostLedger(store=SQLiteStore(path), ledger_id="billing")
        for _ in range(10):
            ledger.record("generation", "m", cost_usd=1.0)
    return len(SQLiteStore(path).load_entries())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    with tempfile.TemporaryDirectory() as folder:
        redis = Redis(folder).start()
        try:
            for kind, where in (("sqlite", os.path.join(folder, "budgets.db")), ("redis", redis.url)):
                waits = [killed_holder(kind, where) for _ in range(args.runs)]
                leaked = sum(w == float("inf") for w in waits)
                print(f"{kind:6s} kill -9 holding $4 of $5: leaked {leaked}/{args.runs}, back after "
                      f"{min(waits):.2f}-{max(waits):.2f} s (lease {LEASE:g} s)")
                print(f"{kind:6s} 8 workers + clear_reserved in a loop: spent ${clean_up_race(kind, where):.2f} "
                      f"of a $5 budget")
            result = outage(folder, redis)
            print(f"redis  3 s outage during 20 calls (retry window 0.3 s): {result['recorded']}/{result['ran']} "
                  f"calls in the ledger, spent ${result['spent_usd']:.4f} of ${result['cost_usd']:.4f} run, "
                  f"${result['reserved_left']:.4f} left reserved")
            print(f"sqlite restart with a fixed ledger_id, 2 x 10 entries: {fixed_ledger_id(os.path.join(folder, 'l.db'))}"
                  f"/20 kept")
        finally:
            redis.proc.terminate()
            redis.proc.wait()


if __name__ == "__main__":
    main()
