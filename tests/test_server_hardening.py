"""Issue 16, server findings: no credentials in responses or logs (#1), deep JSON is a 400 (#8), shared
resources load once under concurrent first requests (#9), unsupported fields are refused, not ignored (#10)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server is an optional extra: pip install 'rag-routing[server]'")
httpx = pytest.importorskip("httpx")

from redis_fixture import free_port  # noqa: E402
from test_server import KEY, LiveServer, chat, make_app  # noqa: E402

from rag_routing.security.redaction import RedactingFilter, redact  # noqa: E402

PASSWORD = "Hunter2-s3cret-redis-pass"


@pytest.fixture
def redis_with_password(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                                "--requirepass", PASSWORD, "--appendonly", "yes", "--save", "", "--loglevel",
                                "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=0.2).ping()
            break
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline and process.poll() is None, "redis-server did not start"
            time.sleep(0.02)
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_redis_password_never_reaches_a_response_or_a_log_line(redis_with_password, caplog):
    pytest.importorskip("redis")
    from rag_routing.ledger import CostLedger
    from rag_routing.ledger.redis_store import RedisBudgetStore, RedisLedgerStore

    url, process = redis_with_password
    app, generators = make_app(budget_store=RedisBudgetStore(url, retry_seconds=0.3),
                               ledger=CostLedger(store=RedisLedgerStore(url, retry_seconds=0.3)))
    caplog.set_level(logging.INFO)
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        assert client.get("/health").json()["status"] == "ok"
        process.kill()
        process.wait(timeout=10)
        health = client.get("/health")
        refused = chat(client, "hello", model="small")
        streamed = chat(client, "hello", model="small", stream=True)
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_unavailable"
    assert streamed.status_code == 503 and generators["small"].calls == 0
    for text in (health.text, refused.text, streamed.text, caplog.text):
        assert PASSWORD not in text
    assert "127.0.0.1" in health.json()["error"]  # still says which store is down


def test_redaction_covers_urls_keys_env_values_and_tracebacks(monkeypatch):
    monkeypatch.setenv("MY_UPSTREAM_API_KEY", "upstream-secret-value-42")
    text = redact("rediss://user:pw12345@h:1/0 key=abcdef Bearer tok-123456 sk-proj-ABCDEFGHIJKL "
                  "upstream-secret-value-42")
    for secret in ("pw12345", "abcdef", "tok-123456", "sk-proj-ABCDEFGHIJKL", "upstream-secret-value-42", "user:"):
        assert secret not in text
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "connecting to %s", ("redis://:pw99999@h:1",), None)
    try:
        raise RuntimeError("redis://:pw99999@h:1 refused")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert "pw99999" not in record.getMessage() and "pw99999" not in record.exc_text


def test_redaction_keeps_the_arguments_formatters_read_themselves():
    """uvicorn's access log unpacks ``record.args`` (client, method, path, version, status): a filter that
    flattened every record broke each access line with a "--- Logging error ---" traceback in `serve`'s log."""
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/v1/models?api_key=sk-live-ABCDEFGHIJKL", "1.1", 200), None)
    RedactingFilter().filter(record)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s", use_colors=False).format(record)
    assert line == "127.0.0.1:5000 GET /v1/models?api_key=*** HTTP/1.1 200 OK" and "ABCDEFGHIJKL" not in line
    assert record.args[-1] == 200  # numbers stay numbers for %d
    mapped = logging.LogRecord("x", logging.INFO, __file__, 1, "store %(url)s, try %(n)d",
                               ({"url": "redis://:pw77777@h:1/0", "n": 3},), None)
    RedactingFilter().filter(mapped)
    assert mapped.getMessage() == "store redis://***@h:1/0, try 3" and isinstance(mapped.args, dict)
    # a template that names the secret's parameter itself: the record is flattened, still redacted
    joined = logging.LogRecord("x", logging.INFO, __file__, 1, "password=%s", ("hunter22",), None)
    RedactingFilter().filter(joined)
    assert "hunter22" not in joined.getMessage()


def test_deeply_nested_json_is_a_400_with_one_log_line_and_the_connection_survives(caplog):
    app, generators = make_app()
    caplog.set_level(logging.INFO)
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bodies = [b'{"model": "auto", "messages": ' + b"[" * depth + b"]" * depth + b"}" for depth in (200, 1000, 50_000)]
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        for body in bodies:
            caplog.clear()
            response = client.post("/v1/chat/completions", content=body, headers=headers)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] in ("invalid_json", "invalid_value")
            assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
            assert "Traceback" not in caplog.text
            after = chat(client, "hello, how are you doing today friend number 3")  # same keep-alive connection
            assert after.status_code == 200
    assert generators["small"].calls == len(bodies)


