"""Retriever stage: which retriever searches — an embedding model, dense vs BM25 vs hybrid, a knowledge base.

Retrieval quality differs by query: keyword-heavy queries favour BM25, paraphrases favour dense retrieval,
and a query about one domain belongs in that domain's knowledge base. :class:`RetrieverRouter` holds named
retrievers (any :class:`~rag_routing.retrieval.base.Retriever`: dense with any embedder, BM25, hybrid, over
any corpus) and picks one per query with any router — e.g. trained with :meth:`fit_from_outcomes` on each
retriever's per-query nDCG@10 (label: the retriever with the best nDCG, ties to the cheapest) — or uses a
fixed default. Each retriever records its own time and embedded tokens in the ambient ledger. A LangChain
retriever (``vectorstore.as_retriever()``) or a LlamaIndex retriever is an option too (wrapped by
:func:`~rag_routing.stages.adapters.adapt_retriever`).

Example:
    >>> from rag_routing.retrieval import BM25Retriever
    >>> docs = [{"_id": "a", "text": "Lima is the capital of Peru."}, {"_id": "b", "text": "Quito is in Ecuador."}]
    >>> stage = RetrieverRouter({"bm25": BM25Retriever().add_documents(docs)}, k=1)
    >>> stage.invoke("capital of Peru").document_ids
    ['a']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.stages.adapters import adapt_retriever
from rag_routing.stages.base import StageChoice, StageRouter
from rag_routing.stages.selection import KeepsBestFixed
from rag_routing.stages.state import RAGState


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
    return k


class RetrieveOption:
    """A retriever as a stage option: ``state.documents = retriever.retrieve(state.query, k)``.

    ``state.metadata["retrieval_k"]`` overrides ``k`` for one call (the multi-step strategy uses it).
    """

    def __init__(self, retriever: Any, k: int = 5):
        if not callable(getattr(retriever, "retrieve", None)):
            raise InvalidInputError(f"{type(retriever).__name__} is not a retriever (it has no retrieve(query, k))")
        self.retriever = retriever
        self.k = _check_k(k)

    def _k(self, state: RAGState) -> int:
        return _check_k(state.metadata.get("retrieval_k", self.k))

    def invoke(self, state: RAGState) -> RAGState:
        return state.evolve(documents=self.retriever.retrieve(state.query, self._k(state)))

    async def ainvoke(self, state: RAGState) -> RAGState:
        aretrieve = getattr(self.retriever, "aretrieve", None)
        if callable(aretrieve):
            return state.evolve(documents=await aretrieve(state.query, self._k(state)))
        import asyncio

        return await asyncio.to_thread(self.invoke, state)

    def __repr__(self) -> str:
        return f"RetrieveOption({getattr(self.retriever, 'name', type(self.retriever).__name__)!r}, k={self.k})"


class RetrieverRouter(KeepsBestFixed, StageRouter):
    """Chooses the retriever for each query.

    Args:
        retrievers: ``{name: Retriever}`` (or ready options: callables ``RAGState -> RAGState``).
        k: documents per query.
        router, default, lam, budget, name: see :class:`~rag_routing.stages.base.StageRouter`.
    """

    stage = "retriever"

    def __init__(self, retrievers: Mapping[str, Any], *, k: int = 5, router: Any = None, default: str | None = None,
                 lam: float | None = None, budget: float | None = None, name: str | None = None):
        if not isinstance(retrievers, Mapping) or not retrievers:
            raise InvalidInputError("RetrieverRouter needs a non-empty mapping {name: retriever}")
        self.k = _check_k(k)
        retrievers = {key: adapt_retriever(r, name=key) for key, r in retrievers.items()}
        options = {key: RetrieveOption(r, self.k) if callable(getattr(r, "retrieve", None)) else r
                   for key, r in retrievers.items()}
        super().__init__(options, router=router, default=default, lam=lam, budget=budget, name=name)

    def retriever(self, name: str) -> Any:
        """The retriever behind option ``name``."""
        option = self.options[name]
        return getattr(option, "retriever", option)

    def _run(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        result, reported, extra = super()._run(choice, state)
        return result, reported, {**extra, "document_ids": result.document_ids}

    async def _arun(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        result, reported, extra = await super()._arun(choice, state)
        return result, reported, {**extra, "document_ids": result.document_ids}


def as_retriever_stage(retriever: Any, *, k: int = 5, name: str | None = None) -> StageRouter:
    """A stage for ``retriever``: a StageRouter is returned as is; a Retriever becomes a one-option
    :class:`RetrieverRouter` (its option named after the retriever)."""
    if isinstance(retriever, StageRouter):
        return retriever
    retriever = adapt_retriever(retriever)
    key = name or str(getattr(retriever, "name", None) or "retriever")
    return RetrieverRouter({key: retriever}, k=k)


__all__ = ["RetrieverRouter", "RetrieveOption", "as_retriever_stage"]
