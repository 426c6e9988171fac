"""`serve` in front of a real OpenAI-compatible upstream (a second uvicorn server on loopback that counts its
calls): forwarding, streaming back, billing from the upstream's reported usage, budgets refusing before the
upstream is called, a client hanging up mid-stream, upstream failures, the key read from the environment."""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from typing import Any

import pytest

fastapi = pytest.importorskip("fastapi", reason="the server is an optional extra: pip install 'rag-routing[server]'")
httpx = pytest.importorskip("httpx")

from fastapi import Request  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402
from test_server import KEY, CountingGenerator, LiveServer, chat, sse_events, toy_dataset  # noqa: E402

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.errors import InvalidInputError  # noqa: E402
from rag_routing.llms.openai_compatible import OpenAICompatibleLLM, UpstreamError  # noqa: E402
from rag_routing.routers.registry import create_router  # noqa: E402
from rag_routing.server import create_app  # noqa: E402
from rag_routing.server.launch import add_serve_arguments, build_app  # noqa: E402

UPSTREAM_KEY = "upstream-secret-key-0123456789"
WORDS = ["The", " upstream", " says", " hello", "."]
PROMPT_TOKENS, COMPLETION_TOKENS = 11, 7  # what the upstream reports (not what we would count)
PRICE = Pricing(input_per_mtok=1000.0, output_per_mtok=2000.0)


