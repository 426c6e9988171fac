"""LangChain integration: stages, pipelines and routers as Runnables; the cost ledger as a callback handler.

* :class:`StageRunnable`, :class:`PipelineRunnable`, :class:`RouterRunnable`, :func:`as_runnable` — LCEL nodes
  (``invoke`` / ``ainvoke`` / ``batch`` / ``abatch`` / ``stream`` / ``astream``, composable with ``|``);
  streamed nodes yield :class:`RAGStateChunk` objects (answer tokens, then the final state).
* :class:`LedgerCallbackHandler` — prices every chat model call's ``usage_metadata`` into the ambient ledger
  (installed automatically inside ``ledger_scope``; attach one only for another ledger or custom pricing).
* :class:`MeteredEmbeddings` — a LangChain ``Embeddings`` budgeted and recorded in the ambient ledger.
* :class:`ChatModelLLM` — a LangChain chat model as an LLM of :class:`~rag_routing.stages.GeneratorRouter`.
* :class:`LocalChatModel` — the offline local model as a LangChain chat model.

Names load lazily (PEP 562): importing this package imports langchain-core only when a name is used.
"""

from __future__ import annotations

from rag_routing.lazy_exports import lazy_exports

_EXPORTS: dict[str, str] = {
    "StageRunnable": "rag_routing.integrations.langchain.runnables",
    "PipelineRunnable": "rag_routing.integrations.langchain.runnables",
    "as_runnable": "rag_routing.integrations.langchain.runnables",
    "RouterRunnable": "rag_routing.integrations.langchain.router_runnable",
    "DecisionLedger": "rag_routing.integrations.langchain.router_runnable",
    "StateRunnable": "rag_routing.integrations.langchain.state_runnable",
    "RAGStateChunk": "rag_routing.integrations.langchain.state_runnable",
    "DECISION_EVENT": "rag_routing.integrations.langchain.state_runnable",
    "LedgerCallbackHandler": "rag_routing.integrations.langchain.callbacks",
    "MeteredEmbeddings": "rag_routing.integrations.langchain.embeddings",
    "ChatModelLLM": "rag_routing.integrations.langchain.chat_llm",
    "LocalChatModel": "rag_routing.integrations.langchain.chat_model",
    "LangChainRetriever": "rag_routing.integrations.langchain.retriever",
    "from_langchain_documents": "rag_routing.integrations.langchain.retriever",
    "to_langchain_documents": "rag_routing.integrations.langchain.retriever",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
