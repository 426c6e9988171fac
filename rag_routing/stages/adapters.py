"""Framework components as stage options: LangChain / LlamaIndex retrievers and LLMs, recognised by class.

The stages take retrievers with ``retrieve(query, k)`` and LLMs with ``generate(messages, ...)``. A LangChain
retriever (``invoke``), a LlamaIndex retriever (``retrieve(query)``), a LangChain chat model or a LlamaIndex LLM
does not fit those interfaces, so :func:`adapt_retriever` / :func:`adapt_llm` wrap them in the adapters of
:mod:`rag_routing.integrations` (``LangChainRetriever``, ``LlamaIndexRetriever``, ``ChatModelLLM``,
``LlamaIndexChatLLM``). They are recognised by the module and name of a base class in their MRO, and the adapter
is imported by name only then: the stages never import a framework, and a program that never built a framework
object never loads one.

Example:
    >>> from rag_routing.retrieval import BM25Retriever
    >>> bm25 = BM25Retriever()
    >>> adapt_retriever(bm25) is bm25      # already a rag_routing retriever
    True
"""

from __future__ import annotations

import importlib
from typing import Any

#: (module of the framework base class, its name, the adapter as "module:Class").
_RETRIEVERS = (
    ("langchain_core.retrievers", "BaseRetriever", "rag_routing.integrations.langchain.retriever:LangChainRetriever"),
    ("llama_index.core.base.base_retriever", "BaseRetriever",
     "rag_routing.integrations.llamaindex.retriever:LlamaIndexRetriever"),
)
_LLMS = (
    ("langchain_core.language_models.chat_models", "BaseChatModel",
     "rag_routing.integrations.langchain.chat_llm:ChatModelLLM"),
    ("llama_index.core.base.llms.base", "BaseLLM", "rag_routing.integrations.llamaindex.chat_llm:LlamaIndexChatLLM"),
)


def _adapter(obj: Any, table: tuple[tuple[str, str, str], ...]) -> Any:
    for cls in type(obj).__mro__:
        for module, name, adapter in table:
            if cls.__name__ == name and cls.__module__ == module:
                module_name, _, attr = adapter.partition(":")
                return getattr(importlib.import_module(module_name), attr)
    return None


def adapt_retriever(retriever: Any, name: str | None = None) -> Any:
    """``retriever`` with ``retrieve(query, k)``: a LangChain / LlamaIndex retriever wrapped (named ``name`` in
    hits and the ledger), anything else as is."""
    adapter = _adapter(retriever, _RETRIEVERS)
    return retriever if adapter is None else adapter(retriever, name=name)


def adapt_llm(llm: Any) -> Any:
    """``llm`` with ``generate(messages, ...)``: a LangChain chat model / LlamaIndex LLM wrapped, else as is."""
    adapter = _adapter(llm, _LLMS)
    return llm if adapter is None else adapter(llm)


__all__ = ["adapt_retriever", "adapt_llm"]