class Upstream:
    """A tiny OpenAI-compatible chat endpoint: fixed answer and usage, optional delay per streamed piece."""

    def __init__(self, pieces: int = len(WORDS), delay: float = 0.0, fail: int | None = None):
        self.calls, self.bodies, self.auth, self.sent, self.finished = 0, [], [], 0, 0
        self.pieces, self.delay, self.fail = pieces, delay, fail
        self.lock = threading.Lock()
        app = fastapi.FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Any:
            body = await request.json()
            with self.lock:
                self.calls += 1
                self.bodies.append(body)
                self.auth.append(request.headers.get("authorization"))
            if self.fail is not None:
                return JSONResponse({"error": {"message": f"rejected key {UPSTREAM_KEY}", "type": "x"}},
                                    status_code=self.fail)
            words = [WORDS[i % len(WORDS)] for i in range(self.pieces)]
            usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                     "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
            if not body.get("stream"):
                return {"id": "up-1", "object": "chat.completion", "model": body["model"], "usage": usage,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "".join(words)}}]}

            async def events() -> Any:
                for i, word in enumerate(words):
                    await asyncio.sleep(self.delay)
                    with self.lock:
                        self.sent += 1
                    chunk = {"id": "up-1", "object": "chat.completion.chunk", "model": body["model"],
                             "choices": [{"index": 0, "delta": {"content": word},
                                          "finish_reason": "stop" if i == len(words) - 1 else None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield f"data: {json.dumps({'id': 'up-1', 'choices': [], 'usage': usage})}\n\n"
                yield "data: [DONE]\n\n"
                with self.lock:
                    self.finished += 1

            return StreamingResponse(events(), media_type="text/event-stream")

        self.app = app


@pytest.fixture
def upstream_key(monkeypatch):
    monkeypatch.setenv("TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    return "TEST_UPSTREAM_KEY"


def routed_app(upstream_url: str, key_env: str, keys: dict[str, Any] | None = None) -> Any:
    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    large = OpenAICompatibleLLM(f"{upstream_url}/v1", "big-model", api_key_env=key_env)
    return create_app(router, {"small": CountingGenerator("a small answer"), "large": large},
                      keys or {KEY: {"principal": "alice", "max_usd": 10.0}}, prices={"large": PRICE})


def test_forwarded_streamed_back_and_billed_from_the_upstreams_usage(upstream_key):
    upstream = Upstream()
    with LiveServer(upstream.app) as up:
        app = routed_app(up.url, upstream_key)
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
            whole = chat(client, "solve the integral of x^2 times sin(x) dx", max_tokens=50).json()
            streamed = chat(client, "solve the integral of x^3 times sin(x) dx", stream=True,
                            stream_options={"include_usage": True})
    assert whole["model"] == "large" and whole["choices"][0]["message"]["content"] == "".join(WORDS)
    assert whole["usage"] == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                              "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
    assert whole["x_rag_routing"]["cost_usd"] == pytest.approx(PRICE.cost(PROMPT_TOKENS, COMPLETION_TOKENS))
    events = sse_events(streamed.text)
    pieces = [e["choices"][0]["delta"].get("content") for e in events[1:] if e != "[DONE]" and e["choices"]]
    assert [p for p in pieces if p] == WORDS and events[-1] == "[DONE]"
    assert events[-2]["usage"]["completion_tokens"] == COMPLETION_TOKENS
    # what went upstream: the configured model and key, the client's options, never the client's own key
    assert upstream.calls == 2 and upstream.auth == [f"Bearer {UPSTREAM_KEY}"] * 2
    assert [b["model"] for b in upstream.bodies] == ["big-model"] * 2 and upstream.bodies[0]["max_tokens"] == 50
    assert upstream.bodies[1]["stream"] is True and upstream.bodies[1]["stream_options"] == {"include_usage": True}
    generated = [e for e in app.state.service.ledger.entries if e.stage == "generation"]
    assert [(e.input_tokens, e.output_tokens, e.estimated) for e in generated] == \
        [(PROMPT_TOKENS, COMPLETION_TOKENS, False)] * 2


def test_the_budget_refuses_before_the_upstream_is_called(upstream_key):
    upstream = Upstream()
    with LiveServer(upstream.app) as up:
        app = routed_app(up.url, upstream_key, keys={KEY: {"principal": "poor", "max_usd": 0.05}})
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
            refused = chat(client, "anything", model="large", max_tokens=1000)  # reserves $2+: over the budget
            fits = chat(client, "anything", model="large", max_tokens=10)  # reserves ~$0.02
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "insufficient_quota"
    assert fits.status_code == 200 and upstream.calls == 1
    budget = app.state.service.budget(app.state.service.keys.lookup(KEY))
    assert budget.spent().usd == pytest.approx(PRICE.cost(PROMPT_TOKENS, COMPLETION_TOKENS))
    assert budget.reserved().usd == 0


def test_a_client_abandoning_a_stream_commits_what_ran_and_releases_the_rest(upstream_key):
    upstream = Upstream(pieces=40, delay=0.1)
    with LiveServer(upstream.app) as up:
        app = routed_app(up.url, upstream_key)
        service = app.state.service
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
            payload = {"model": "large", "stream": True, "max_tokens": 200,
                       "messages": [{"role": "user", "content": "tell me a long story"}]}
            with client.stream("POST", "/v1/chat/completions", json=payload,
                               headers={"Authorization": f"Bearer {KEY}"}) as response:
                for line in response.iter_lines():
                    if '"content":" upstream"' in line:
                        break  # hang up after two pieces
            deadline = time.monotonic() + 15
            while not [e for e in service.ledger.entries if e.stage == "generation"]:
                assert time.monotonic() < deadline, "the abandoned stream was never recorded"
                time.sleep(0.05)
            time.sleep(0.5)
            sent_after_hangup = upstream.sent
            time.sleep(0.5)
    entry = next(e for e in service.ledger.entries if e.stage == "generation")
    assert entry.metadata["partial"] is True and entry.output_tokens < 40
    budget = service.budget(service.keys.lookup(KEY))
    assert budget.reserved().usd == 0 and 0 < budget.spent().usd == pytest.approx(entry.cost_usd)
    assert entry.cost_usd < PRICE.cost(entry.input_tokens, 200)  # the unused part of the reservation is released
    assert upstream.finished == 0 and upstream.sent == sent_after_hangup < 40  # the upstream stream was closed


def test_an_upstream_failure_is_a_502_without_the_key_and_releases_the_reservation(upstream_key):
    upstream = Upstream(fail=401)
    with LiveServer(upstream.app) as up:
        app = routed_app(up.url, upstream_key)
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
            whole = chat(client, "hi", model="large")
            streamed = chat(client, "hi", model="large", stream=True)
    for response in (whole, streamed):
        assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_error"
        assert UPSTREAM_KEY not in response.text and "HTTP 401" in response.text
    budget = app.state.service.budget(app.state.service.keys.lookup(KEY))
    assert budget.reserved().usd == 0 and budget.spent().usd == 0


def test_the_client_is_sync_and_async_and_refuses_a_missing_key(upstream_key, monkeypatch):
    upstream = Upstream()
    messages = [{"role": "user", "content": "hi"}]
    with LiveServer(upstream.app) as up:
        llm = OpenAICompatibleLLM(f"{up.url}/v1", "m", api_key_env=upstream_key)
        assert llm.generate(messages).output_tokens == COMPLETION_TOKENS
        assert asyncio.run(llm.agenerate(messages)).text == "".join(WORDS)

        async def collect() -> list[Any]:
            return [c async for c in llm.astream_chunks(messages, max_tokens=5)]

        chunks = asyncio.run(collect())
        assert [c.text for c in chunks if c.text] == WORDS and chunks[-1].final.input_tokens == PROMPT_TOKENS
        assert UPSTREAM_KEY not in repr(llm)
    with pytest.raises(UpstreamError, match="unreachable"):
        llm.generate(messages)  # the upstream is gone
    monkeypatch.delenv(upstream_key)
    with pytest.raises(InvalidInputError, match="TEST_UPSTREAM_KEY"):
        OpenAICompatibleLLM(f"{up.url}/v1", "m", api_key_env=upstream_key)


def test_rag_routing_serve_with_an_upstream_and_echo_streaming(upstream_key, tmp_path):
    upstream = Upstream()
    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({KEY: {"principal": "alice", "max_usd": 1.0}}))
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser.add_subparsers(dest="command").add_parser("serve"))
    with LiveServer(upstream.app) as up:
        argv = ["serve", str(router.save(tmp_path / "r.npz")), "--keys", str(keys), "--generator", "small=echo",
                "--upstream", f"large={up.url}/v1,model=big-model,key-env={upstream_key}", "--price", "large=1000,2000"]
        app = build_app(parser.parse_args(argv))
        with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
            large = chat(client, "solve the integral of x^2 times sin(x) dx").json()
            echo = sse_events(chat(client, "hello, how are you doing today friend number 3", stream=True).text)
            short = chat(client, "hello, how are you doing today friend number 3", max_tokens=2).json()
        for bad in (["--upstream", "large"], ["--upstream", f"large={up.url}/v1,colour=red"],
                    ["--price", "large=1"], ["--upstream", f"large={up.url}/v1,key-env=NOT_SET_ANYWHERE_123"]):
            with pytest.raises(InvalidInputError):
                build_app(parser.parse_args(argv[:6] + bad))
    assert large["model"] == "large" and large["usage"]["prompt_tokens"] == PROMPT_TOKENS
    assert large["x_rag_routing"]["cost_usd"] == pytest.approx(PRICE.cost(PROMPT_TOKENS, COMPLETION_TOKENS))
    pieces = [e["choices"][0]["delta"].get("content") for e in echo[1:-2]]
    assert "".join(pieces) == "hello, how are you doing today friend number 3" and len(pieces) == 9
    assert short["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "hello, how"},
                                   "logprobs": None, "finish_reason": "length"}
