"""An OpenAI-compatible ``/v1/chat/completions`` endpoint in front of any router (FastAPI).

* ``POST /v1/chat/completions``: ``model`` ``"auto"`` (or ``"router"``) routes the last user message; a
  candidate name forces that candidate. ``stream: true`` answers with server-sent events in OpenAI's
  ``chat.completion.chunk`` shape ending with ``data: [DONE]``. Every response carries ``usage`` and an
  ``x_rag_routing`` extension field (candidate, reason, decision id, cost).
* Bearer-token auth (``401``); each key's principal has a budget through the ledger: a call whose estimate
  does not fit is refused with ``429`` (``insufficient_quota``) *before* anything is generated.
* ``GET /health`` (no auth; ``503`` when the budget store is unreachable), ``GET /v1/models``.
* Errors are OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}``; a bad body is ``400``, an
  oversized one ``413``, an unknown model ``404``, an unreachable shared store ``503``.

Routing, budgeting and generation run in worker threads, so the event loop keeps accepting requests.

Example:
    >>> app = create_app(router, {"small": small_llm, "large": large_llm},            # doctest: +SKIP
    ...                  {"sk-team-a-123": {"principal": "team-a", "max_usd": 5.0}})
    >>> serve(app, host="127.0.0.1", port=8000)                                       # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from rag_routing.errors import (
    BudgetExceededError,
    InvalidInputError,
    NoRouteError,
    RagRoutingError,
    UnknownCandidateError,
    require,
)
from rag_routing.ledger.redis_connection import StoreUnavailableError
from rag_routing.security.redaction import RedactingFilter, redact
from rag_routing.server.generation import Completion
from rag_routing.server.keys import ApiKey, ApiKeys, load_api_keys
from rag_routing.server.schemas import (
    ROUTE_ALIASES,
    ChatCompletionRequest,
    UnsupportedFieldError,
    check_fields,
    chunk_body,
    completion_body,
    error_body,
    usage_body,
)
from rag_routing.server.service import ChatService, Plan

fastapi = require("fastapi", "server")
anyio = require("anyio", "server")
from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

logger = logging.getLogger(__name__)
logger.addFilter(RedactingFilter())  # exception texts may carry a store URL: never its password
_DONE = object()
#: Deepest JSON nesting accepted in a request body (a chat request needs 4).
MAX_JSON_DEPTH = 32


class APIError(Exception):
    """An error answered in OpenAI's shape with ``status``."""

    def __init__(self, status: int, message: str, type_: str, code: str | None = None,
                 headers: dict[str, str] | None = None, param: str | None = None):
        message = redact(message)
        super().__init__(message)
        self.status, self.body, self.headers = status, error_body(message, type_, code, param), headers


def api_error(exc: BaseException) -> APIError:
    """The HTTP answer to a typed library error (its text redacted: no credentials reach a client)."""
    if isinstance(exc, APIError):
        return exc
    message = redact(exc)
    param = getattr(exc, "param", None)
    if isinstance(exc, InvalidInputError) and isinstance(param, str):
        return APIError(400, message, "invalid_request_error", getattr(exc, "code", "invalid_value"), param=param)
    if isinstance(exc, BudgetExceededError):
        code = {"QuotaExceededError": "quota_exceeded", "RoutingAlarmError": "routing_alarm"}.get(
            type(exc).__name__, "budget_exceeded")
        return APIError(429, message, "insufficient_quota", code)
    if isinstance(exc, UnknownCandidateError):
        return APIError(404, message, "invalid_request_error", "model_not_found")
    if isinstance(exc, InvalidInputError):
        code = "suspicious_query" if type(exc).__name__ == "SuspiciousQueryError" else "invalid_value"
        return APIError(400, message, "invalid_request_error", code)
    if isinstance(exc, NoRouteError):
        return APIError(400, message, "invalid_request_error", "no_route")
    if isinstance(exc, StoreUnavailableError):
        logger.warning("shared store unavailable: %s", message)
        return APIError(503, message, "server_error", "store_unavailable")
    upstream_status = getattr(exc, "upstream_status", None)
    if upstream_status is not None:  # an upstream endpoint failed: its (redacted) reason, as a bad gateway
        logger.warning("upstream failed: %s", message)
        return APIError(502, message, "server_error", "upstream_error")
    logger.error("request failed", exc_info=exc)
    return APIError(500, f"{type(exc).__name__}: {message}" if isinstance(exc, RagRoutingError)
                    else "the generator failed; see the server log", "server_error", "internal_error")


