"""Ledgers and budgets in Redis, shared by many processes and machines.

* :class:`RedisLedgerStore` appends entries to a Redis list. A Lua script records the entry's ``entry_id``
  (with a digest of its content) and pushes the entry in one atomic step, so an append retried after a lost
  reply (a connection error, a Redis restart) is written exactly once, and another entry under a stored id
  raises :class:`~rag_routing.errors.DuplicateEntryError` instead of being dropped.
* :class:`~rag_routing.ledger.redis_budget_store.RedisBudgetStore` (re-exported here) holds budgets with
  leased reservations.

The contract on a Redis restart or outage
-----------------------------------------
* With AOF and ``appendfsync always`` (``redis-server --appendonly yes --appendfsync always``) a write is on
  disk before Redis replies, so **every append, reservation and settlement that returned is kept**, and
  one whose reply was lost is either kept or not applied, never applied twice (its retry finds its id).
  With ``appendfsync everysec`` about one second of acknowledged writes can be lost on a *machine* crash.
* A server **without AOF is refused** (:class:`~rag_routing.errors.InvalidInputError`) unless
  ``allow_non_persistent=True``; and a state that disappears under a running store (a restart without
  persistence, a ``FLUSHALL``) raises :class:`~rag_routing.errors.StateLostError` at the next operation
  instead of silently restarting from zero (the epoch check of :mod:`rag_routing.ledger.redis_scripts`).
  A process that starts *after* the loss cannot know the lost amounts: check the server first.
* While Redis is down, every command retries with bounded backoff for ``retry_seconds``. Then a reservation
  raises :class:`~rag_routing.ledger.redis_connection.StoreUnavailableError` (the call never runs), while a
  ledger append or a settlement of a call that already ran is **spooled** to a local file and replayed when
  Redis answers (:mod:`rag_routing.ledger.spool`; ``spool=None`` raises instead).
* An operation id lives ``op_ttl`` seconds: a spooled settlement whose first attempt was applied but whose
  reply was lost, replayed more than ``op_ttl`` later, is charged twice (the budget errs on the safe side).

Example (needs a running redis-server with AOF):
    >>> from rag_routing.ledger import Budget, CostLedger
    >>> store = RedisBudgetStore("redis://127.0.0.1:6379/0")                     # doctest: +SKIP
    >>> budget = Budget(max_usd=5.0, scope="principal", principal="team-a", store=store)  # doctest: +SKIP
    >>> ledger = CostLedger(budget=budget, store=RedisLedgerStore("redis://127.0.0.1:6379/0",
    ...                                                           namespace="team-a"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from rag_routing.errors import CorruptStateError, InvalidInputError, StateLostError
from rag_routing.ledger.entry import LedgerEntry
from rag_routing.ledger.redis_base import RedisStoreBase, check_name, text
from rag_routing.ledger.redis_budget_store import RedisBudgetStore
from rag_routing.ledger.redis_connection import StoreUnavailableError
from rag_routing.ledger.redis_scripts import APPEND, EPOCH
from rag_routing.ledger.stores import duplicate_error, metadata_json


class RedisLedgerStore(RedisStoreBase):
    """Ledger entries in a Redis list, appended exactly once per ``entry_id`` (see the module docstring).

    Args:
        url_or_client: a Redis URL or a ``redis.Redis`` client.
        namespace: entries of one namespace are read back together (one ledger per session / service).
        prefix: the key prefix (keys are ``<prefix>:ledger:{<namespace>}:entries``, ``...:ids``, ``...:epoch``).
        retry_seconds: how long a command is retried while Redis is unreachable.
        check_persistence: ask the server whether it persists (and refuse it if not).
        allow_non_persistent: accept a server without AOF (a restart then loses entries).
        spool: where appends wait while Redis is unreachable: ``"auto"`` (a file under the cache folder), a
            path, or ``None`` (raise :class:`StoreUnavailableError` instead).
    """

    def __init__(self, url_or_client: Any = "redis://127.0.0.1:6379/0", *, namespace: str = "default",
                 prefix: str = "rag_routing", retry_seconds: float = 10.0, socket_timeout: float = 5.0,
                 check_persistence: bool = True, allow_non_persistent: bool = False,
                 spool: str | Path | None = "auto"):
        self.namespace = check_name(namespace, "namespace")
        super().__init__(url_or_client, prefix=prefix, retry_seconds=retry_seconds, socket_timeout=socket_timeout,
                         check_persistence=check_persistence, allow_non_persistent=allow_non_persistent,
                         spool=spool, identity=("ledger", namespace))
        base = f"{self.prefix}:ledger:{{{self.namespace}}}"
        self._entries_key, self._ids_key = f"{base}:entries", f"{base}:ids"
        self._digests_key, self._epoch_key = f"{base}:id_digests", f"{base}:epoch"
        self._epoch: str | None = None
        self._acknowledged = False  # the user accepted a lost state: entries spooled before it apply to the new one
        self._append = self.connection.script(APPEND)
        self._epoch_script = self.connection.script(EPOCH)

    def append(self, entry: LedgerEntry) -> None:
        """Write ``entry`` durably (per the server's persistence), or spool it while Redis is unreachable.

        The same entry again is a no-op; another entry under a stored id raises DuplicateEntryError.
        """
        if not isinstance(entry, LedgerEntry):
            raise InvalidInputError(f"append expects a LedgerEntry, got {type(entry).__name__}")
        metadata_json(entry.metadata)  # typed error for metadata too deep (or cyclic) to write
        payload = json.dumps(entry.to_dict(), default=str, separators=(",", ":"))
        self._write_or_spool("append", {"entry_id": entry.entry_id, "payload": payload,
                                        "digest": hashlib.sha256(payload.encode()).hexdigest(),
                                        "epoch": self._epoch or ""})

    def _apply(self, kind: str, record: dict[str, Any]) -> None:
        known = (self._epoch or "") if self._acknowledged else (record.get("epoch") or self._epoch or "")
        code, epoch = self.connection.call(lambda c: self._append(
            keys=[self._ids_key, self._entries_key, self._digests_key, self._epoch_key],
            args=[record["entry_id"], record["payload"], record["digest"], known, uuid.uuid4().hex], client=c))
        self._adopt(int(code), text(epoch))
        if int(code) == -1:
            raise duplicate_error(record["entry_id"], f"Redis ledger namespace {self.namespace!r}")

    def _adopt(self, code: int, epoch: str) -> None:
        if code == -2:
            raise StateLostError(
                f"Redis at {self.connection.url} lost ledger namespace {self.namespace!r}: its epoch key "
                f"{self._epoch_key!r} is gone or changed (a restart without persistence, or a flush), so the "
                f"entries written before are gone; nothing was written. Check the server's persistence, then "
                f"call acknowledge_lost_state() to carry on with what is left")
        if self._epoch is None:
            self._epoch = epoch

    def acknowledge_lost_state(self) -> None:
        """Carry on after a :class:`StateLostError`: adopt the state Redis holds now (entries still spooled from
        before are then written to it)."""
        self._epoch = None
        self._acknowledged = True

    def load_entries(self) -> list[LedgerEntry]:
        """Every entry of this namespace, in the order they were committed (spooled ones replayed first)."""
        self._check_persistence()
        self.replay_spool()
        code, epoch = self.connection.call(lambda c: self._epoch_script(
            keys=[self._epoch_key], args=[self._epoch or "", uuid.uuid4().hex], client=c))
        self._adopt(int(code), text(epoch))
        raw: list[bytes] = []
        start, page = 0, 2000
        while True:
            chunk = self.connection.call(lambda c, first=start: c.lrange(self._entries_key, first, first + page - 1))
            raw.extend(chunk)
            if len(chunk) < page:
                break
            start += page
        entries = []
        for i, item in enumerate(raw):
            try:
                entries.append(LedgerEntry.from_dict(json.loads(item)))
            except (ValueError, TypeError, AttributeError, RecursionError) as exc:
                raise CorruptStateError(
                    f"ledger entry {i} in Redis key {self._entries_key!r} is unreadable ({exc}); "
                    f"repair or delete the key") from exc
        return entries

    def __len__(self) -> int:
        return int(self.connection.call(lambda c: c.llen(self._entries_key)))

    def clear(self) -> None:
        """Delete this namespace's entries and their ids (the epoch stays: other processes see no loss)."""
        self.connection.call(lambda c: c.delete(self._entries_key, self._ids_key, self._digests_key))

    def __repr__(self) -> str:
        return f"RedisLedgerStore({self.connection.url!r}, namespace={self.namespace!r})"


__all__ = ["RedisLedgerStore", "RedisBudgetStore", "StoreUnavailableError"]
