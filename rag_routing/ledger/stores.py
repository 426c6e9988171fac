"""Where ledger entries live: in memory, or in an embedded SQLite file that survives crashes.

:class:`SQLiteStore` commits every entry in its own transaction in WAL mode, ``synchronous=FULL`` by default,
so an entry is on disk once :meth:`~SQLiteStore.append` returns: a process killed mid-write loses at most the
entry being written, never one already committed, and the file stays consistent. ``synchronous="NORMAL"``
is several times faster and still safe against a *process* crash, but the last commits may be lost if the
*machine* loses power. One connection is shared behind a lock (``check_same_thread=False``); several
processes may append to one file (SQLite's locking, ``timeout`` seconds of waiting).

An unreadable or foreign file raises :class:`~rag_routing.errors.CorruptStateError`; a file locked by another
writer for the whole ``timeout`` raises the retryable :class:`~rag_routing.errors.StoreBusyError` (nothing was
written). Every store writes an ``entry_id`` once: the same entry appended again (a retry) is a no-op, another
entry under a stored id raises :class:`~rag_routing.errors.DuplicateEntryError` (never a silent drop). Budget
state stores are in :mod:`rag_routing.ledger.budget_stores`.

Example:
    >>> import os, tempfile
    >>> from rag_routing.ledger import CostLedger
    >>> path = os.path.join(tempfile.mkdtemp(), "ledger.db")
    >>> ledger = CostLedger(store=SQLiteStore(path))
    >>> _ = ledger.record("generation", "gpt-4o", cost_usd=0.5)
    >>> CostLedger.from_store(SQLiteStore(path)).totals()["cost_usd"]
    0.5
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from rag_routing.errors import CorruptStateError, DuplicateEntryError, InvalidInputError
from rag_routing.ledger.entry import ENTRY_FIELDS, LedgerEntry
from rag_routing.sqlite_connection import busy_error, is_busy, sqlite_errors

SCHEMA_VERSION = 1
_COLUMNS = ENTRY_FIELDS  # one column per entry field, same names
_CREATE = """
CREATE TABLE IF NOT EXISTS ledger_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    component TEXT NOT NULL,
    model TEXT,
    input_tokens INTEGER NOT NULL CHECK (input_tokens >= 0),
    output_tokens INTEGER NOT NULL CHECK (output_tokens >= 0),
    cost_usd REAL NOT NULL CHECK (cost_usd >= 0),
    seconds REAL NOT NULL CHECK (seconds >= 0),
    energy_kwh REAL,
    emissions_gco2e REAL,
    decision_id TEXT,
    timestamp REAL NOT NULL,
    principal TEXT,
    metadata TEXT NOT NULL,
    estimated INTEGER NOT NULL,
    priced INTEGER NOT NULL,
    UNIQUE (namespace, entry_id)
);
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO ledger_meta VALUES ('schema_version', '1');
"""
_INSERT = (
    f"INSERT INTO ledger_entries (namespace, {', '.join(_COLUMNS)}) "
    f"VALUES (?, {', '.join('?' for _ in _COLUMNS)})"
)


@runtime_checkable
class LedgerStore(Protocol):
    """Somewhere to append entries and read them back."""

    def append(self, entry: LedgerEntry) -> None: ...

    def load_entries(self) -> list[LedgerEntry]: ...


def metadata_json(metadata: object) -> str:
    """An entry's metadata as JSON; metadata nested too deeply to write is an InvalidInputError."""
    try:
        return json.dumps(dict(metadata), default=str)  # type: ignore[call-overload]
    except (RecursionError, ValueError) as exc:  # ValueError: a circular reference
        raise InvalidInputError(f"ledger entry metadata cannot be stored as JSON ({type(exc).__name__}): keep it "
                                f"flat and acyclic") from exc


def duplicate_error(entry_id: str, where: str) -> DuplicateEntryError:
    return DuplicateEntryError(
        f"ledger entry id {entry_id!r} is already stored in {where} with other content; the entry was not "
        f"written. Give each entry a unique entry_id (CostLedger does), or load the existing entries first")


class MemoryStore:
    """Entries in a list, behind a lock (useful to share entries between ledgers in tests)."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._by_id: dict[str, LedgerEntry] = {}
        self._lock = threading.Lock()

    def append(self, entry: LedgerEntry) -> None:
        """Keep ``entry``; the same entry again is a no-op, another one under its id a DuplicateEntryError."""
        with self._lock:
            stored = self._by_id.get(entry.entry_id)
            if stored is not None:
                if stored == entry:
                    return
                raise duplicate_error(entry.entry_id, "a MemoryStore")
            self._by_id[entry.entry_id] = entry
            self._entries.append(entry)

    def load_entries(self) -> list[LedgerEntry]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Nothing to release; here for symmetry with :class:`SQLiteStore`."""


