"""Dynamic batching of routing in `serve` (issue 17 #2): concurrent requests share one router call, each gets
its own decision (the same as routing it alone), one bad query fails only its own request."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi", reason="the server is an optional extra: pip install 'rag-routing[server]'")
httpx = pytest.importorskip("httpx")

from test_server import KEY, LiveServer, make_app, toy_dataset  # noqa: E402

from rag_routing.errors import InvalidInputError  # noqa: E402
from rag_routing.routers.registry import create_router  # noqa: E402
from rag_routing.server.batching import RouteBatcher  # noqa: E402


def test_concurrent_requests_are_batched_and_each_gets_its_own_decision():
    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    calls: list[int] = []
    lock = threading.Lock()

    def route_batch(queries, group):
        with lock:
            calls.append(len(queries))
        time.sleep(0.02)  # a featurisation that takes a while: the next requests queue up meanwhile
        return router.route(queries)

    batcher = RouteBatcher(route_batch, max_batch=16, max_wait=0.01, workers=1)
    queries = [f"solve the integral of x^{i} times sin(x) dx" if i % 2 else f"hello friend number {i}"
               for i in range(48)]
    with ThreadPoolExecutor(24) as pool:
        decisions = list(pool.map(batcher.route, queries))
    batcher.close()
    alone = router.route(queries)
    assert [d.candidate for d in decisions] == [d.candidate for d in alone]
    assert [d.quality for d in decisions] == [d.quality for d in alone]
    assert len({d.decision_id for d in decisions}) == len(queries)
    assert sum(calls) == len(queries) and max(calls) > 1 and max(calls) <= 16 and len(calls) < len(queries)


def test_a_bad_query_fails_only_its_own_request_and_groups_stay_apart():
    seen_groups: list[tuple[str, ...]] = []

    def route_batch(queries, group):
        seen_groups.append(tuple(sorted({group})))
        if any(q == "bad" for q in queries):
            raise InvalidInputError("bad query")
        return [f"{group}:{q}" for q in queries]

    batcher = RouteBatcher(route_batch, max_batch=8, max_wait=0.05, workers=1)

    def one(item):
        query, group = item
        try:
            return batcher.route(query, group)
        except InvalidInputError as exc:
            return f"error: {exc}"

    items = [("a", "alice"), ("bad", "alice"), ("b", "bob"), ("c", "alice")]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, items))
    batcher.close()
    assert answers == ["alice:a", "error: bad query", "bob:b", "alice:c"]
    with pytest.raises(InvalidInputError):
        RouteBatcher(route_batch, max_batch=0)
    with pytest.raises(InvalidInputError):
        RouteBatcher(route_batch, max_wait=5)


def test_the_server_batches_concurrent_routed_requests():
    app, _ = make_app(batch_window=0.01)
    service = app.state.service
    queries = [f"solve the integral of x^{i} times sin(x) dx" if i % 2 else f"hello, how are you doing today "
               f"friend number {i}" for i in range(40)]

    async def burst(url: str) -> list[str]:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            async def one(q: str) -> str:
                r = await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                                      json={"model": "auto", "messages": [{"role": "user", "content": q}]})
                r.raise_for_status()
                return r.json()["model"]
            return await asyncio.gather(*(one(q) for q in queries))

    with LiveServer(app) as live:
        models = asyncio.run(burst(live.url))
    assert models == [d.candidate for d in service.router.route(queries)]
    assert sum(service.batcher.batch_sizes) == len(queries) and max(service.batcher.batch_sizes) > 1
    unbatched, _ = make_app(batch_window=None)
    assert unbatched.state.service.batcher is None


def test_batched_routing_keeps_per_principal_guards():
    from test_server import POOR_KEY, chat

    from rag_routing.security import ExpensiveRouteQuota, GuardedRouter

    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    guarded = GuardedRouter(router, [ExpensiveRouteQuota(max_routes=2, window_seconds=3600)])
    app, _ = make_app(guarded, batch_window=0.005)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        models = [chat(client, f"solve the integral of x^{i} times sin(x) dx").json()["model"] for i in range(3)]
        other = chat(client, "solve the integral of x^2 times sin(x) dx", key=POOR_KEY).json()
    assert models == ["large", "large", "small"] and other["model"] == "large"
    assert other["x_rag_routing"]["principal"] == "bob"
