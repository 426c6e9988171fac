"""The on-disk embedding cache: vectors in SQLite, keyed by model name and the SHA-256 of the text.

A second run of a benchmark reads its embeddings back instead of recomputing them, and a server reuses the
vector of a query it has seen. It is a cache, so it is written for speed and may lose, never corrupt:

* WAL journal with ``synchronous=NORMAL``: each ``put_many`` is one atomic transaction, but a commit does not
  wait for an fsync (a power cut can drop the last commits; the file stays consistent). ``FULL`` fsynced
  every commit while holding the cache lock, in ``serve`` once per new query (~0.2 ms per put on this
  machine's disk against ~0.04 ms; far more on a slow or network disk).
* A cache write that finds the file locked by another process for the whole ``timeout`` (several processes,
  e.g. ``serve`` replicas, sharing one cache file) is skipped with a warning: the caller still gets its
  vectors, only the caching is lost. A file that is not a usable database is a
  :class:`~rag_routing.errors.CorruptStateError`.

Example:
    >>> import tempfile, os, numpy as np
    >>> cache = EmbeddingCache(os.path.join(tempfile.mkdtemp(), "vectors.sqlite"))
    >>> cache.put_many("my-model", ["hello"], np.ones((1, 3), dtype=np.float32))
    >>> cache.get_many("my-model", ["hello", "unseen"])[0].tolist(), cache.get_many("my-model", ["unseen"])
    ([1.0, 1.0, 1.0], [None])
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag_routing.errors import CorruptStateError, StoreBusyError
from rag_routing.sqlite_connection import sqlite_errors

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$RAG_ROUTING_CACHE`` or ``~/.cache/rag_routing``."""
    return Path(os.environ.get("RAG_ROUTING_CACHE", Path.home() / ".cache" / "rag_routing"))


class EmbeddingCache:
    """Vectors on disk (SQLite), keyed by model name and the SHA-256 of the text.

    Args:
        path: the SQLite file (default ``<default_cache_dir()>/embeddings.sqlite``).
        timeout: seconds to wait for another process's write lock before a write is skipped.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 30.0):
        self.path = Path(path) if path is not None else default_cache_dir() / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.skipped_writes = 0  # puts dropped because the file stayed locked (see the module docstring)
        try:
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, timeout=timeout)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, dim INTEGER, vec BLOB, "
                "PRIMARY KEY (model, key))"
            )
            self._conn.commit()
        except sqlite3.DatabaseError as exc:
            raise CorruptStateError(f"embedding cache {self.path} is unreadable ({exc}); delete it") from exc

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def get_many(self, model: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """The cached vector of each text under ``model``, ``None`` where there is none."""
        keys = [self.key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        try:
            with self._lock, sqlite_errors(str(self.path), "embedding cache"):
                for start in range(0, len(unique), 500):
                    chunk = unique[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = self._conn.execute(
                        f"SELECT key, dim, vec FROM vectors WHERE model=? AND key IN ({marks})", [model, *chunk]
                    ).fetchall()
                    for key, dim, blob in rows:
                        vec = np.frombuffer(blob, dtype=np.float32)
                        if vec.size != dim:
                            raise CorruptStateError(f"embedding cache {self.path} holds a truncated vector; "
                                                    "delete it")
                        found[key] = vec
        except StoreBusyError as exc:  # a WAL reader is only blocked while a writer recovers the file: recompute
            logger.warning("embedding cache %s is locked; embedding without it (%s)", self.path, exc)
            return [None] * len(keys)
        return [found.get(k) for k in keys]

    def put_many(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store each text's vector under ``model`` in one transaction (skipped, with a warning, if locked)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = [(model, self.key(t), int(v.size), v.tobytes()) for t, v in zip(texts, vectors)]
        try:
            with self._lock, sqlite_errors(str(self.path), "embedding cache"), self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)", rows)
        except StoreBusyError as exc:
            self.skipped_writes += 1
            logger.warning("embedding cache %s stayed locked; %d vectors not cached (%s)", self.path, len(rows), exc)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _cached_transform(cache: EmbeddingCache | None, key: str, texts: list[str],
                      encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """``encode(texts)``, reading hits from the batch memo (:mod:`rag_routing.feature_prefetch`) and ``cache``
    (under model ``key``) and encoding the distinct misses in one call."""
    from rag_routing.feature_prefetch import active_memo

    memo = active_memo()
    found: list[np.ndarray | None] = [None] * len(texts) if memo is None else [memo.get((key, t)) for t in texts]
    if cache is not None and any(v is None for v in found):
        stored = cache.get_many(key, [t for t, v in zip(texts, found) if v is None])
        fill = iter(stored)
        found = [v if v is not None else next(fill) for v in found]
    missing = list(dict.fromkeys(t for t, v in zip(texts, found) if v is None))
    if missing:
        fresh = np.asarray(encode(missing), dtype=np.float32)
        if cache is not None:
            cache.put_many(key, missing, fresh)
        lookup = dict(zip(missing, fresh))
        found = [v if v is not None else lookup[t] for t, v in zip(texts, found)]
    if memo is not None:
        memo.update(((key, t), v) for t, v in zip(texts, found))
    return np.vstack(found).astype(np.float32)


__all__ = ["EmbeddingCache", "default_cache_dir"]
