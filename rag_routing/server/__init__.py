"""`rag-routing serve`: an OpenAI-compatible chat-completions endpoint in front of any router.

Needs the ``server`` extra (``pip install 'rag-routing[server]'``: FastAPI, uvicorn, httpx). The pieces:
:func:`create_app` (the FastAPI app), :class:`ChatService` (routing, budgets and the ledger, framework-free),
:func:`load_api_keys` (bearer tokens -> principals and budgets), :class:`GeneratorAdapter` (any generator, an
OpenAI-compatible upstream included: :class:`~rag_routing.llms.openai_compatible.OpenAICompatibleLLM`),
:class:`RouteBatcher` (dynamic batching of routing), :func:`serve` (uvicorn). Endpoints: ``/v1/chat/completions``,
``/v1/feedback`` (online routers), ``/v1/models``, ``/health``. FastAPI is imported only when
:func:`create_app` or :func:`serve` is first used.

Example:
    >>> from rag_routing.server import create_app, serve                                  # doctest: +SKIP
    >>> app = create_app(router, {"small": LocalLLM(), "large": big_llm}, "keys.json")   # doctest: +SKIP
    >>> serve(app, port=8000)                                                             # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from rag_routing.server.batching import RouteBatcher
from rag_routing.server.generation import Completion, GeneratorAdapter
from rag_routing.server.keys import ApiKey, ApiKeys, load_api_keys
from rag_routing.server.service import ChatService, Plan

_LAZY = {"create_app", "serve", "APIError"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from rag_routing.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'rag_routing.server' has no attribute {name!r}")


__all__ = ["create_app", "serve", "ChatService", "Plan", "GeneratorAdapter", "Completion", "ApiKey", "ApiKeys",
           "load_api_keys", "RouteBatcher"]
