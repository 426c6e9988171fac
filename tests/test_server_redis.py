"""Two server instances sharing budgets and the ledger through Redis: a burst split across both never
overspends the shared per-key budget, and every answered call is in the shared ledger exactly once."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("fastapi", reason="the server is an optional extra: pip install 'rag-routing[server]'")
pytest.importorskip("redis", reason="the redis client is an optional extra: pip install 'rag-routing[redis]'")
httpx = pytest.importorskip("httpx")

from redis_fixture import redis_server_fixture  # noqa: E402,F401  (registers the fixture)
from test_server import KEY, SMALL_COST, LiveServer, make_app  # noqa: E402

from rag_routing.ledger import Budget, CostLedger  # noqa: E402
from rag_routing.ledger.redis_store import RedisBudgetStore, RedisLedgerStore  # noqa: E402


def test_two_servers_share_one_budget_through_redis(redis_server):
    n_requests, n_fit = 120, 40
    keys = {KEY: {"principal": "shared", "max_usd": n_fit * SMALL_COST}}
    apps = [make_app(keys=keys, ledger=CostLedger(store=RedisLedgerStore(redis_server.url, namespace="serve")),
                     budget_store=RedisBudgetStore(redis_server.url))[0] for _ in range(2)]

    async def burst(urls: list[str]) -> list[int]:
        semaphore = asyncio.Semaphore(40)
        clients = [httpx.AsyncClient(base_url=u, timeout=60) for u in urls]
        try:
            async def one(i: int) -> int:
                async with semaphore:
                    r = await clients[i % 2].post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                                                  json={"model": "small", "stream": i % 4 == 0,
                                                        "messages": [{"role": "user", "content": f"hi {i}"}]})
                    return r.status_code
            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n_requests))), timeout=120)
        finally:
            for c in clients:
                await c.aclose()

    with LiveServer(apps[0]) as a, LiveServer(apps[1]) as b:
        statuses = asyncio.run(burst([a.url, b.url]))
    assert statuses.count(200) == n_fit and statuses.count(429) == n_requests - n_fit
    budget = Budget(max_usd=1.0, scope="principal", principal="shared", store=RedisBudgetStore(redis_server.url))
    assert budget.spent().usd == pytest.approx(n_fit * SMALL_COST) and budget.reserved().usd == 0
    entries = RedisLedgerStore(redis_server.url, namespace="serve").load_entries()
    generated = [e for e in entries if e.stage == "generation"]
    assert len(generated) == n_fit and len({e.entry_id for e in entries}) == len(entries)
    assert {e.principal for e in generated} == {"shared"}


def test_redis_down_is_a_quick_503_not_a_hang(redis_server):
    store = RedisBudgetStore(redis_server.url, retry_seconds=0.5)
    app, generators = make_app(budget_store=store,
                               ledger=CostLedger(store=RedisLedgerStore(redis_server.url, retry_seconds=0.5)))
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        assert client.get("/health").json()["status"] == "ok"
        redis_server.kill()
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        refused = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                              json={"model": "small", "messages": [{"role": "user", "content": "hi"}]})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
        assert generators["small"].calls == 0  # nothing ran without a budget to charge it to
