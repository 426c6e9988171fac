"""Open a SQLite file shared by threads and processes: WAL journal, a chosen ``synchronous`` level, autocommit
(callers take ``BEGIN IMMEDIATE`` themselves) and the caller's schema; a file that is not a usable database is a
:class:`~rag_routing.errors.CorruptStateError` naming what it was meant to be.
"""

from __future__ import annotations

import sqlite3

from rag_routing.errors import CorruptStateError


def connect_shared(path: str, *, schema: str, what: str, synchronous: str = "FULL",
                   timeout: float = 30.0) -> sqlite3.Connection:
    """A connection to ``path`` (created if missing) with ``schema`` applied; ``what`` names it in errors."""
    try:
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(schema)
    except sqlite3.DatabaseError as exc:
        raise CorruptStateError(f"{what} {path!r} is not a usable SQLite database: {exc}") from exc
    return conn


__all__ = ["connect_shared"]
