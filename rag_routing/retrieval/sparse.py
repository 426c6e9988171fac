"""BM25 keyword retrieval (Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25 and
Beyond"), Okapi variant with rank-bm25's constants.

Two interchangeable backends give the same scores:

- ``"sparse"`` (default): every document-term weight precomputed in a scipy sparse matrix, a batch of queries
  scored by one matrix product (:mod:`rag_routing.retrieval.bm25_scoring`). About 100x faster than the
  reference on CISI (see ``benchmarks/retrievers.py``).
- ``"rank_bm25"``: rank-bm25's ``BM25Okapi.get_scores``, one query at a time: the reference implementation.

Example:
    >>> r = BM25Retriever().add_documents([
    ...     {"_id": "a", "title": "Cats", "text": "The cat sat on the mat."},
    ...     {"_id": "b", "title": "Dogs", "text": "Dogs chase cats in the park."},
    ...     {"_id": "c", "title": "Markets", "text": "Stock markets fell sharply."},
    ... ])
    >>> [(hit.id, hit.rank) for hit in r.retrieve("where did the cat sit?", k=3)]
    [('a', 1)]
    >>> [[hit.id for hit in hits] for hits in r.retrieve_batch(["dogs", "stock markets"], k=2)]
    [['b'], ['c']]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError, require
from rag_routing.retrieval.base import Retriever
from rag_routing.retrieval.bm25_scoring import SparseBM25, select_top_k
from rag_routing.retrieval.documents import Document, ScoredDocument
from rag_routing.retrieval.tokenizer import WordTokenizer

BACKENDS = ("sparse", "rank_bm25")


class BM25Retriever(Retriever):
    """Okapi BM25 over a word tokenizer.

    Args:
        tokenizer: text -> list of words (default :class:`WordTokenizer`: lowercase Unicode words without
            English stopwords).
        k1, b: BM25 term-frequency saturation and length normalisation (1.5, 0.75 as in rank-bm25).
        epsilon: idf floor for words in over half the documents, as a fraction of the mean idf.
        backend: ``"sparse"`` (fast, batched) or ``"rank_bm25"`` (the reference implementation).
        name: name in results and in the ledger (default ``"bm25"``).

    The index is rebuilt lazily (on the next query) after :meth:`add_documents`, since every idf changes.
    """

    default_name = "bm25"
    ledger_model = "bm25"

    def __init__(self, tokenizer: Callable[[str], list[str]] | None = None, k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25, backend: str = "sparse", name: str | None = None):
        super().__init__(name)
        if backend not in BACKENDS:
            raise InvalidInputError(f"unknown BM25 backend {backend!r}; choose one of {BACKENDS}")
        if not (k1 >= 0 and 0 <= b <= 1 and epsilon >= 0):
            raise InvalidInputError(f"BM25 needs k1 >= 0, 0 <= b <= 1, epsilon >= 0; got {k1=}, {b=}, {epsilon=}")
        if tokenizer is not None and not callable(tokenizer):
            raise InvalidInputError("tokenizer must be a callable text -> list of words")
        self.tokenizer: Callable[[str], list[str]] = tokenizer or WordTokenizer()
        self.k1, self.b, self.epsilon, self.backend = float(k1), float(b), float(epsilon), backend
        self._tokens: list[list[str]] = []
        self._index: Any = None

    def _prepare_documents(self, documents: list[Document]) -> list[list[str]]:
        return [list(self.tokenizer(doc.content)) for doc in documents]

    def _add_documents(self, documents: list[Document], prepared: list[list[str]]) -> None:
        self._tokens.extend(prepared)
        self._index = None

    def _built_index(self) -> Any:
        with self._lock:  # the same lock as add_documents: an index never misses a document added meanwhile
            if self._index is None:
                builder = SparseBM25 if self.backend == "sparse" else _RankBM25
                self._index = builder(self._tokens, self.k1, self.b, self.epsilon)
            return self._index

    def _retrieve_batch(self, queries: list[str], k: int) -> list[list[ScoredDocument]]:
        index = self._built_index()
        tokenised = [list(self.tokenizer(q)) for q in queries]
        return [self._hits(rows, scores) for rows, scores in index.top_k(tokenised, k)]

    def get_scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query``, in insertion order (for tests and analysis)."""
        self._check_not_empty()
        return np.asarray(self._built_index().scores([list(self.tokenizer(query))])[0])


class _RankBM25:
    """rank-bm25's ``BM25Okapi``: the reference scores, one query at a time."""

    def __init__(self, corpus_tokens: Sequence[Sequence[str]], k1: float, b: float, epsilon: float):
        self.n_docs = len(corpus_tokens)
        self.empty = not any(corpus_tokens)  # BM25Okapi divides by the vocabulary size
        if not self.empty:
            rank_bm25 = require("rank_bm25", "retrieval")
            self.model = rank_bm25.BM25Okapi([list(t) for t in corpus_tokens], k1=k1, b=b, epsilon=epsilon)

    def scores(self, queries: Sequence[Sequence[str]]) -> np.ndarray:
        if self.empty:
            return np.zeros((len(queries), self.n_docs))
        return np.vstack([self.model.get_scores(list(q)) for q in queries])

    def top_k(self, queries: Sequence[Sequence[str]], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for words, scores in zip(queries, self.scores(queries)):
            wanted = set(words)
            matched = np.array([] if self.empty else
                               [i for i, freqs in enumerate(self.model.doc_freqs) if not wanted.isdisjoint(freqs)],
                               dtype=np.int64)
            out.append(select_top_k(matched, scores[matched], k))
        return out


__all__ = ["BM25Retriever", "BACKENDS"]
