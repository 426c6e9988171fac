"""A generator that forwards to any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, Ollama, llama.cpp's
server, a provider), sync and async, streamed or whole, with the usage the endpoint reports.

The API key is read from an environment variable named by the caller (``api_key_env``), never from a client
request, and is registered with :mod:`rag_routing.security.redaction` so that it is masked in any error text.
Streams ask for ``stream_options: {"include_usage": true}``, so a streamed call is billed from the upstream's
own token counts; an endpoint that reports none leaves the counts ``None`` (the caller then estimates them).
Closing a stream early (a client that hangs up) closes the upstream connection too.

Example (needs an endpoint; ``rag-routing serve --upstream`` wires one up):
    >>> llm = OpenAICompatibleLLM("http://127.0.0.1:8001/v1", "qwen2.5-7b", api_key_env="VLLM_KEY")  # doctest: +SKIP
    >>> llm.generate([{"role": "user", "content": "Hi"}], max_tokens=16).text                   # doctest: +SKIP
    'Hello! How can I help?'
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rag_routing.errors import InvalidInputError, RagRoutingError, require
from rag_routing.security.redaction import redact, register_secret

#: Generation options forwarded when set (OpenAI names).
OPTIONS = ("max_tokens", "temperature", "stop", "seed", "top_p", "presence_penalty", "frequency_penalty")
_ERROR_BODY_CHARS = 2000


class UpstreamError(RagRoutingError):
    """The upstream endpoint failed: unreachable (``upstream_status`` 0), an HTTP error, or a malformed answer."""

    def __init__(self, message: str, upstream_status: int):
        super().__init__(redact(message))
        self.upstream_status = upstream_status


@dataclass(frozen=True)
class UpstreamCompletion:
    """A whole answer: text, the upstream's reported token counts (``None`` when it gave none), why it stopped."""

    text: str
    input_tokens: int | None
    output_tokens: int | None
    finish_reason: str
    model: str


