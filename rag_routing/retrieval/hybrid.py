"""Hybrid retrieval by reciprocal rank fusion (Cormack, Clarke & Büttcher 2009, "Reciprocal Rank Fusion
outperforms Condorcet and individual Rank Learning Methods", SIGIR).

Each document gets ``sum_r w_r / (k_rrf + rank_r(d))`` over the rankings ``r`` that contain it (ranks are
1-based; the paper's ``k = 60``). Only ranks are fused, so BM25 scores and cosine similarities never have to
be put on one scale.

Example:
    >>> reciprocal_rank_fusion([["a", "b", "c"], ["b", "c"]], k_rrf=60)
    [('b', 0.03252247488101534), ('c', 0.03200204813108039), ('a', 0.01639344262295082)]
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.retrieval.accounting import STAGE_RETRIEVAL, record_local
from rag_routing.retrieval.base import Retriever, check_k
from rag_routing.retrieval.documents import Document, ScoredDocument, as_documents

T = TypeVar("T", bound=Hashable)


def _check_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    values = [float(w) for w in weights]
    if len(values) != n:
        raise InvalidInputError(f"{len(values)} weights for {n} rankings; give one weight per ranking")
    if any(not np.isfinite(w) or w < 0 for w in values) or not any(values):
        raise InvalidInputError(f"weights must be finite, >= 0 and not all 0; got {values}")
    return values


def reciprocal_rank_fusion(rankings: Sequence[Sequence[T]], k_rrf: float = 60.0,
                           weights: Sequence[float] | None = None) -> list[tuple[T, float]]:
    """Fuse rankings of ids (best first) into ``[(id, fused score)]``, best first.

    Ties keep the order in which the ids were first met (ranking by ranking, rank by rank). An id repeated
    within one ranking counts at its best rank only.
    """
    if not k_rrf >= 0:
        raise InvalidInputError(f"k_rrf must be >= 0, got {k_rrf!r}")
    w = _check_weights(weights, len(rankings))
    fused: dict[T, float] = {}
    for ranking, weight in zip(rankings, w):
        seen: set[T] = set()
        for rank, item in enumerate(ranking, 1):
            if item in seen:
                continue
            seen.add(item)
            fused[item] = fused.get(item, 0.0) + weight / (k_rrf + rank)
    return sorted(fused.items(), key=lambda pair: -pair[1])  # sorted() is stable: ties keep first-met order


class HybridRetriever(Retriever):
    """Reciprocal rank fusion of several retrievers (typically dense + BM25).

    Args:
        retrievers: the retrievers to fuse (each keeps its own index and ledger entries).
        k_rrf: the RRF constant (60 in the paper).
        weights: one weight per retriever (default all 1).
        fetch_k: each retriever returns ``max(k, fetch_k)`` candidates before fusion.
        name: name in results and in the ledger (default ``"hybrid"``).

    :meth:`add_documents` adds to every retriever. The hybrid's own ledger entry (model ``"rrf"``) holds
    only the fusion time; each retriever records its own search, so no second is counted twice.
    """

    default_name = "hybrid"
    ledger_model = "rrf"

    def __init__(self, retrievers: Sequence[Retriever], k_rrf: float = 60.0,
                 weights: Sequence[float] | None = None, fetch_k: int = 100, name: str | None = None):
        super().__init__(name)
        retrievers = list(retrievers)
        if not retrievers or not all(isinstance(r, Retriever) for r in retrievers):
            raise InvalidInputError("HybridRetriever needs a non-empty list of Retriever objects")
        if not k_rrf >= 0:
            raise InvalidInputError(f"k_rrf must be >= 0, got {k_rrf!r}")
        self.retrievers = retrievers
        self.k_rrf = float(k_rrf)
        self.weights = _check_weights(weights, len(retrievers))
        self.fetch_k = check_k(fetch_k)

    @property
    def documents(self) -> list[Document]:
        """Every retriever's documents, each id once (first retriever first)."""
        out: dict[str, Document] = {}
        for r in self.retrievers:
            for doc in r.documents:
                out.setdefault(doc.id, doc)
        return list(out.values())

    def __len__(self) -> int:
        return len({doc.id for r in self.retrievers for doc in r.documents})

    def add_documents(self, documents: Iterable[Document | str | Mapping[str, Any]]) -> HybridRetriever:
        """Add ``documents`` to every fused retriever (each records its own indexing)."""
        docs = as_documents(documents)
        for r in self.retrievers:  # validate everywhere first, so a duplicate id leaves no retriever half-filled
            with r._lock:
                r._check_new_ids(docs)
        for r in self.retrievers:
            r.add_documents(docs)
        return self

    def _add_documents(self, documents: list[Document], prepared: Any) -> None:  # pragma: no cover
        raise AssertionError("HybridRetriever.add_documents delegates to its retrievers")

    def _check_not_empty(self) -> None:
        if all(len(r) == 0 for r in self.retrievers):
            raise InvalidInputError(f"retriever {self.name!r} holds no documents; call add_documents(...) first")

    def _run(self, queries: list[str], k: int) -> tuple[list[list[ScoredDocument]], float]:
        depth = max(k, self.fetch_k)
        per_retriever: list[list[list[ScoredDocument]]] = [
            r.retrieve_batch(queries, depth) if len(r) else [[] for _ in queries] for r in self.retrievers
        ]
        start = time.perf_counter()
        results = [self._fuse([hits[q] for hits in per_retriever], k) for q in range(len(queries))]
        return results, time.perf_counter() - start

    def _retrieve_batch(self, queries: list[str], k: int) -> list[list[ScoredDocument]]:
        return self._run(queries, k)[0]

    def _fuse(self, rankings: list[list[ScoredDocument]], k: int) -> list[ScoredDocument]:
        docs: dict[str, Document] = {}
        for hits in rankings:
            for hit in hits:
                docs.setdefault(hit.id, hit.document)
        fused = reciprocal_rank_fusion([[hit.id for hit in hits] for hits in rankings], self.k_rrf, self.weights)
        return [ScoredDocument(docs[doc_id], score, rank, self.name)
                for rank, (doc_id, score) in enumerate(fused[:k], 1)]

    def _account_retrieval(self, queries: list[str], k: int, seconds: float) -> None:
        record_local(STAGE_RETRIEVAL, self.name, self.ledger_model, seconds,
                     metadata={"n_queries": len(queries), "k": k,
                               "fused": [r.name for r in self.retrievers]})

    def __repr__(self) -> str:
        names = ", ".join(r.name for r in self.retrievers)
        return f"HybridRetriever(name={self.name!r}, retrievers=[{names}], k_rrf={self.k_rrf})"


__all__ = ["HybridRetriever", "reciprocal_rank_fusion"]
