"""A local spool for writes that could not reach a shared store: what ran is recorded even while Redis is down.

When a Redis store stays unreachable past its retry window, a ledger append or a budget settlement (a call
that *already ran*) is written to a :class:`Spool` instead — a SQLite file on local disk, one durable
transaction per record (``synchronous=FULL``) — and replayed, oldest first, before the store's next write once
Redis answers again (or by ``replay_spool()``). Replays are idempotent: an entry carries its id and a
settlement its operation id, so a record replayed twice (a crash between applying it and deleting it, two
processes sharing one spool) is applied once. A process killed with records in its spool replays them when a
store opens the same spool file again. Reservations are *not* spooled: a call refused for want of a budget
never runs.

Example:
    >>> import os, tempfile
    >>> spool = Spool(os.path.join(tempfile.mkdtemp(), "spool.db"))
    >>> spool.push("append", {"entry_id": "a:1"}); len(spool)
    1
    >>> seen = []
    >>> spool.replay(lambda kind, record: seen.append((kind, record["entry_id"])))
    1
    >>> seen, len(spool)
    ([('append', 'a:1')], 0)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag_routing.sqlite_connection import connect_shared, sqlite_errors

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    record TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class Spool:
    """Records waiting for a shared store, in a local SQLite file (safe across threads and processes)."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = connect_shared(self.path, schema=_SCHEMA, what="spool", synchronous="FULL", timeout=timeout)

    def push(self, kind: str, record: dict[str, Any]) -> None:
        """Append one record durably (on disk when this returns)."""
        with self._lock, sqlite_errors(self.path, "spool"):
            self._conn.execute("INSERT INTO spool (kind, record, created) VALUES (?, ?, ?)",
                               (kind, json.dumps(record, separators=(",", ":")), time.time()))

    def __len__(self) -> int:
        with self._lock, sqlite_errors(self.path, "spool"):
            return int(self._conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def replay(self, apply: Callable[[str, dict[str, Any]], None]) -> int:
        """Apply every record, oldest first, deleting each once applied; stops at (and raises) the first
        failure, keeping that record and the ones after it. Returns how many were applied."""
        done = 0
        while True:
            with self._lock, sqlite_errors(self.path, "spool"):
                row = self._conn.execute("SELECT seq, kind, record FROM spool ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return done
            apply(row[1], json.loads(row[2]))
            with self._lock, sqlite_errors(self.path, "spool"):
                self._conn.execute("DELETE FROM spool WHERE seq = ?", (row[0],))
            done += 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"Spool({self.path!r})"


def default_spool_path(*parts: str) -> Path:
    """``$RAG_ROUTING_CACHE/spool/<digest of parts>.db`` (``~/.cache/rag_routing`` by default): one file per
    store identity (kind, server without credentials, prefix, namespace), so a restarted process finds it."""
    root = Path(os.environ.get("RAG_ROUTING_CACHE", Path.home() / ".cache" / "rag_routing"))
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return root / "spool" / f"{digest}.db"


__all__ = ["Spool", "default_spool_path"]