@dataclass(frozen=True)
class UpstreamChunk:
    """One streamed piece; the last one has ``final`` (the whole answer and its usage)."""

    text: str
    final: UpstreamCompletion | None = None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class OpenAICompatibleLLM:
    """Forward chat requests to ``{base_url}/chat/completions`` as ``model`` (see the module docstring).

    Args:
        base_url: the endpoint's API root, e.g. ``http://127.0.0.1:8001/v1``.
        model: the model name sent upstream.
        api_key_env: name of the environment variable holding the key (``None``: no ``Authorization`` header).
        timeout: seconds for connecting and between received bytes.
        headers: extra request headers (not secrets: they are not redacted).
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, timeout: float = 60.0,
                 headers: Mapping[str, str] | None = None):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidInputError(f"base_url must be an http(s) URL, got {redact(base_url)!r}")
        if not isinstance(model, str) or not model.strip():
            raise InvalidInputError("model must be a non-empty model name")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise InvalidInputError(f"timeout must be in (0, 3600] seconds, got {timeout!r}")
        self.base_url, self.model, self.timeout = base_url.rstrip("/"), model, float(timeout)
        self.api_key_env = api_key_env
        self._headers = {"Content-Type": "application/json", **dict(headers or {})}
        if api_key_env is not None:
            key = os.environ.get(api_key_env)
            if not key:
                raise InvalidInputError(f"environment variable {api_key_env!r} (the API key of {self.base_url}) is "
                                        "not set or empty; export it before starting")
            register_secret(key)
            self._headers["Authorization"] = f"Bearer {key}"
        self._client: Any = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatibleLLM({redact(self.base_url)!r}, {self.model!r}, api_key_env={self.api_key_env!r})"

    # -- requests -----------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _body(self, messages: list[dict[str, str]], stream: bool, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise InvalidInputError(f"unsupported options {sorted(unknown)}; supported: {list(OPTIONS)}")
        body: dict[str, Any] = {"model": self.model, "messages": [{"role": m["role"], "content": m["content"]}
                                                                  for m in messages], "stream": stream}
        body.update({k: v for k, v in options.items() if v is not None})
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _sync_client(self) -> Any:
        if self._client is None:
            httpx = require("httpx", "server")
            with self._client_lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self.timeout, headers=self._headers)
        return self._client

    def _failure(self, status: int, text: str) -> UpstreamError:
        try:
            detail = json.loads(text)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = text
        return UpstreamError(f"upstream {self.base_url} ({self.model}) answered HTTP {status}: "
                             f"{str(detail)[:_ERROR_BODY_CHARS]}", status)

    def _unreachable(self, exc: BaseException) -> UpstreamError:
        return UpstreamError(f"upstream {self.base_url} ({self.model}) is unreachable: {type(exc).__name__}: {exc}", 0)

    def _completion(self, data: Any) -> UpstreamCompletion:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            return UpstreamCompletion(text, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")),
                                      str(choice.get("finish_reason") or "stop"), str(data.get("model") or self.model))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise UpstreamError(f"upstream {self.base_url} sent a malformed completion ({exc!r})", 200) from None

    def generate(self, messages: list[dict[str, str]], **options: Any) -> UpstreamCompletion:
        """One whole answer (options: ``max_tokens``, ``temperature``, ``stop``, ``seed``, ``top_p``, penalties)."""
        httpx = require("httpx", "server")
        body = self._body(messages, False, options)
        try:
            response = self._sync_client().post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._answer(response)

    def _answer(self, response: Any) -> UpstreamCompletion:
        """The completion in a whole (non-streamed) response, or the typed failure it reports."""
        if response.status_code >= 400:
            raise self._failure(response.status_code, response.text)
        try:
            return self._completion(response.json())
        except ValueError:
            raise UpstreamError(f"upstream {self.base_url} answered with a body that is not JSON", 200) from None

    def stream_chunks(self, messages: list[dict[str, str]], **options: Any) -> Iterator[UpstreamChunk]:
        """Text pieces as the upstream sends them; the last chunk carries ``final`` with the reported usage.

        The request is sent when this is called (a refused or unreachable upstream raises here, before the
        first piece). Closing the iterator closes the upstream connection.
        """
        httpx = require("httpx", "server")
        client = self._sync_client()
        request = client.build_request("POST", self.url, json=self._body(messages, True, options))
        try:
            response = client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            try:
                text = response.read().decode("utf-8", "replace")
            finally:
                response.close()
            raise self._failure(response.status_code, text)
        return self._events(response, httpx)

    def _events(self, response: Any, httpx: Any) -> Iterator[UpstreamChunk]:
        state = _StreamState(self.model)
        try:
            for line in response.iter_lines():
                piece = state.feed(line, self.base_url)
                if piece:
                    yield UpstreamChunk(piece)
                if state.done:
                    break
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        finally:
            response.close()  # also when the consumer closes early: the upstream sees the hang-up
        yield UpstreamChunk("", final=state.completion())

    # -- async twins --------------------------------------------------------------------------------------------
    async def agenerate(self, messages: list[dict[str, str]], **options: Any) -> UpstreamCompletion:
        """:meth:`generate` without blocking the event loop."""
        httpx = require("httpx", "server")
        body = self._body(messages, False, options)
        async with httpx.AsyncClient(timeout=self.timeout, headers=self._headers) as client:
            try:
                response = await client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
        return self._answer(response)

    async def astream_chunks(self, messages: list[dict[str, str]], **options: Any) -> AsyncIterator[UpstreamChunk]:
        """:meth:`stream_chunks` without blocking the event loop."""
        httpx = require("httpx", "server")
        body = self._body(messages, True, options)
        state = _StreamState(self.model)
        async with httpx.AsyncClient(timeout=self.timeout, headers=self._headers) as client:
            try:
                async with client.stream("POST", self.url, json=body) as response:
                    if response.status_code >= 400:
                        raise self._failure(response.status_code, (await response.aread()).decode("utf-8", "replace"))
                    async for line in response.aiter_lines():
                        piece = state.feed(line, self.base_url)
                        if piece:
                            yield UpstreamChunk(piece)
                        if state.done:
                            break
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
        yield UpstreamChunk("", final=state.completion())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class _StreamState:
    """Parses an OpenAI server-sent-event stream line by line, keeping the text, usage and finish reason."""

    def __init__(self, model: str):
        self.model, self.parts, self.finish, self.usage, self.done = model, [], "stop", {}, False

    def feed(self, line: str, source: str) -> str:
        if not line.startswith("data:"):
            return ""
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            self.done = True
            return ""
        try:
            event = json.loads(data)
        except ValueError:
            raise UpstreamError(f"upstream {source} sent a malformed stream event", 200) from None
        if not isinstance(event, dict):
            raise UpstreamError(f"upstream {source} sent a malformed stream event", 200)
        if "error" in event:
            error = event["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError(f"upstream {source} failed mid-stream: {str(message)[:_ERROR_BODY_CHARS]}", 200)
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        self.model = str(event.get("model") or self.model)
        piece = ""
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str) and content:
                piece += content
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])
        if piece:
            self.parts.append(piece)
        return piece

    def completion(self) -> UpstreamCompletion:
        return UpstreamCompletion("".join(self.parts), _count(self.usage.get("prompt_tokens")),
                                  _count(self.usage.get("completion_tokens")), self.finish, self.model)


__all__ = ["OpenAICompatibleLLM", "UpstreamCompletion", "UpstreamChunk", "UpstreamError", "OPTIONS"]
