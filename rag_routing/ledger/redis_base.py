"""What the Redis ledger and budget stores share: refusing a server without persistence, remembering the epoch
of the state they touch, and spooling writes of calls that already ran while Redis is unreachable.

* **Persistence.** A store asks the server (``CONFIG GET appendonly``) on construction, or at its first
  contact when Redis is not up yet. A server without an append-only file loses, on a restart, everything
  written since its last snapshot, and budgets would silently start again from zero, so it is refused with
  :class:`~rag_routing.errors.InvalidInputError` unless ``allow_non_persistent=True``. A server that hides
  its configuration (managed services) is accepted with a warning.
* **Epochs.** See :mod:`rag_routing.ledger.redis_scripts`: state that vanished under a running store raises
  :class:`~rag_routing.errors.StateLostError` instead of being re-created empty.
* **Spool.** ``spool="auto"`` (default) keeps writes that could not reach Redis within ``retry_seconds`` in
  a local :class:`~rag_routing.ledger.spool.Spool` and replays them before the next write (see there).

Example:
    >>> from rag_routing.ledger.redis_connection import display_url
    >>> display_url("redis://:s3cret@cache:6379/0")      # what messages and logs show of a store's URL
    'redis://***@cache:6379/0'
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.ledger.redis_connection import RedisConnection, StoreUnavailableError
from rag_routing.ledger.spool import Spool, default_spool_path

logger = logging.getLogger("rag_routing.ledger.redis_store")


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what} must be a non-empty string, got {value!r}")
    return value


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStoreBase:
    """Connection, persistence check and spool of a Redis store (see the module docstring)."""

    def __init__(self, url_or_client: Any, *, prefix: str, retry_seconds: float, socket_timeout: float,
                 check_persistence: bool, allow_non_persistent: bool, spool: str | Path | None,
                 identity: tuple[str, ...]):
        self.prefix = check_name(prefix, "prefix")
        self.connection = RedisConnection(url_or_client, retry_seconds=retry_seconds, socket_timeout=socket_timeout)
        self.check_persistence = bool(check_persistence)
        self.allow_non_persistent = bool(allow_non_persistent)
        self._checked = not self.check_persistence
        if spool == "auto":
            spool = default_spool_path(type(self).__name__, self.connection.url, self.prefix, *identity)
        elif spool is not None and not isinstance(spool, (str, Path)):
            raise InvalidInputError(f"spool must be 'auto', a file path or None, got {spool!r}")
        self.spool = Spool(spool) if spool is not None else None
        self._spool_waiting = self.spool is not None and len(self.spool) > 0
        self._spool_lock = threading.Lock()
        if self.check_persistence:
            try:
                self._check_persistence(retry=False)
            except StoreUnavailableError:  # not up yet: checked at the first contact
                pass

    # -- persistence ----------------------------------------------------------------------------------------
    def ping(self) -> None:
        """A quick health probe (no retries); raises StoreUnavailableError when Redis does not answer."""
        self.connection.ping()

    def persistence(self) -> dict[str, Any]:
        """What survives a restart: ``{"aof": bool, "appendfsync": str, "rdb": str}``; ``{}`` when the server
        hides its config."""
        return self.connection.persistence()

    def _check_persistence(self, *, retry: bool = True) -> None:
        if self._checked:
            return
        info = self.connection.persistence(retry=retry)
        if not info:
            logger.warning("Redis at %s hides its configuration: cannot tell whether %s state survives a "
                           "restart (a lost state is still detected and raised as StateLostError)",
                           self.connection.url, type(self).__name__)
        elif not info["aof"]:
            if not self.allow_non_persistent:
                raise InvalidInputError(
                    f"Redis at {self.connection.url} runs without an append-only file (appendonly no): a restart "
                    f"would lose everything {type(self).__name__} wrote since the last snapshot (spent amounts, "
                    f"reservations, ledger entries) and budgets would restart from zero. Start redis-server with "
                    f"--appendonly yes --appendfsync always, or pass allow_non_persistent=True to accept it")
            logger.warning("Redis at %s runs without AOF (allowed by allow_non_persistent=True): a restart loses "
                           "%s state written since the last snapshot", self.connection.url, type(self).__name__)
        self._checked = True

    # -- spool ----------------------------------------------------------------------------------------------
    def _apply(self, kind: str, record: dict[str, Any]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def replay_spool(self) -> int:
        """Apply the writes spooled while Redis was unreachable (oldest first); returns how many.

        Raises :class:`StoreUnavailableError` if Redis is still down (the records stay spooled).
        """
        if self.spool is None or not self._spool_waiting:
            return 0
        with self._spool_lock:
            self._check_persistence()
            done = self.spool.replay(self._apply)
            self._spool_waiting = False
        if done:
            logger.warning("replayed %d write(s) spooled while Redis at %s was unreachable", done,
                           self.connection.url)
        return done

    def _write_or_spool(self, kind: str, record: dict[str, Any]) -> None:
        """Apply a write of a call that already ran; spool it when Redis stays unreachable."""
        try:
            self.replay_spool()  # older writes first
        except StoreUnavailableError as exc:
            self._spool_or_raise(kind, record, exc)
            return
        except Exception:
            if self.spool is not None:  # an older record cannot be applied: keep this one behind it, then say so
                self._push(kind, record)
            raise
        try:
            self._check_persistence()
            self._apply(kind, record)
        except StoreUnavailableError as exc:
            self._spool_or_raise(kind, record, exc)

    def _push(self, kind: str, record: dict[str, Any]) -> None:
        assert self.spool is not None
        self.spool.push(kind, record)
        self._spool_waiting = True

    def _spool_or_raise(self, kind: str, record: dict[str, Any], exc: StoreUnavailableError) -> None:
        if self.spool is None:
            raise exc
        self._push(kind, record)
        logger.warning("Redis at %s is unreachable (%s); the %s was spooled to %s and will be replayed when Redis "
                       "answers", self.connection.url, type(exc).__name__, kind, self.spool.path)

    def close(self) -> None:
        self.connection.close()
        if self.spool is not None:
            self.spool.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["RedisStoreBase", "check_name", "text"]