class SQLiteStore:
    """Entries in a SQLite file; each :meth:`append` is its own durable transaction.

    Args:
        path: the database file (created if missing).
        namespace: entries are tagged with it and :meth:`load_entries` reads only its own, so many ledgers
            (sessions, services) can share one file.
        synchronous: ``"FULL"`` (durable against power loss) or ``"NORMAL"`` (against process crashes).
        timeout: seconds to wait for another process's write lock.
        check: run ``PRAGMA quick_check`` when opening (O(size) - turn off for very large files).
    """

    def __init__(self, path: str | Path, *, namespace: str = "default", synchronous: str = "FULL",
                 timeout: float = 30.0, check: bool = True):
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise InvalidInputError(f"synchronous must be 'FULL', 'NORMAL' or 'EXTRA', got {synchronous!r}")
        self.path = str(path)
        self.namespace = namespace
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise CorruptStateError(f"cannot open ledger store {self.path!r}: {exc}") from exc
        try:
            self._open(synchronous.upper(), check)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if is_busy(exc):  # locked by another writer: retryable, and not a damaged file
                raise busy_error(self.path, "ledger store", exc) from exc
            raise CorruptStateError(
                f"ledger store {self.path!r} is not a readable ledger database ({exc}); "
                f"restore it from a backup or move it aside to start a new one"
            ) from exc

    def _open(self, synchronous: str, check: bool) -> None:
        conn = self._conn
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        if check:
            result = conn.execute("PRAGMA quick_check").fetchone()
            if result is None or result[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {result}")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "ledger_meta" in tables and "ledger_entries" not in tables:
            # An existing ledger lost its entries table: never re-create it empty as if nothing was spent.
            raise sqlite3.DatabaseError("ledger_meta exists without ledger_entries (tampered or truncated ledger)")
        conn.executescript(_CREATE)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(ledger_entries)")}
        missing = set(_COLUMNS) - columns
        if missing:
            raise sqlite3.DatabaseError(f"table ledger_entries lacks columns {sorted(missing)}")
        version = conn.execute("SELECT value FROM ledger_meta WHERE key = 'schema_version'").fetchone()
        if version is None or version[0] != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"unsupported ledger schema version {version}")

    def append(self, entry: LedgerEntry) -> None:
        """Write one entry in its own transaction.

        The same entry written again (a retry) is a no-op; another entry under a stored ``entry_id`` raises
        :class:`~rag_routing.errors.DuplicateEntryError`; a lock held past ``timeout`` raises
        :class:`~rag_routing.errors.StoreBusyError` (nothing written: retry).
        """
        row = []
        for name in _COLUMNS:
            value = getattr(entry, name)
            if name == "metadata":
                value = metadata_json(value)
            elif name in ("estimated", "priced"):
                value = int(value)
            row.append(value)
        with self._lock:
            try:
                self._conn.execute(_INSERT, (self.namespace, *row))  # autocommit: one transaction
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" not in str(exc):
                    raise CorruptStateError(f"cannot write to ledger store {self.path!r}: {exc}") from exc
                stored = self._stored_row(entry.entry_id)
                if stored != tuple(row):
                    raise duplicate_error(entry.entry_id, f"ledger store {self.path!r}") from exc
            except sqlite3.DatabaseError as exc:
                if is_busy(exc):
                    raise busy_error(self.path, "ledger store", exc) from exc
                raise CorruptStateError(f"cannot write to ledger store {self.path!r}: {exc}") from exc

    def _stored_row(self, entry_id: str) -> tuple | None:
        row = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM ledger_entries WHERE namespace = ? AND entry_id = ?",
            (self.namespace, entry_id)).fetchone()
        return None if row is None else tuple(row)

    def load_entries(self) -> list[LedgerEntry]:
        """Every entry of this namespace, in the order they were committed."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM ledger_entries WHERE namespace = ? ORDER BY seq",
                    (self.namespace,),
                ).fetchall()
            except sqlite3.DatabaseError as exc:
                if is_busy(exc):
                    raise busy_error(self.path, "ledger store", exc) from exc
                raise CorruptStateError(f"cannot read ledger store {self.path!r}: {exc}") from exc
        entries = []
        for row in rows:
            data = dict(zip(_COLUMNS, row))
            try:
                data["metadata"] = json.loads(data["metadata"])
                data["estimated"] = bool(data["estimated"])
                data["priced"] = bool(data["priced"])
                entries.append(LedgerEntry.from_dict(data))
            except (ValueError, TypeError, RecursionError) as exc:  # InvalidInputError is a ValueError
                raise CorruptStateError(f"ledger store {self.path!r} holds an unreadable entry: {exc}") from exc
        return entries

    def namespaces(self) -> list[str]:
        with self._lock, sqlite_errors(self.path, "ledger store"):
            return [r[0] for r in self._conn.execute("SELECT DISTINCT namespace FROM ledger_entries ORDER BY 1")]

    def __len__(self) -> int:
        with self._lock, sqlite_errors(self.path, "ledger store"):
            return self._conn.execute(
                "SELECT COUNT(*) FROM ledger_entries WHERE namespace = ?", (self.namespace,)
            ).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, namespace={self.namespace!r})"


__all__ = ["LedgerStore", "MemoryStore", "SQLiteStore"]
