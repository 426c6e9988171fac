"""Open a SQLite file shared by threads and processes: WAL journal, a chosen ``synchronous`` level, autocommit
(callers take ``BEGIN IMMEDIATE`` themselves) and the caller's schema.

Two kinds of failure are told apart, here and in :func:`sqlite_errors` around every later operation:

* a file locked by another writer for the whole ``timeout`` ("database is locked" / "busy") is a
  :class:`~rag_routing.errors.StoreBusyError`: nothing was written and the operation can be retried;
* a file that is not a usable database is a :class:`~rag_routing.errors.CorruptStateError` naming what it was
  meant to be.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.db")
    >>> conn = connect_shared(path, schema="CREATE TABLE IF NOT EXISTS t (x INTEGER)", what="demo store")
    >>> with sqlite_errors(path, "demo store"):
    ...     _ = conn.execute("INSERT INTO t VALUES (1)")
    >>> conn.execute("SELECT COUNT(*) FROM t").fetchone()[0]
    1
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from rag_routing.errors import CorruptStateError, StoreBusyError


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "another connection holds the lock" (retryable), not a broken file."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def busy_error(path: str, what: str, exc: BaseException) -> StoreBusyError:
    """The typed, retryable error for a store that stayed locked."""
    return StoreBusyError(f"{what} {path!r} is locked by another writer ({exc}); nothing was written: retry, "
                          f"or open it with a longer timeout")


@contextmanager
def sqlite_errors(path: str, what: str) -> Iterator[None]:
    """Turn SQLite errors raised inside the block into typed ones (busy -> StoreBusyError, else CorruptStateError)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if is_busy(exc):
            raise busy_error(path, what, exc) from exc
        raise CorruptStateError(f"{what} {path!r} failed: {exc}") from exc


def connect_shared(path: str, *, schema: str, what: str, synchronous: str = "FULL",
                   timeout: float = 30.0) -> sqlite3.Connection:
    """A connection to ``path`` (created if missing) with ``schema`` (one or more statements) applied;
    ``what`` names it in errors."""
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.executescript(schema)
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        if is_busy(exc):  # a busy file is not a broken one: never "restore it from a backup"
            raise busy_error(path, what, exc) from exc
        raise CorruptStateError(f"{what} {path!r} is not a usable SQLite database: {exc}") from exc
    return conn


__all__ = ["connect_shared", "sqlite_errors", "is_busy", "busy_error"]
