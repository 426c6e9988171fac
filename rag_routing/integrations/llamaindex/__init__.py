"""LlamaIndex integration: a router as a selector, the pipeline as a query engine, the ledger as an event handler.

* :class:`RoutingSelector` — any rag_routing Router as a ``BaseSelector`` (``RouterQueryEngine``,
  ``RouterRetriever``), with exact tool mapping (no silent misroutes).
* :class:`RoutedRAGQueryEngine` — a ``RoutedRAG`` pipeline (or a stage) as a query engine: ``Response`` with
  source nodes and the decision trace and cost; streaming and async.
* :class:`LedgerEventHandler`, :func:`instrument` — LLM and embedding calls recorded in the cost ledger.
* :class:`RoutingDecisionEvent` — routing decisions as instrumentation events.
* :class:`LlamaIndexChatLLM` — a LlamaIndex LLM as an LLM of the generator stage.
* :class:`LocalLlamaIndexLLM` — the offline local model as a LlamaIndex LLM.
* :class:`LlamaIndexRetriever`, :func:`from_llamaindex_nodes`, :func:`to_llamaindex_nodes` — any LlamaIndex
  retriever as a stage option; nodes and scored documents converted both ways.
* :func:`install` — meter and budget every LlamaIndex call inside ``ledger_scope`` (done automatically);
  :func:`call_options` — price the calls of a block.

Names load lazily (PEP 562): importing this package imports llama-index only when a name is used.
"""

from __future__ import annotations

from rag_routing.lazy_exports import lazy_exports

_EXPORTS: dict[str, str] = {
    "RoutingSelector": "rag_routing.integrations.llamaindex.selector",
    "router_query_engine": "rag_routing.integrations.llamaindex.selector",
    "router_retriever": "rag_routing.integrations.llamaindex.selector",
    "RoutedRAGQueryEngine": "rag_routing.integrations.llamaindex.query_engine",
    "LedgerEventHandler": "rag_routing.integrations.llamaindex.instrumentation",
    "instrument": "rag_routing.integrations.llamaindex.instrumentation",
    "uninstrument": "rag_routing.integrations.llamaindex.instrumentation",
    "RoutingDecisionEvent": "rag_routing.integrations.llamaindex.events",
    "emit_decision": "rag_routing.integrations.llamaindex.events",
    "LlamaIndexChatLLM": "rag_routing.integrations.llamaindex.chat_llm",
    "LocalLlamaIndexLLM": "rag_routing.integrations.llamaindex.llm",
    "LlamaIndexRetriever": "rag_routing.integrations.llamaindex.retriever",
    "from_llamaindex_nodes": "rag_routing.integrations.llamaindex.retriever",
    "to_llamaindex_nodes": "rag_routing.integrations.llamaindex.retriever",
    "install": "rag_routing.integrations.llamaindex.budget_gate",
    "call_options": "rag_routing.integrations.llamaindex.budget_gate",
    "DEFAULT_OUTPUT_TOKENS": "rag_routing.integrations.llamaindex.budget_gate",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