def test_concurrent_first_requests_load_the_tokenizer_once(monkeypatch):
    from rag_routing.ledger import tokens

    original = tokens._load.__wrapped__
    loads: list[str] = []
    guard = threading.Lock()

    def counting_load(name: str) -> Any:
        with guard:
            loads.append(name)
        time.sleep(0.2)  # a slow first load, as on a cold machine: concurrent requests pile up here
        return original(name)

    counting = __import__("functools").lru_cache(maxsize=None)(counting_load)
    monkeypatch.setattr(tokens, "_load", counting)
    tokens.encoding_for.cache_clear()
    app, generators = make_app()

    async def burst(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def one(i: int) -> int:
                r = await client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                                      json={"model": "auto", "messages": [{"role": "user", "content": f"hi {i}"}]})
                return r.status_code
            return await asyncio.gather(*(one(i) for i in range(40)))

    try:
        with LiveServer(app) as live:
            statuses = asyncio.run(burst(live.url))
    finally:
        tokens.encoding_for.cache_clear()
    assert statuses == [200] * 40
    assert len(loads) == len(set(loads)) >= 1, loads  # each encoding loaded once, not once per request


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"n": 2}, "n"),
    ({"max_tokens": "10"}, "max_tokens"),
    ({"max_tokens": 10.5}, "max_tokens"),
    ({"temperature": "0.5"}, "temperature"),
    ({"stream": "yes"}, "stream"),
    ({"seed": True}, "seed"),
    ({"top_p": 0.5}, "top_p"),  # the stand-in generators take no top_p: refused, not dropped
    ({"temperature": 0.5}, "temperature"),  # nor a temperature
    ({"frobnicate": 1}, "frobnicate"),
    ({"messages": [{"role": "user", "content": "hi", "tool_call_id": "call-1"}]}, "messages"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "c"}]}, {"role": "user",
                                                                                     "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache": 1}]}]}, "messages"),
])
def test_unsupported_or_mistyped_fields_are_a_400_naming_the_parameter(extra, param):
    app, generators = make_app()
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        response = chat(client, "hello there", model="small", **extra)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert generators["small"].calls == 0


def test_fields_at_their_neutral_values_are_accepted():
    app, generators = make_app()
    neutral = {"logprobs": False, "tools": [], "tool_choice": "none", "n": 1, "response_format": {"type": "text"},
               "user": "u-1", "store": False, "max_tokens": 10, "presence_penalty": 0,
               "frequency_penalty": 0, "top_p": 1, "stream_options": None,
               "messages": [{"role": "assistant", "content": "earlier", "tool_calls": [], "refusal": None},
                            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}]}
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        response = chat(client, "hello there", model="small", **neutral)
    assert response.status_code == 200, response.text
    assert generators["small"].calls == 1


def test_logprobs_are_returned_by_generators_that_compute_them(tmp_path):
    pytest.importorskip("torch")
    from rag_routing.llms import LocalLLM
    from rag_routing.llms.scripted import scripted_model
    from rag_routing.routers.registry import create_router
    from rag_routing.server import create_app
    from test_server import toy_dataset

    llm = LocalLLM(scripted_model("Paris.", folder=str(tmp_path / "m")), max_new_tokens=16)
    router = create_router("knn", k=5, lam=10.0, featurizer="tfidf").fit(toy_dataset())
    app = create_app(router, {"small": llm, "large": llm}, {KEY: "alice"})
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        plain = chat(client, "hello", model="small").json()
        with_top = chat(client, "hello", model="small", logprobs=True, top_logprobs=2).json()
        without_top = chat(client, "hello", model="small", logprobs=True).json()
        streamed = chat(client, "hello", model="small", logprobs=True, stream=True)
    assert plain["choices"][0]["logprobs"] is None
    content = with_top["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in content).startswith("Paris.") and all(t["logprob"] <= 0 for t in content)
    assert all(len(t["top_logprobs"]) == 2 for t in content)
    assert all(t["top_logprobs"] == [] for t in without_top["choices"][0]["logprobs"]["content"])
    assert streamed.status_code == 400 and streamed.json()["error"]["param"] == "logprobs"
