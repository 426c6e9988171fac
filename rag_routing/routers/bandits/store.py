"""Where a bandit's learned state lives when several processes share it: memory or SQLite (Redis later).

A :class:`BanditStateStore` keeps named sets of numeric arrays (one bandit's state: ``A^-1``, ``b``,
Q-values, automaton probabilities, ...) and updates them atomically: :meth:`~BanditStateStore.update` reads
the current arrays, applies a function and writes the result as one step, so two processes giving feedback at
the same time never lose an update. Arrays travel as ``.npz`` bytes read with ``allow_pickle=False``.

A Redis store implements the same four methods: ``get``/``put``/``delete`` on a key holding
:func:`encode_arrays` bytes, and ``update`` as ``WATCH key; GET; fn; MULTI; SET; EXEC`` retried on conflict.
``fn`` may therefore run more than once and must not have side effects.

Example:
    >>> import numpy as np
    >>> store = MemoryBanditStore()
    >>> store.put("bandit:demo", {"counts": np.zeros(2)})
    >>> def add_one(state):
    ...     state["counts"][1] += 1
    ...     return state
    >>> store.update("bandit:demo", add_one)["counts"].tolist()
    [0.0, 1.0]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from rag_routing.array_blobs import Arrays, decode_arrays, encode_arrays
from rag_routing.sqlite_connection import connect_shared, sqlite_errors

UpdateFn = Callable[[Arrays | None], Mapping[str, np.ndarray]]


def _copy(arrays: Mapping[str, np.ndarray]) -> Arrays:
    return {k: np.array(v, copy=True) for k, v in arrays.items()}


@runtime_checkable
class BanditStateStore(Protocol):
    """Named sets of arrays with atomic read-modify-write (see module docstring)."""

    def get(self, key: str) -> Arrays | None:
        """A private copy of the arrays under ``key`` (``None`` if there are none)."""

    def put(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Replace the arrays under ``key``."""

    def update(self, key: str, fn: UpdateFn) -> Arrays:
        """Atomically replace the arrays under ``key`` by ``fn(current)`` (``current`` is ``None`` when the key
        is empty, and a private copy otherwise); returns what was written."""

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error if it is absent)."""


class MemoryBanditStore:
    """Bandit state in this process, behind one lock; share one instance between routers to share state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, Arrays] = {}

    def get(self, key: str) -> Arrays | None:
        with self._lock:
            found = self._data.get(key)
            return None if found is None else _copy(found)

    def put(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        with self._lock:
            self._data[key] = _copy(arrays)

    def update(self, key: str, fn: UpdateFn) -> Arrays:
        with self._lock:
            current = self._data.get(key)
            result = _copy(fn(None if current is None else _copy(current)))
            self._data[key] = result
            return _copy(result)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._data)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS bandit_state (
    key TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    version INTEGER NOT NULL,
    updated REAL NOT NULL
)
"""


class SQLiteBanditStore:
    """Bandit state in a SQLite file shared by threads and processes.

    :meth:`update` holds SQLite's write lock (``BEGIN IMMEDIATE``) from the read to the write, so concurrent
    updates from several processes serialise instead of overwriting each other. Each row carries a version
    number that grows with every write (:meth:`version`).

    Args:
        path: the database file (created if missing).
        timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = connect_shared(self.path, schema=_SCHEMA, what="bandit store", synchronous="NORMAL", timeout=timeout)

    def _read(self, key: str) -> tuple[Arrays | None, int]:
        row = self._conn.execute("SELECT data, version FROM bandit_state WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None, 0
        return decode_arrays(bytes(row[0]), f"{self.path}[{key}]"), int(row[1])

    def _write(self, key: str, arrays: Mapping[str, np.ndarray], version: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO bandit_state VALUES (?, ?, ?, ?)",
                           (key, encode_arrays(arrays), version, time.time()))

    def get(self, key: str) -> Arrays | None:
        with self._lock, sqlite_errors(self.path, "bandit store"):
            return self._read(key)[0]

    def version(self, key: str) -> int:
        """Number of writes to ``key`` so far (0 when absent): a cheap way to tell whether it changed."""
        with self._lock, sqlite_errors(self.path, "bandit store"):
            row = self._conn.execute("SELECT version FROM bandit_state WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def put(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        self.update(key, lambda _current: arrays)

    def update(self, key: str, fn: UpdateFn) -> Arrays:
        """Replace the arrays under ``key`` by ``fn(current)`` atomically; a lock held past ``timeout`` raises
        the retryable :class:`~rag_routing.errors.StoreBusyError` (nothing written)."""
        with self._lock, sqlite_errors(self.path, "bandit store"):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                current, version = self._read(key)
                result = _copy(fn(current))
                self._write(key, result, version + 1)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def delete(self, key: str) -> None:
        with self._lock, sqlite_errors(self.path, "bandit store"):
            self._conn.execute("DELETE FROM bandit_state WHERE key = ?", (key,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


__all__ = ["BanditStateStore", "MemoryBanditStore", "SQLiteBanditStore", "encode_arrays", "decode_arrays"]
