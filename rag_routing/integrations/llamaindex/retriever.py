"""Any LlamaIndex retriever as a rag_routing retriever, and nodes converted both ways.

:class:`LlamaIndexRetriever` gives a LlamaIndex ``BaseRetriever`` (``index.as_retriever()``, BM25, a fusion
retriever, ...) the ``retrieve(query, k)`` / ``aretrieve`` interface the retriever and retrieval-strategy stages
take, so it can be an option of :class:`~rag_routing.stages.retriever.RetrieverRouter` (which wraps LlamaIndex
retrievers automatically). Hits are :class:`~rag_routing.retrieval.documents.ScoredDocument` objects: id
``metadata["_id"]`` / ``metadata["id"]`` if set, else the source document's id (``node.ref_doc_id``: the
``id_`` you gave the ``Document``; its chunks share it), else ``node.node_id``; text ``node.get_content()``, title ``metadata["title"]``, the other metadata kept, score
``NodeWithScore.score`` (``1 / rank`` when the retriever gives none).

LlamaIndex retrievers fix their number of results when they are built (``similarity_top_k``): ``k`` cuts it,
so build the retriever with a top-k at least as large as the stage's ``k``. Each retrieval's time is recorded in
the ambient ledger (stage ``retrieval``); the embedding calls are metered by the LlamaIndex ambient hooks.

Example:
    >>> from llama_index.core import Document as LIDocument, VectorStoreIndex
    >>> from llama_index.core.embeddings import MockEmbedding
    >>> index = VectorStoreIndex.from_documents(
    ...     [LIDocument(text="Lima is the capital of Peru.", id_="lima", metadata={"title": "Peru"})],
    ...     embed_model=MockEmbedding(embed_dim=8))
    >>> retriever = LlamaIndexRetriever(index.as_retriever(similarity_top_k=3), name="index")
    >>> hit = retriever.retrieve("capital of Peru", 2)[0]
    >>> hit.title, hit.retriever, to_llamaindex_nodes([hit])[0].node.metadata["title"]
    ('Peru', 'index', 'Peru')
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, TextNode

from rag_routing.errors import InvalidInputError
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import RETRIEVAL
from rag_routing.retrieval.base import check_k
from rag_routing.retrieval.documents import Document, ScoredDocument

_POSITION_KEYS = ("rank", "retriever", "score")  # written by to_llamaindex_nodes; not document metadata


def from_llamaindex_nodes(nodes: Iterable[NodeWithScore], *, retriever: str = "llama_index") -> list[ScoredDocument]:
    """LlamaIndex ``NodeWithScore`` results (best first) as scored hits."""
    hits = []
    for rank, item in enumerate(nodes, start=1):
        if not isinstance(item, NodeWithScore):
            raise InvalidInputError(f"expected LlamaIndex NodeWithScore objects, got {type(item).__name__}")
        metadata = {k: v for k, v in dict(item.node.metadata or {}).items() if k not in _POSITION_KEYS}
        title = str(metadata.pop("title", "") or "")
        score = item.score if item.score is not None and math.isfinite(item.score) else 1.0 / rank
        text = item.node.get_content()
        doc_id = metadata.pop("_id", None) or metadata.pop("id", None) or item.node.ref_doc_id or item.node.node_id
        hits.append(ScoredDocument(Document(id=str(doc_id), text=text, title=title, metadata=metadata),
                                   float(score), rank, retriever))
    return hits


def to_llamaindex_nodes(hits: Iterable[ScoredDocument]) -> list[NodeWithScore]:
    """Scored hits as ``NodeWithScore`` over ``TextNode`` (id, text, metadata plus title, rank, retriever)."""
    return [NodeWithScore(node=TextNode(id_=hit.id, text=hit.text,
                                        metadata={**dict(hit.document.metadata), "_id": hit.id, "title": hit.title,
                                                  "rank": hit.rank, "retriever": hit.retriever}),
                          score=hit.score)
            for hit in hits]


class LlamaIndexRetriever:
    """A LlamaIndex ``BaseRetriever`` behind ``retrieve(query, k)`` (module docstring).

    Args:
        retriever: any LlamaIndex retriever.
        name: the name in hits, traces and the ledger (default: the retriever's class name).
    """

    def __init__(self, retriever: BaseRetriever, *, name: str | None = None):
        if not isinstance(retriever, BaseRetriever):
            raise InvalidInputError(f"LlamaIndexRetriever wraps a LlamaIndex BaseRetriever, got "
                                    f"{type(retriever).__name__}")
        from rag_routing.integrations.llamaindex.budget_gate import install

        install()
        self.retriever = retriever
        self.name = name or type(retriever).__name__

    @staticmethod
    def _checked(query: Any, k: Any) -> int:
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"query must be a non-empty string, got {query!r}")
        return check_k(k)

    def retrieve(self, query: str, k: int = 5) -> list[ScoredDocument]:
        """The top ``k`` documents for ``query`` (at most the retriever's own top-k), best first."""
        k = self._checked(query, k)
        started = time.perf_counter()
        hits = from_llamaindex_nodes(self.retriever.retrieve(query)[:k], retriever=self.name)
        self._account(k, time.perf_counter() - started)
        return hits

    async def aretrieve(self, query: str, k: int = 5) -> list[ScoredDocument]:
        """Async :meth:`retrieve` (the retriever's own ``aretrieve``)."""
        k = self._checked(query, k)
        started = time.perf_counter()
        hits = from_llamaindex_nodes((await self.retriever.aretrieve(query))[:k], retriever=self.name)
        self._account(k, time.perf_counter() - started)
        return hits

    def _account(self, k: int, seconds: float) -> None:
        ledger = current_ledger()
        if ledger is not None:
            ledger.record(RETRIEVAL, self.name, seconds=seconds, metadata={"k": k, "source": "llama_index"})

    def __repr__(self) -> str:
        return f"LlamaIndexRetriever({self.name!r})"


__all__ = ["LlamaIndexRetriever", "from_llamaindex_nodes", "to_llamaindex_nodes"]
