"""Any LangChain retriever as a rag_routing retriever, and documents converted both ways.

:class:`LangChainRetriever` gives a LangChain ``BaseRetriever`` (e.g. ``vectorstore.as_retriever()``) the
``retrieve(query, k)`` / ``aretrieve`` interface the retriever and retrieval-strategy stages take, so it can be an
option of :class:`~rag_routing.stages.retriever.RetrieverRouter` (which wraps LangChain retrievers
automatically). Hits are :class:`~rag_routing.retrieval.documents.ScoredDocument` objects:

* id: ``metadata["_id"]`` / ``metadata["id"]`` (the corpus's own id), else ``Document.id`` (vector stores
  make one up), else the rank in this result;
* title: ``metadata["title"]``; the other metadata is kept;
* score: the vector store's similarity for a plain similarity ``VectorStoreRetriever`` (same search, with
  scores), else ``metadata["score"]`` / ``metadata["relevance_score"]``, else ``1 / rank``.

``k`` is passed to vector-store retrievers per call (``search_kwargs``); other retrievers return their own number
of documents, cut to ``k``. Each retrieval's time is recorded in the ambient ledger (stage ``retrieval``); the
embedding calls of the vector store are metered by the LangChain ambient hooks.

Example:
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> from langchain_core.vectorstores import InMemoryVectorStore
    >>> store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    >>> _ = store.add_texts(["Lima is the capital of Peru.", "Quito is in Ecuador."],
    ...                     metadatas=[{"_id": "lima"}, {"_id": "quito"}])
    >>> hits = LangChainRetriever(store.as_retriever(), name="memory").retrieve("Lima is the capital of Peru.", 1)
    >>> hits[0].id, hits[0].rank, hits[0].retriever, to_langchain_documents(hits)[0].metadata["rank"]
    ('lima', 1, 'memory', 1)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStoreRetriever

from rag_routing.errors import InvalidInputError
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import RETRIEVAL
from rag_routing.retrieval.base import check_k
from rag_routing.retrieval.documents import Document, ScoredDocument

_SCORE_KEYS = ("score", "relevance_score", "similarity_score")
_POSITION_KEYS = ("rank", "retriever")  # written by to_langchain_documents; not document metadata


def _score(metadata: dict[str, Any], rank: int) -> float:
    for key in _SCORE_KEYS:
        value = metadata.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return 1.0 / rank


def from_langchain_documents(documents: Iterable[LCDocument], *, retriever: str = "langchain",
                             scores: Sequence[float] | None = None) -> list[ScoredDocument]:
    """LangChain documents (best first) as scored hits (module docstring for ids, titles and scores)."""
    hits = []
    for rank, doc in enumerate(documents, start=1):
        if not isinstance(doc, LCDocument):
            raise InvalidInputError(f"expected LangChain Documents, got {type(doc).__name__}")
        metadata = dict(doc.metadata or {})
        score = float(scores[rank - 1]) if scores is not None else _score(metadata, rank)
        doc_id = metadata.pop("_id", None) or metadata.pop("id", None) or doc.id or str(rank)
        title = str(metadata.pop("title", "") or "")
        for key in (*_SCORE_KEYS, *_POSITION_KEYS):
            metadata.pop(key, None)
        hits.append(ScoredDocument(Document(id=str(doc_id), text=doc.page_content, title=title, metadata=metadata),
                                   score, rank, retriever))
    return hits


def to_langchain_documents(hits: Iterable[ScoredDocument]) -> list[LCDocument]:
    """Scored hits as LangChain documents: id, text, metadata plus ``title``, ``score``, ``rank``, ``retriever``."""
    return [LCDocument(page_content=hit.text, id=hit.id,
                       metadata={**dict(hit.document.metadata), "title": hit.title, "score": hit.score,
                                 "rank": hit.rank, "retriever": hit.retriever})
            for hit in hits]


class LangChainRetriever:
    """A LangChain ``BaseRetriever`` behind ``retrieve(query, k)`` (module docstring).

    Args:
        retriever: any LangChain retriever (``vectorstore.as_retriever()``, a BM25 retriever, an ensemble, ...).
        name: the name in hits, traces and the ledger (default: the retriever's class name).
    """

    def __init__(self, retriever: BaseRetriever, *, name: str | None = None):
        if not isinstance(retriever, BaseRetriever):
            raise InvalidInputError(f"LangChainRetriever wraps a LangChain BaseRetriever, got "
                                    f"{type(retriever).__name__}")
        self.retriever = retriever
        self.name = name or type(retriever).__name__

    def _scored_search(self, query: str, k: int) -> list[ScoredDocument] | None:
        """A plain similarity vector-store retriever: the same search, with the store's scores."""
        r = self.retriever
        if not isinstance(r, VectorStoreRetriever) or r.search_type != "similarity":
            return None
        extra = {key: v for key, v in r.search_kwargs.items() if key != "k"}
        pairs = r.vectorstore.similarity_search_with_score(query, k=k, **extra)
        return from_langchain_documents([d for d, _ in pairs], retriever=self.name, scores=[s for _, s in pairs])

    def retrieve(self, query: str, k: int = 5) -> list[ScoredDocument]:
        """The top ``k`` documents for ``query``, best first."""
        k = check_k(k)
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query must be a non-empty string, got {query!r}")
        started = time.perf_counter()
        hits = self._scored_search(query, k)
        if hits is None:
            kwargs = {"k": k} if isinstance(self.retriever, VectorStoreRetriever) else {}
            hits = from_langchain_documents(self.retriever.invoke(query, **kwargs)[:k], retriever=self.name)
        self._account(k, time.perf_counter() - started)
        return hits

    async def aretrieve(self, query: str, k: int = 5) -> list[ScoredDocument]:
        """Async :meth:`retrieve` (the retriever's own ``ainvoke`` when it is not a scored vector search)."""
        k = check_k(k)
        if isinstance(self.retriever, VectorStoreRetriever) and self.retriever.search_type == "similarity":
            return await asyncio.to_thread(self.retrieve, query, k)
        started = time.perf_counter()
        hits = from_langchain_documents((await self.retriever.ainvoke(query))[:k], retriever=self.name)
        self._account(k, time.perf_counter() - started)
        return hits

    def _account(self, k: int, seconds: float) -> None:
        ledger = current_ledger()
        if ledger is not None:
            ledger.record(RETRIEVAL, self.name, seconds=seconds, metadata={"k": k, "source": "langchain"})

    def __repr__(self) -> str:
        return f"LangChainRetriever({self.name!r})"


__all__ = ["LangChainRetriever", "from_langchain_documents", "to_langchain_documents"]
