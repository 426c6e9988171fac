"""The :class:`Retriever` base: validated, ledger-accounted retrieval with sync, batch and async parity.

Subclasses write two methods, :meth:`Retriever._add_documents` and :meth:`Retriever._retrieve_batch`; the
public methods validate their inputs, time the work and record it in the ambient ledger (stage
``"retrieval"`` for queries, ``"indexing"`` for building the index).

Example:
    >>> from rag_routing.retrieval import BM25Retriever
    >>> r = BM25Retriever().add_documents(["the cat sat on the mat", "dogs chase cats", "stock markets fell"])
    >>> [hit.id for hit in r.retrieve("cat on a mat", k=2)]
    ['0']
    >>> import asyncio
    >>> [hit.id for hit in asyncio.run(r.aretrieve("stock markets", k=1))]
    ['2']
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from rag_routing.errors import InvalidInputError
from rag_routing.retrieval.accounting import STAGE_INDEXING, STAGE_RETRIEVAL, record_local
from rag_routing.retrieval.beir import load_corpus
from rag_routing.retrieval.documents import Document, ScoredDocument, as_documents

R = TypeVar("R", bound="Retriever")


def check_k(k: Any) -> int:
    """``k`` as an int >= 1, else :class:`InvalidInputError`."""
    if isinstance(k, bool) or not hasattr(type(k), "__index__") or int(k) < 1:
        raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def check_queries(queries: Sequence[str]) -> list[str]:
    """A non-empty list of non-blank query strings, else :class:`InvalidInputError`."""
    if isinstance(queries, str):
        raise InvalidInputError("retrieve_batch takes a list of queries; use retrieve(query) for one")
    out = list(queries)
    if not out:
        raise InvalidInputError("retrieve_batch needs at least one query")
    for i, q in enumerate(out):
        if not isinstance(q, str):
            raise InvalidInputError(f"query {i} is {type(q).__name__}, expected str")
        if not q.strip():
            raise InvalidInputError(f"query {i} is empty; pass the text to search for")
    return out


class Retriever(ABC):
    """Finds the ``k`` documents of its corpus that best match a query.

    Attributes:
        name: names the retriever in results (``ScoredDocument.retriever``), fusion and the ledger.
    """

    default_name = "retriever"
    ledger_model = "retriever"

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
        self.name = name or self.default_name
        self._docs: list[Document] = []
        self._ids: dict[str, int] = {}
        self._lock = threading.RLock()

    # -- corpus ------------------------------------------------------------------------------------------
    @property
    def documents(self) -> list[Document]:
        """The indexed documents, in insertion order (a copy)."""
        return list(self._docs)

    def __len__(self) -> int:
        return len(self._docs)

    def add_documents(self: R, documents: Iterable[Document | str | Mapping[str, Any]]) -> R:
        """Index ``documents`` (:class:`Document`, BEIR dicts or strings); returns ``self`` for chaining.

        Ids must be unique across everything the retriever holds. Time (and, for dense retrievers, the
        embedded tokens) is recorded in the ambient ledger under stage ``"indexing"``.
        """
        docs = as_documents(documents)
        if not docs:
            raise InvalidInputError("add_documents needs at least one document")
        with self._lock:
            self._check_new_ids(docs)
        start = time.perf_counter()
        prepared = self._prepare_documents(docs)  # the slow part (embedding) runs outside the lock
        with self._lock:
            self._check_new_ids(docs)  # again: another thread may have added them meanwhile
            self._add_documents(docs, prepared)
            offset = len(self._docs)
            self._docs.extend(docs)
            self._ids.update((doc.id, offset + i) for i, doc in enumerate(docs))
        seconds = time.perf_counter() - start
        self._account_indexing(docs, seconds)
        return self

    @classmethod
    def from_jsonl(cls: type[R], path: str | os.PathLike[str], **kwargs: Any) -> R:
        """A retriever (built with ``kwargs``) holding every document of a BEIR ``corpus.jsonl``."""
        return cls(**kwargs).add_documents(load_corpus(path))

    # -- retrieval ----------------------------------------------------------------------------------------
    def retrieve(self, query: str, k: int = 10) -> list[ScoredDocument]:
        """The ``k`` best documents for ``query``, best first (fewer if the corpus or the matches run out)."""
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a str, got {type(query).__name__}")
        return self.retrieve_batch([query], k)[0]

    def retrieve_batch(self, queries: Sequence[str], k: int = 10) -> list[list[ScoredDocument]]:
        """:meth:`retrieve` for many queries at once (one vectorised search, one ledger entry)."""
        queries = check_queries(queries)
        k = check_k(k)
        self._check_not_empty()
        results, seconds = self._run(queries, k)
        self._account_retrieval(queries, k, seconds)
        return results

    async def aretrieve(self, query: str, k: int = 10) -> list[ScoredDocument]:
        """Async :meth:`retrieve`, run in a worker thread that inherits the caller's context (its ledger)."""
        return await asyncio.to_thread(self.retrieve, query, k)

    async def aretrieve_batch(self, queries: Sequence[str], k: int = 10) -> list[list[ScoredDocument]]:
        """Async :meth:`retrieve_batch` (worker thread, caller's context)."""
        return await asyncio.to_thread(self.retrieve_batch, queries, k)

    # -- for subclasses -----------------------------------------------------------------------------------
    def _prepare_documents(self, documents: list[Document]) -> Any:
        """Slow, lock-free work before indexing (embedding, tokenising); passed to :meth:`_add_documents`."""
        return None

    @abstractmethod
    def _add_documents(self, documents: list[Document], prepared: Any) -> None:
        """Index ``documents`` (validated, ids unique) under the retriever's lock."""

    @abstractmethod
    def _retrieve_batch(self, queries: list[str], k: int) -> list[list[ScoredDocument]]:
        """Search (queries validated, ``k >= 1``, corpus not empty)."""

    def _run(self, queries: list[str], k: int) -> tuple[list[list[ScoredDocument]], float]:
        """The results and the seconds to charge to this retriever (all of them, by default)."""
        start = time.perf_counter()
        results = self._retrieve_batch(queries, k)
        return results, time.perf_counter() - start

    def _check_new_ids(self, documents: list[Document]) -> None:
        seen = set(self._ids)
        for doc in documents:
            if doc.id in seen:
                raise InvalidInputError(f"duplicate document id {doc.id!r}; ids must be unique")
            seen.add(doc.id)

    def _check_not_empty(self) -> None:
        if not self._docs:
            raise InvalidInputError(f"retriever {self.name!r} holds no documents; call add_documents(...) first")

    def _hits(self, rows: Sequence[int], scores: Sequence[float]) -> list[ScoredDocument]:
        return [ScoredDocument(self._docs[int(i)], float(s), rank, self.name)
                for rank, (i, s) in enumerate(zip(rows, scores), 1)]

    def _account_retrieval(self, queries: list[str], k: int, seconds: float) -> None:
        record_local(STAGE_RETRIEVAL, self.name, self.ledger_model, seconds,
                     metadata={"n_queries": len(queries), "k": k})

    def _account_indexing(self, documents: list[Document], seconds: float) -> None:
        record_local(STAGE_INDEXING, self.name, self.ledger_model, seconds,
                     metadata={"n_documents": len(documents)})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, documents={len(self)})"


__all__ = ["Retriever", "check_k", "check_queries"]
