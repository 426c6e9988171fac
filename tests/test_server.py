"""`rag-routing serve` against real uvicorn on loopback with a real HTTP client: auth, routing, forcing,
streaming, budget refusals, guards, bad bodies, a client hanging up mid-stream, and a bounded burst."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server is an optional extra: pip install 'rag-routing[server]'")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.ledger import CostLedger  # noqa: E402
from rag_routing.routers.registry import create_router  # noqa: E402
from rag_routing.security import ExpensiveRouteQuota, GuardedRouter  # noqa: E402
from rag_routing.server import create_app  # noqa: E402

KEY, POOR_KEY = "sk-alice-0123456789", "sk-bob-0123456789"
SMALL_COST, LARGE_COST = 0.001, 0.02


def toy_dataset() -> RoutingDataset:
    math_q = [f"solve the integral of x^{i} times sin(x) dx" for i in range(20)]
    chat_q = [f"hello, how are you doing today friend number {i}" for i in range(20)]
    quality = np.array([[0.0, 1.0]] * 20 + [[1.0, 1.0]] * 20)
    return RoutingDataset(math_q + chat_q, ["small", "large"], quality, np.tile([SMALL_COST, LARGE_COST], (40, 1)))


class CountingGenerator:
    """A generator stand-in that counts its calls and can stream slowly."""

    def __init__(self, answer: str, delay: float = 0.0):
        self.answer, self.delay, self.calls = answer, delay, 0
        self._lock = threading.Lock()

    def generate(self, messages: list[dict[str, str]], max_tokens: int = 64) -> str:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.answer

    def stream(self, messages: list[dict[str, str]], max_tokens: int = 64) -> Iterator[str]:
        with self._lock:
            self.calls += 1
        for word in self.answer.split(" "):
            time.sleep(self.delay)
            yield word + " "


class LiveServer:
    """uvicorn serving ``app`` on a free loopback port, in a thread."""

    def __init__(self, app: Any):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                limit_concurrency=1000, backlog=1024)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def make_app(router: Any = None, keys: dict[str, Any] | None = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    router = router or create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    generators = {"small": CountingGenerator("a small answer"), "large": CountingGenerator("a large careful answer")}
    keys = keys or {KEY: {"principal": "alice", "max_usd": 10.0}, POOR_KEY: {"principal": "bob", "max_usd": 0.03}}
    return create_app(router, generators, keys, **kwargs), generators


def chat(client: Any, content: str, key: str = KEY, **body: Any) -> Any:
    payload = {"model": "auto", "messages": [{"role": "user", "content": content}], **body}
    return client.post("/v1/chat/completions", json=payload, headers={"Authorization": f"Bearer {key}"})


def sse_events(text: str) -> list[Any]:
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LiveServer, Any, dict[str, Any]]]:
    app, generators = make_app()
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        yield live, client, generators


def test_auth_health_and_models(served):
    _, client, _ = served
    missing = client.post("/v1/chat/completions", json={"model": "auto", "messages": []})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert chat(client, "hello", key="sk-wrong-0000000000").status_code == 401
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/v1/models").status_code == 401
    models = client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert [m["id"] for m in models["data"]] == ["auto", "router", "small", "large"]


def test_routes_forces_and_reports_the_decision(served):
    _, client, _ = served
    easy = chat(client, "hello, how are you doing today friend number 3").json()
    hard = chat(client, "solve the integral of x^7 times sin(x) dx").json()
    assert easy["model"] == "small" and hard["model"] == "large"
    info = hard["x_rag_routing"]
    assert info["candidate"] == "large" and info["forced"] is False and info["router"] == "knn"
    assert info["cost_usd"] == pytest.approx(LARGE_COST) and hard["id"] == f"chatcmpl-{info['decision_id']}"
    assert hard["choices"][0]["message"] == {"role": "assistant", "content": "a large careful answer"}
    assert hard["usage"]["total_tokens"] == hard["usage"]["prompt_tokens"] + hard["usage"]["completion_tokens"] > 0
    forced = chat(client, "hello there", model="large").json()
    assert forced["model"] == "large" and forced["x_rag_routing"]["forced"] is True
    unknown = chat(client, "hello", model="gpt-17")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


def test_streaming_is_openai_sse_ending_with_done(served):
    _, client, _ = served
    response = chat(client, "solve the integral of x^2 times sin(x) dx", stream=True,
                    stream_options={"include_usage": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant" and "x_rag_routing" in chunks[0]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "a large careful answer "
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] > 0


def test_budget_refuses_before_generating(served):
    _, client, generators = served
    before = generators["large"].calls
    assert chat(client, "solve the integral of x^3 times sin(x) dx", key=POOR_KEY).status_code == 200  # $0.02
    refused = chat(client, "solve the integral of x^4 times sin(x) dx", key=POOR_KEY)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "insufficient_quota" and "budget" in refused.json()["error"]["message"]
    assert generators["large"].calls == before + 1  # the refused call never reached the generator
    assert chat(client, "hello, how are you doing today friend number 5", key=POOR_KEY).status_code == 200


@pytest.mark.parametrize("body, status, code", [
    (b"\xff\xfe{", 400, "invalid_encoding"),
    (b'{"model": "auto", "messages": [', 400, "invalid_json"),
    (b'{"model": "auto", "messages": []}', 400, "invalid_value"),
    (b'{"model": "auto", "messages": [{"role": "user", "content": "   "}]}', 400, "invalid_value"),
    (b'{"model": "auto", "messages": [{"role": "user", "content": "a\\ud800b"}]}', 400, "invalid_value"),
    (b'{"model": "auto", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}', 400,
     "invalid_value"),
    (b'{"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]}', 400, "invalid_value"),
    (b'[1, 2, 3]', 400, "invalid_value"),
    (b'{"model": "auto", "messages": [{"role": "user", "content": "' + b"x" * 1_100_000 + b'"}]}', 413,
     "body_too_large"),
])
def test_bad_bodies_get_typed_openai_errors(served, body, status, code):
    _, client, _ = served
    response = client.post("/v1/chat/completions", content=body,
                           headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_control_characters_are_routed(served):
    _, client, _ = served
    response = chat(client, "hello\x00\x07 friend\u202e number \x1b[31m 3")
    assert response.status_code == 200 and response.json()["model"] in ("small", "large")


def test_a_client_hanging_up_mid_stream_is_charged_for_what_ran():
    app, generators = make_app()
    generators["large"].delay = 0.2
    service = app.state.service
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        payload = {"model": "large", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        with client.stream("POST", "/v1/chat/completions", json=payload,
                           headers={"Authorization": f"Bearer {KEY}"}) as response:
            for line in response.iter_lines():
                if '"content":"a ' in line:
                    break  # hang up after the first word
        deadline = time.monotonic() + 10
        while not [e for e in service.ledger.entries if e.stage == "generation"]:
            assert time.monotonic() < deadline, "the cancelled stream was never recorded"
            time.sleep(0.05)
    entry = next(e for e in service.ledger.entries if e.stage == "generation")
    assert entry.metadata["partial"] is True and entry.cost_usd == pytest.approx(LARGE_COST)
    budget = service.budget(service.keys.lookup(KEY))
    assert budget.reserved().usd == 0 and budget.spent().usd == pytest.approx(LARGE_COST)


def test_quota_guard_downgrades_routed_and_forced_expensive_calls():
    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    guarded = GuardedRouter(router, [ExpensiveRouteQuota(max_routes=2, window_seconds=3600)])
    app, _ = make_app(guarded)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        models = [chat(client, f"solve the integral of x^{i} times sin(x) dx").json()["model"] for i in range(3)]
        assert models == ["large", "large", "small"]
        last = chat(client, "solve the integral of x^9 times sin(x) dx").json()["x_rag_routing"]
        assert last["guards"][0]["action"] == "downgraded" and "quota" in last["reason"]
        forced = chat(client, "anything", model="large").json()
        assert forced["model"] == "small"  # forcing does not get around the quota
        other = chat(client, "solve the integral of x^2 times sin(x) dx", key=POOR_KEY).json()
        assert other["model"] == "large"  # quotas are per principal


def test_a_bounded_burst_is_answered_without_overspending():
    """300 concurrent requests (50 in flight) against a budget that fits exactly 120 small calls."""
    n_requests, n_fit = 300, 120
    ledger = CostLedger()
    app, generators = make_app(keys={KEY: {"principal": "burst", "max_usd": n_fit * SMALL_COST}}, ledger=ledger)
    generators["small"].delay = 0.002

    async def burst(url: str) -> list[int]:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        semaphore = asyncio.Semaphore(50)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            async def one(i: int) -> int:
                async with semaphore:
                    r = await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                                          json={"model": "small", "stream": i % 3 == 0,
                                                "messages": [{"role": "user", "content": f"hello {i}"}]})
                    if i % 3 == 0 and r.status_code == 200:
                        assert sse_events(r.text)[-1] == "[DONE]"
                    return r.status_code
            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n_requests))), timeout=120)

    with LiveServer(app) as live:
        started = time.monotonic()
        statuses = asyncio.run(burst(live.url))
        elapsed = time.monotonic() - started
    assert sorted(set(statuses)) == [200, 429] and len(statuses) == n_requests
    assert statuses.count(200) == n_fit == generators["small"].calls
    budget = app.state.service.budget(app.state.service.keys.lookup(KEY))
    assert budget.spent().usd <= n_fit * SMALL_COST * (1 + 1e-9) and budget.reserved().usd == 0
    assert len([e for e in ledger.entries if e.stage == "generation"]) == n_fit
    assert elapsed < 120


def test_the_local_llm_stand_in_streams_token_by_token(tmp_path):
    """The real LocalLLM decoding loop (the scripted stand-in: no weights) behind the endpoint."""
    pytest.importorskip("torch")
    from rag_routing.llms import LocalLLM
    from rag_routing.llms.scripted import scripted_model

    small = LocalLLM(scripted_model("Paris.", folder=str(tmp_path / "small")), max_new_tokens=16)
    large = LocalLLM(scripted_model("Paris, France.", folder=str(tmp_path / "large")), max_new_tokens=16)
    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    app = create_app(router, {"small": small, "large": large}, {KEY: "alice"})
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        whole = chat(client, "solve the integral of x^2 times sin(x) dx").json()
        events = sse_events(chat(client, "solve the integral of x^2 times sin(x) dx", stream=True).text)
    assert whole["choices"][0]["message"]["content"] == "Paris, France."
    assert whole["usage"]["completion_tokens"] == len("Paris, France.") + 1  # one per character + end of turn
    pieces = [e["choices"][0]["delta"].get("content") for e in events[1:-2]]
    assert "".join(pieces) == "Paris, France." and len(pieces) > 3  # streamed token by token
    entries = [e for e in app.state.service.ledger.entries if e.stage == "generation"]
    assert [e.estimated for e in entries] == [False, False]  # usage reported by the model, not guessed


class BrokenGenerator:
    def generate(self, messages):
        raise RuntimeError("the model fell over")

    def stream(self, messages):
        yield "half an "
        raise RuntimeError("the model fell over mid-stream")


def test_a_failing_generator_releases_or_charges_what_ran():
    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    app = create_app(router, {"small": BrokenGenerator(), "large": BrokenGenerator()}, {KEY: "alice"})
    service = app.state.service
    budget = service.budget(service.keys.lookup(KEY))
    # A query like the training chat ones: routed to "small" (a two-word "hello friend" is out of support on
    # this templated toy set and would fall back to the best fixed candidate, "large").
    query = "hello, how are you doing today friend"
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        failed = chat(client, query)
        assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
        assert "fell over" not in failed.text  # internals stay in the server log
        assert budget.reserved().usd == 0 and budget.spent().usd == 0 and len(service.ledger) == 0
        events = sse_events(chat(client, query, stream=True).text)
    assert events[1]["choices"][0]["delta"]["content"] == "half an " and "error" in events[-1]
    assert budget.reserved().usd == 0 and budget.spent().usd == pytest.approx(SMALL_COST)  # what ran is charged
    assert [e.metadata["partial"] for e in service.ledger.entries if e.stage == "generation"] == [True]


def test_an_unexpected_router_failure_is_an_openai_shaped_500():
    class Exploding(type(create_router("best"))):
        name = "best"

        def route(self, X, lam=None, budget=None):
            raise ZeroDivisionError("boom")

    app = create_app(Exploding().fit(toy_dataset()), {"small": CountingGenerator("x"), "large": CountingGenerator("y")},
                     {KEY: "alice"})
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        response = chat(client, "hello")
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert "boom" not in response.text
