"""Retrieval-confidence features: route the retrieval strategy *after* a first, cheap retrieval.

Adaptive-RAG (Jeong et al. 2024) decides from the question alone. A retrieval is cheap next to an LLM call
(milliseconds, no tokens), and how well the question matches the knowledge base is a direct signal of
whether one retrieval will do: when the best passage matches the question strongly, the evidence is usually
there; when it matches weakly, a follow-up retrieval (multi-step) has more to find. Gating further retrieval
on retrieval scores is the idea behind retrieval-confidence methods such as Self-RAG's and SKR's "retrieve when
needed" and Self-Route's (Li et al. 2024) "is the context enough" step, applied here to the strategy choice.

A :class:`RetrievalProbe` turns the first retrieval's scores into a small feature vector; a
:class:`~rag_routing.stages.retrieval_strategy.RetrievalStrategyRouter` built with ``probe=...`` runs that
retrieval once, routes on its features with any Router (fitted on the same features, e.g. a
:class:`~rag_routing.routers.similarity.ClusterRouter` over retrieval-confidence bins), and the chosen
strategy reuses the probe's documents: ``single`` answers from them, ``multi`` continues from them, ``none``
drops them. Only ``none`` pays for a retrieval it does not use.

Features (per query, from the scores of the ``k`` retrieved documents, best first; a missing document scores 0):

* ``top_score`` — the best document's score (BM25: unbounded; dense: cosine similarity);
* ``score_per_term`` — ``top_score`` divided by the number of distinct query terms (BM25 grows with the
  number of matched terms, so this compares long and short questions);
* ``top_gap`` — ``(s1 - s2) / |s1|``: how far the best document stands out from the second;
* ``score_drop`` — ``(s1 - sk) / |s1|``: how fast the scores fall over the ``k`` documents.

Scores are on the retriever's scale, so a router fitted on one retriever's features must route with the same
retriever (the stage checks the feature width; the scale is the caller's contract).

Example:
    >>> from rag_routing.retrieval import BM25Retriever
    >>> docs = [{"_id": "a", "text": "Lima is the capital of Peru."}, {"_id": "b", "text": "Quito is in Ecuador."}]
    >>> probe = RetrievalProbe(("top_score", "top_gap"))
    >>> found = BM25Retriever().add_documents(docs).retrieve("capital of Peru", k=2)
    >>> probe.features("capital of Peru", found).shape
    (2,)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.retrieval.documents import ScoredDocument

#: The ``featurizer`` name of routers fitted on probe features (a RoutingDataset's ``embedding_model``).
PROBE_FEATURIZER = "retrieval-probe"

_TERM = re.compile(r"\w+", re.UNICODE)


def _top(scores: np.ndarray) -> float:
    return float(scores[0])


def _per_term(scores: np.ndarray, query: str) -> float:
    terms = {t.lower() for t in _TERM.findall(query)}
    return float(scores[0]) / max(len(terms), 1)


def _relative(first: float, other: float) -> float:
    return (first - other) / abs(first) if first != 0 else 0.0


FEATURES: dict[str, Callable[[np.ndarray, str], float]] = {
    "top_score": lambda scores, query: _top(scores),
    "score_per_term": _per_term,
    "top_gap": lambda scores, query: _relative(float(scores[0]), float(scores[1])),
    "score_drop": lambda scores, query: _relative(float(scores[0]), float(scores[-1])),
}


class RetrievalProbe:
    """Features of a first retrieval (see module docstring).

    Args:
        features: names from :data:`FEATURES`, in the order of the vector (default: ``("top_score",)``, the
            one that carried the signal on MuSiQue, see ``benchmarks/rag_stages.py``).
        k: documents the features look at (the stage retrieves its own ``k``; fewer found count as score 0).
    """

    def __init__(self, features: Sequence[str] = ("top_score",), *, k: int = 4):
        if isinstance(features, str) or not isinstance(features, Sequence) or not features:
            raise InvalidInputError(f"features must be a non-empty sequence of names from {sorted(FEATURES)}")
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise InvalidInputError(f"unknown probe features {unknown}; known: {sorted(FEATURES)}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise InvalidInputError(f"k must be an integer >= 2, got {k!r}")
        self.names, self.k = tuple(features), k

    @property
    def width(self) -> int:
        return len(self.names)

    def features(self, query: str, documents: Sequence[ScoredDocument]) -> np.ndarray:
        """The feature vector ``(width,)`` of one retrieval (documents best first)."""
        scores = np.zeros(self.k)
        found = [d.score for d in documents[: self.k]]
        scores[: len(found)] = found
        return np.array([FEATURES[name](scores, query) for name in self.names], dtype=np.float64)

    def features_batch(self, queries: Sequence[str], retrievals: Sequence[Sequence[ScoredDocument]]) -> np.ndarray:
        """``(n, width)`` features of ``n`` retrievals."""
        if len(queries) != len(retrievals):
            raise InvalidInputError(f"{len(queries)} queries but {len(retrievals)} retrievals")
        rows = [self.features(q, docs) for q, docs in zip(queries, retrievals)]
        return np.vstack(rows) if rows else np.zeros((0, self.width))

    def describe(self) -> dict[str, object]:
        return {"features": list(self.names), "k": self.k}

    def __repr__(self) -> str:
        return f"RetrievalProbe(features={list(self.names)}, k={self.k})"


__all__ = ["RetrievalProbe", "FEATURES", "PROBE_FEATURIZER"]
