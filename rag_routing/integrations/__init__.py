"""Framework integrations: the only place rag_routing imports LangChain or LlamaIndex, and only on demand.

``import rag_routing.integrations`` imports neither framework; each name below loads its module (and its
framework) the first time it is used (PEP 562).

LangChain (``pip install 'rag-routing[langchain]'``): :class:`StageRunnable`, :class:`PipelineRunnable`,
:class:`RouterRunnable`, :func:`as_runnable`, :class:`RAGStateChunk`, :class:`LedgerCallbackHandler`,
:class:`ChatModelLLM`, :class:`LocalChatModel`.

LlamaIndex (``pip install 'rag-routing[llamaindex]'``): :class:`RoutingSelector`, :class:`RoutedRAGQueryEngine`,
:class:`LedgerEventHandler`, :func:`instrument`, :class:`RoutingDecisionEvent`, :class:`LlamaIndexChatLLM`,
:class:`LocalLlamaIndexLLM`.

Example:
    >>> from rag_routing.integrations import StageRunnable, RoutingSelector  # loads LangChain, then LlamaIndex
    >>> from rag_routing.stages import StageRouter
    >>> StageRunnable(StageRouter({"echo": lambda s: s.evolve(answer=s.query)})).invoke("hi").answer
    'hi'
"""

from __future__ import annotations

import importlib
from typing import Any

_LANGCHAIN = "rag_routing.integrations.langchain"
_LLAMAINDEX = "rag_routing.integrations.llamaindex"

_EXPORTS: dict[str, str] = {
    **{name: _LANGCHAIN for name in ("StageRunnable", "PipelineRunnable", "RouterRunnable", "as_runnable",
                                      "RAGStateChunk", "LedgerCallbackHandler", "ChatModelLLM", "LocalChatModel",
                                      "LangChainRetriever", "from_langchain_documents", "to_langchain_documents")},
    **{name: _LLAMAINDEX for name in ("RoutingSelector", "RoutedRAGQueryEngine", "LedgerEventHandler", "instrument",
                                       "uninstrument", "RoutingDecisionEvent", "LlamaIndexChatLLM",
                                       "LocalLlamaIndexLLM", "LlamaIndexRetriever", "from_llamaindex_nodes",
                                       "to_llamaindex_nodes")},
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    package = _EXPORTS.get(name)
    if package is None:
        raise AttributeError(f"module 'rag_routing.integrations' has no attribute {name!r}")
    from rag_routing.errors import require

    require("langchain_core" if package == _LANGCHAIN else "llama_index.core",
            "langchain" if package == _LANGCHAIN else "llamaindex")
    value = getattr(importlib.import_module(package), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
