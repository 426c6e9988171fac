"""Four `rag-routing serve` processes on loopback sharing one redis-server (issue 17 #4): exact ledger totals
across replicas and $0 overspend under a concurrent burst, a bandit update made through one replica changes
the others' decisions, and a replica killed mid-load loses nothing but its in-flight requests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server is an optional extra: pip install 'rag-routing[server]'")
pytest.importorskip("redis", reason="the redis client is an optional extra: pip install 'rag-routing[redis]'")
httpx = pytest.importorskip("httpx")

from redis_fixture import free_port, redis_server_fixture  # noqa: E402,F401  (registers the fixture)
from test_server import toy_dataset  # noqa: E402

from rag_routing.ledger import Budget  # noqa: E402
from rag_routing.ledger.redis_store import RedisBudgetStore, RedisLedgerStore  # noqa: E402
from rag_routing.routers.registry import create_router  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SHARED, LEARNER, LOAD = "sk-shared-0123456789", "sk-learner-0123456789", "sk-load-0123456789"
SMALL, N_FIT = 0.001, 60


class Replicas:
    """N `rag-routing serve` processes on free loopback ports, all on one Redis."""

    def __init__(self, folder: Path, redis_url: str, n: int):
        router = create_router("epsilon_greedy", epsilon=0.0, lam=10.0).fit(toy_dataset())
        router_file = str(router.save(folder / "bandit.npz"))
        keys = folder / "keys.json"
        keys.write_text(json.dumps({SHARED: {"principal": "shared", "max_usd": N_FIT * SMALL},
                                    LEARNER: "learner", LOAD: "load"}))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(REPO)}
        self.ports = [free_port() for _ in range(n)]
        self.processes = [subprocess.Popen(
            [sys.executable, "-m", "rag_routing.cli", "serve", router_file, "--keys", str(keys), "--port", str(port),
             "--generator", "small=echo", "--generator", "large=echo", "--budgets", redis_url, "--ledger", redis_url,
             "--bandit-store", redis_url, "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for port in self.ports]

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for url, process in zip(self.urls, self.processes):
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None:
                    raise RuntimeError(f"a replica exited: {process.stderr.read().decode()[-2000:]}")
                assert time.monotonic() < deadline, "replicas did not start"
                time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@pytest.fixture
def replicas(tmp_path, redis_server):
    group = Replicas(tmp_path, redis_server.url, 4)
    try:
        group.wait_ready()
        yield group
    finally:
        group.stop()


def body(content: str, model: str = "auto") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


async def burst(urls: list[str], key: str, n: int, model: str, concurrency: int = 16,
                on_done: Any = None) -> list[Any]:
    """``n`` requests round-robin over ``urls``, ``concurrency`` at a time: (status or exception, json)."""
    semaphore = asyncio.Semaphore(concurrency)
    clients = [httpx.AsyncClient(base_url=u, timeout=60) for u in urls]
    done = 0
    try:
        async def one(i: int) -> Any:
            nonlocal done
            async with semaphore:
                try:
                    r = await clients[i % len(urls)].post("/v1/chat/completions", json=body(f"hello {i}", model),
                                                          headers={"Authorization": f"Bearer {key}"})
                    result = (r.status_code, r.json())
                except httpx.TransportError as exc:
                    result = (exc, None)
                done += 1
                if on_done is not None:
                    on_done(done)
                return result
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=180)
    finally:
        for c in clients:
            await c.aclose()


def test_four_replicas_share_budgets_ledger_and_bandit_state(replicas, redis_server):
    store = RedisBudgetStore(redis_server.url)
    ledger = RedisLedgerStore(redis_server.url, namespace="serve")

    # 1. A burst over all replicas against one budget that fits exactly N_FIT calls: no overspend, exact totals.
    results = asyncio.run(burst(replicas.urls, SHARED, 200, "small"))
    statuses = [s for s, _ in results]
    assert statuses.count(200) == N_FIT and statuses.count(429) == 200 - N_FIT
    shared = Budget(max_usd=1.0, scope="principal", principal="shared", store=store)
    assert shared.spent().usd == pytest.approx(N_FIT * SMALL) and shared.reserved().usd == 0
    entries = [e for e in ledger.load_entries() if e.principal == "shared" and e.stage == "generation"]
    assert len(entries) == N_FIT and len({e.entry_id for e in entries}) == N_FIT
    assert sum(e.cost_usd for e in entries) == pytest.approx(N_FIT * SMALL)

    # 2. Feedback through replica 0 moves the shared bandit state: the other replicas decide differently.
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {LEARNER}"}) as client:
        before = [client.post(f"{u}/v1/chat/completions", json=body("anything")).json()["model"]
                  for u in replicas.urls[1:]]
        assert before == ["large"] * 3  # epsilon 0: greedy; warm-started large is best at lam=10
        for i in range(30):
            answer = client.post(f"{replicas.urls[0]}/v1/chat/completions", json=body(f"q {i}")).json()
            if answer["model"] != "large":
                break
            decision = answer["x_rag_routing"]["decision_id"]
            learned = client.post(f"{replicas.urls[0]}/v1/feedback", json={"decision_id": decision, "reward": -5.0})
            assert learned.status_code == 200, learned.text
        elsewhere = client.post(f"{replicas.urls[1]}/v1/feedback", json={"decision_id": decision, "reward": 1.0})
        assert elsewhere.status_code == 400 and elsewhere.json()["error"]["code"] == "decision_not_found"
        after = [client.post(f"{u}/v1/chat/completions", json=body("anything")).json()["model"]
                 for u in replicas.urls[1:]]
    assert after == ["small"] * 3

    # 3. One replica killed mid-load: the others keep answering; every answered call is in the ledger and the
    #    budget; only the killed replica's in-flight requests are lost.
    victim = replicas.processes[3]

    def kill_after(done: int) -> None:
        if done == 40 and victim.poll() is None:
            victim.send_signal(signal.SIGKILL)

    results = asyncio.run(burst(replicas.urls, LOAD, 160, "small", on_done=kill_after))
    answered = [j for s, j in results if s == 200]
    failed = [i for i, (s, _) in enumerate(results) if s != 200]
    assert victim.poll() is not None and all(i % 4 == 3 for i in failed)  # only the killed replica's requests
    assert len(answered) >= 120
    entries = [e for e in ledger.load_entries() if e.principal == "load" and e.stage == "generation"]
    recorded = {e.decision_id for e in entries}
    assert {j["x_rag_routing"]["decision_id"] for j in answered} <= recorded  # nothing answered is lost
    assert len(entries) - len(answered) <= 16  # at most the in-flight ones ran without an answer
    load = Budget(max_usd=None, scope="principal", principal="load", store=store)
    spent, reserved, recorded_usd = load.spent().usd, load.reserved().usd, sum(e.cost_usd for e in entries)
    assert spent >= len(answered) * SMALL - 1e-12  # every answered call is charged
    # a call killed between its ledger entry and its commit is still held by its lease (reclaimed on expiry)
    assert spent - 1e-12 <= recorded_usd <= spent + reserved + 1e-12
    assert reserved <= 16 * SMALL + 1e-12  # the dead replica's leases only