def _sse(payload: dict[str, Any] | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


async def _read_json(request: Request, max_bytes: int) -> Any:
    from starlette.requests import ClientDisconnect

    size, chunks = 0, []
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise APIError(413, f"request body over {max_bytes} bytes", "invalid_request_error",
                               "body_too_large")
            chunks.append(chunk)
    except ClientDisconnect as exc:  # nobody is left to answer; nothing was reserved yet
        raise APIError(400, "the client disconnected while sending the body", "invalid_request_error",
                       "client_disconnected") from exc
    try:
        data = json.loads(b"".join(chunks).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise APIError(400, f"the body is not UTF-8 ({exc.reason} at byte {exc.start})", "invalid_request_error",
                       "invalid_encoding") from exc
    except json.JSONDecodeError as exc:
        raise APIError(400, f"the body is not JSON ({exc.msg} at {exc.pos})", "invalid_request_error",
                       "invalid_json") from exc
    except RecursionError:
        raise APIError(400, f"the body nests JSON deeper than {MAX_JSON_DEPTH} levels", "invalid_request_error",
                       "invalid_json") from None
    if _depth_over(data, MAX_JSON_DEPTH):
        raise APIError(400, f"the body nests JSON deeper than {MAX_JSON_DEPTH} levels", "invalid_request_error",
                       "invalid_json")
    return data


def _depth_over(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists/objects deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _parse(data: Any) -> ChatCompletionRequest:
    from pydantic import ValidationError

    try:
        check_fields(data)
        return ChatCompletionRequest.model_validate(data)
    except UnsupportedFieldError as exc:
        raise APIError(400, str(exc), "invalid_request_error", exc.code, param=exc.param) from None
    except ValidationError as exc:
        errors = exc.errors()
        first = next((e for e in errors if e["type"] == "value_error"), errors[0])
        where = ".".join(str(p) for p in first["loc"])
        param = str(first["loc"][0]) if first["loc"] else None
        raise APIError(400, f"{where}: {first['msg']}" if where else first["msg"], "invalid_request_error",
                       "invalid_value", param=param) from None


def _parse_feedback(data: Any) -> Any:
    from pydantic import ValidationError

    from rag_routing.server.schemas import FeedbackRequest

    try:
        return FeedbackRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"{where}: {first['msg']}" if where else first["msg"], "invalid_request_error",
                       "invalid_value", param=str(first["loc"][0]) if first["loc"] else None) from None


def create_app(router: Any, generators: Mapping[str, Any], api_keys: ApiKeys | Mapping[str, Any] | str | Path, *,
               ledger: Any = None, budget_store: Any = None, prices: Mapping[str, Any] | None = None,
               default_max_tokens: int = 256, max_body_bytes: int = 1 << 20, max_concurrent_generations: int = 8,
               batch_window: float | None = None, max_batch: int = 8, title: str = "rag-routing") -> FastAPI:
    """The FastAPI app (see the module docstring); ``app.state.service`` is its :class:`ChatService`.

    ``batch_window`` / ``max_batch``: concurrent routed requests are featurised and routed in one batch
    (see :class:`~rag_routing.server.batching.RouteBatcher`); ``batch_window=None`` (default) routes each alone.
    """
    keys = api_keys if isinstance(api_keys, ApiKeys) else load_api_keys(api_keys)
    service = ChatService(router, generators, keys, ledger=ledger, budget_store=budget_store, prices=prices,
                          default_max_tokens=default_max_tokens, batch_window=batch_window, max_batch=max_batch)
    generation_slots = anyio.CapacityLimiter(max_concurrent_generations)
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    async def run(fn: Any, *args: Any, limiter: Any = None, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=limiter)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = api_error(exc)  # logged there; the client gets an OpenAI-shaped 500 without internals
        return JSONResponse(error.body, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error", "not_found"
                                       if exc.status_code == 404 else None), status_code=exc.status_code)

    def authenticate(request: Request) -> ApiKey:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        key = keys.lookup(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if key is None:
            raise APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           "invalid_request_error", "invalid_api_key", {"WWW-Authenticate": "Bearer"})
        return key

    @app.get("/health")
    async def health() -> JSONResponse:
        body: dict[str, Any] = {"status": "ok", "router": service.router.name,
                                "candidates": list(service.generators)}

        def probe() -> None:  # a quick round trip to each shared store, no retry window
            for store in (service.budget_store, getattr(service.ledger, "store", None)):
                ping = getattr(store, "ping", None)
                if ping is not None:
                    ping()

        try:
            await run(probe)
        except RagRoutingError as exc:
            body.update(status="degraded", error=redact(exc))
            logger.warning("health: %s", body["error"])
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    @app.get("/v1/models")
    async def models(key: ApiKey = Depends(authenticate)) -> dict[str, Any]:
        ids = [*ROUTE_ALIASES, *service.generators]
        return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "rag-routing"}
                                           for i in ids]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request, key: ApiKey = Depends(authenticate)) -> Any:
        # Every failure is answered here: an exception reaching Starlette's last-resort handler is re-raised
        # after the response and closes the keep-alive connection under the client's next request.
        try:
            return await _chat(request, key)
        except Exception as exc:
            error = api_error(exc)
            return JSONResponse(error.body, status_code=error.status, headers=error.headers)

    @app.post("/v1/feedback")
    async def feedback(request: Request, key: ApiKey = Depends(authenticate)) -> Any:
        """``{"decision_id", "reward"}`` or ``{"decision_id", "quality", "cost"?}`` for a routed decision of an
        online router (see :meth:`ChatService.feedback`)."""
        try:
            data = await _read_json(request, max_body_bytes)
            body = _parse_feedback(data)
            learned = await run(service.feedback, key, body.decision_id, body.reward, quality=body.quality,
                                cost=body.cost)
            return {"object": "feedback", "decision_id": body.decision_id, "reward": learned}
        except Exception as exc:
            error = api_error(exc)
            return JSONResponse(error.body, status_code=error.status, headers=error.headers)

    async def _chat(request: Request, key: ApiKey) -> Any:
        req = _parse(await _read_json(request, max_body_bytes))
        options, explicit = req.generation_options(default_max_tokens)
        if req.stream and req.logprobs:
            raise APIError(400, "logprobs are returned for requests without stream only", "invalid_request_error",
                           "unsupported_parameter", param="logprobs")
        plan = await run(service.plan, req.model, req.routing_query(), req.generation_messages(), key,
                         max_tokens=options["max_tokens"], options=options, explicit=explicit)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return await _stream(plan, options, include_usage)
        adapter = service.generators[plan.candidate]

        def generate_and_settle() -> tuple[Completion, Any]:  # one worker-thread hop for both
            try:
                completion = adapter.complete(plan.messages, **options)
            except Exception:  # the generator is user code: any failure releases the reservation
                service.abort(plan)
                raise
            return completion, service.settle(plan, completion)

        completion, entry = await run(generate_and_settle, limiter=generation_slots)
        usage = usage_body(entry.input_tokens if entry else plan.input_tokens, entry.output_tokens if entry else 0)
        return completion_body(f"chatcmpl-{plan.decision.decision_id}", plan.candidate, completion.text,
                               completion.finish_reason, usage, service.routing_info(plan, entry),
                               completion.logprobs if req.logprobs else None)

    async def _stream(plan: Plan, options: dict[str, Any], include_usage: bool) -> StreamingResponse:
        adapter = service.generators[plan.candidate]
        try:
            pieces = await run(adapter.stream, plan.messages, limiter=generation_slots, **options)
            first = await run(next, pieces, _DONE, limiter=generation_slots)
        except Exception:
            await run(service.abort, plan)
            raise
        return StreamingResponse(_events(plan, pieces, first, include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(plan: Plan, pieces: Any, item: Any, include_usage: bool) -> AsyncIterator[str]:
        cid, model = f"chatcmpl-{plan.decision.decision_id}", plan.candidate
        parts: list[str] = []
        settled = False
        try:
            yield _sse(chunk_body(cid, model, {"role": "assistant", "content": ""},
                                  x_rag_routing=service.routing_info(plan)))
            completion = None
            while item is not _DONE:
                if isinstance(item, Completion):
                    completion = item
                elif item:
                    parts.append(item)
                    yield _sse(chunk_body(cid, model, {"content": item}))
                item = await run(next, pieces, _DONE, limiter=generation_slots)
            completion = completion or Completion("".join(parts))
            entry = await run(service.settle, plan, completion)
            settled = True
            yield _sse(chunk_body(cid, model, {}, completion.finish_reason,
                                  x_rag_routing=service.routing_info(plan, entry)))
            if include_usage:
                usage = (usage_body(entry.input_tokens, entry.output_tokens) if entry
                         else usage_body(plan.input_tokens, 0))
                yield _sse({"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                            "choices": [], "usage": usage})
            yield _sse("[DONE]")
        except Exception as exc:  # the generator failed mid-stream: tell the client, charge what ran
            yield _sse(api_error(exc).body)
        finally:
            if not settled:  # cancelled by the client, or failed: record what was generated
                with anyio.CancelScope(shield=True):
                    close = getattr(pieces, "close", None)
                    if close is not None:
                        await run(close)
                    await run(service.settle, plan, Completion("".join(parts), finish_reason="cancelled"),
                              partial=True)

    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info",
          timeout_keep_alive: int = 30) -> None:
    """Run ``app`` with uvicorn until interrupted (one process; scale out with a shared Redis store).

    ``timeout_keep_alive`` is longer than uvicorn's 5 s so that busy clients do not race an idle close.
    """
    uvicorn = require("uvicorn", "server")
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=timeout_keep_alive)


__all__ = ["create_app", "serve", "APIError", "api_error"]
