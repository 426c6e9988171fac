"""Ranking metrics with binary relevance: nDCG@k, recall@k and MRR, one value per query.

nDCG@k (Järvelin & Kekäläinen 2002) with gain 1 for a relevant document at rank i, discounted by
``1 / log2(i + 1)``, normalised by the ideal ranking of ``min(R, k)`` relevant documents; recall@k =
relevant found in the top k / R; MRR = 1 / rank of the first relevant document (0 when none). A document
repeated in a ranking counts once. A query without relevant documents has no defined value: it raises
:class:`InvalidInputError` (drop it first, as BEIR does; :func:`evaluate` drops it for you).

Example:
    >>> ranked = [["d1", "d2", "d3"], ["d9", "d4"]]
    >>> relevant = [{"d2"}, {"d4", "d5"}]
    >>> recall_at_k(ranked, relevant, k=2).tolist()
    [1.0, 0.5]
    >>> mrr(ranked, relevant).tolist()
    [0.5, 0.5]
    >>> ndcg_at_k(ranked, relevant, k=3).round(4).tolist()
    [0.6309, 0.3869]
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.retrieval.base import check_k
from rag_routing.retrieval.documents import ScoredDocument

Ranking = Sequence[Any]  # document ids or ScoredDocument hits, best first
Relevant = Collection[str] | Mapping[str, int]  # ids, or BEIR qrels {id: grade} (grade > 0 = relevant)


def _relevant_ids(relevant: Relevant) -> set[str]:
    if isinstance(relevant, Mapping):
        return {doc for doc, grade in relevant.items() if grade > 0}
    if isinstance(relevant, str):
        raise InvalidInputError("relevant documents must be a collection of ids, not a single string")
    return set(relevant)


def _id(item: Any) -> str:
    return item.id if isinstance(item, ScoredDocument) else item


def relevance_matrix(ranked: Sequence[Ranking], relevant: Sequence[Relevant],
                     k: int) -> tuple[np.ndarray, np.ndarray]:
    """(``hits``, ``n_relevant``): ``hits[q, i]`` is True when the document at rank ``i + 1`` of query ``q``
    is relevant (first occurrence only); ``n_relevant[q]`` counts the relevant documents of ``q``."""
    k = check_k(k)
    if isinstance(ranked, (str, Mapping)) or isinstance(relevant, (str, Mapping)):
        raise InvalidInputError("pass aligned lists: one ranking and one set of relevant ids per query")
    if len(ranked) != len(relevant):
        raise InvalidInputError(f"{len(ranked)} rankings but {len(relevant)} relevance sets; align them by query")
    hits = np.zeros((len(ranked), k), dtype=bool)
    n_relevant = np.zeros(len(ranked), dtype=np.int64)
    for q, (ranking, rel) in enumerate(zip(ranked, relevant)):
        if isinstance(ranking, str):
            raise InvalidInputError(f"ranking {q} is a string; pass a list of document ids")
        wanted = _relevant_ids(rel)
        if not wanted:
            raise InvalidInputError(f"query {q} has no relevant document; drop it before scoring (BEIR practice)")
        n_relevant[q] = len(wanted)
        seen: set[str] = set()
        for i, item in enumerate(ranking[:k]):
            doc = _id(item)
            if doc in wanted and doc not in seen:
                hits[q, i] = True
            seen.add(doc)
    return hits, n_relevant


def ndcg_at_k(ranked: Sequence[Ranking], relevant: Sequence[Relevant], k: int = 10) -> np.ndarray:
    """Binary nDCG@k of each query (float64 array)."""
    hits, n_relevant = relevance_matrix(ranked, relevant, k)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = hits @ discounts
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_relevant, hits.shape[1])]
    return dcg / ideal


def recall_at_k(ranked: Sequence[Ranking], relevant: Sequence[Relevant], k: int = 100) -> np.ndarray:
    """Share of each query's relevant documents found in its top ``k`` (float64 array)."""
    hits, n_relevant = relevance_matrix(ranked, relevant, k)
    return hits.sum(axis=1) / n_relevant


def mrr(ranked: Sequence[Ranking], relevant: Sequence[Relevant], k: int | None = None) -> np.ndarray:
    """Reciprocal rank of the first relevant document in the top ``k`` (whole ranking if ``None``)."""
    depth = k if k is not None else max((len(r) for r in ranked), default=1) or 1
    hits, _ = relevance_matrix(ranked, relevant, depth)
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def evaluate(run: Mapping[str, Ranking], qrels: Mapping[str, Mapping[str, int]],
             ndcg_k: Sequence[int] = (10,), recall_k: Sequence[int] = (100,)) -> dict[str, float]:
    """Mean metrics of a run ``{query id: ranking}`` against BEIR qrels ``{query id: {doc id: grade}}``.

    Queries without a relevant document are dropped; a judged query missing from ``run`` scores 0.
    Returns ``{"ndcg@10": .., "recall@100": .., "mrr": .., "n_queries": ..}``.
    """
    ids = [q for q, grades in qrels.items() if any(g > 0 for g in grades.values())]
    if not ids:
        raise InvalidInputError("no query in qrels has a relevant document")
    ranked = [list(run.get(q, ())) for q in ids]
    relevant = [qrels[q] for q in ids]
    out: dict[str, float] = {}
    for k in ndcg_k:
        out[f"ndcg@{k}"] = float(ndcg_at_k(ranked, relevant, k).mean())
    for k in recall_k:
        out[f"recall@{k}"] = float(recall_at_k(ranked, relevant, k).mean())
    out["mrr"] = float(mrr(ranked, relevant).mean())
    out["n_queries"] = float(len(ids))
    return out


__all__ = ["ndcg_at_k", "recall_at_k", "mrr", "evaluate", "relevance_matrix"]
