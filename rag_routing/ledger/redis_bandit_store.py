"""Bandit state in Redis: the :class:`~rag_routing.routers.bandits.store.BanditStateStore` protocol, shared by
every process that learns from feedback.

Each key holds a hash ``{data: .npz bytes, version: n}``; arrays travel as ``.npz`` read with
``allow_pickle=False`` (loading state never runs code). :meth:`RedisBanditStore.update` is an optimistic
read-modify-write (``WATCH``; read; ``fn``; ``MULTI``/``EXEC``, retried when another process wrote first),
so concurrent feedback is never lost; ``fn`` may run more than once and must not have side effects. Each
update also stores an operation id in the same transaction, so a retry after a lost reply (a connection
error, a Redis restart) finds it and does not learn from the same feedback twice. Durability on a restart
follows :mod:`rag_routing.ledger.redis_store` (AOF with ``appendfsync always`` keeps every acknowledged
update).

This module sits with the other Redis stores so that the ``redis`` extra lives in one place; it does not
import the routers (the protocol is structural).

Example (needs redis-server):
    >>> import numpy as np
    >>> store = RedisBanditStore("redis://127.0.0.1:6379/0")                           # doctest: +SKIP
    >>> store.put("bandit:demo", {"counts": np.zeros(2)})                                 # doctest: +SKIP
    >>> store.update("bandit:demo", lambda s: {"counts": s["counts"] + 1})["counts"].tolist()  # doctest: +SKIP
    [1.0, 1.0]
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rag_routing.array_blobs import Arrays, decode_arrays, encode_arrays
from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.ledger.redis_connection import RedisConnection


class RedisBanditStore:
    """Named sets of arrays in Redis with atomic, idempotent read-modify-write (see the module docstring).

    Args:
        url_or_client: a Redis URL or a ``redis.Redis`` client.
        prefix: key prefix (a state lives at ``<prefix>:{<key>}``).
        retry_seconds: how long a command is retried while Redis is unreachable.
        op_ttl: seconds an update's operation id is remembered (must exceed ``retry_seconds``).
        max_conflicts: optimistic retries of one update under contention before giving up.
    """

    def __init__(self, url_or_client: Any = "redis://127.0.0.1:6379/0", *, prefix: str = "rag_routing:bandit_state",
                 retry_seconds: float = 10.0, socket_timeout: float = 5.0, op_ttl: int = 300,
                 max_conflicts: int = 1000):
        if not isinstance(prefix, str) or not prefix:
            raise InvalidInputError("prefix must be a non-empty string")
        self.prefix, self.op_ttl, self.max_conflicts = prefix, op_ttl, max_conflicts
        self.connection = RedisConnection(url_or_client, retry_seconds=retry_seconds, socket_timeout=socket_timeout)

    def _key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"bandit state key must be a non-empty string, got {key!r}")
        return f"{self.prefix}:{{{key}}}"

    def _read(self, client: Any, name: str) -> tuple[Arrays | None, int]:
        data, version = client.hmget(name, "data", "version")
        if data is None:
            return None, 0
        try:
            return decode_arrays(bytes(data), f"Redis key {name!r}"), int(version or 0)
        except ValueError as exc:
            raise CorruptStateError(f"Redis key {name!r} has a malformed version ({version!r})") from exc

    def get(self, key: str) -> Arrays | None:
        name = self._key(key)
        return self.connection.call(lambda c: self._read(c, name))[0]

    def version(self, key: str) -> int:
        """Number of writes to ``key`` so far (0 when absent)."""
        name = self._key(key)
        return self.connection.call(lambda c: self._read(c, name))[1]

    def put(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        fixed = {k: np.array(v, copy=True) for k, v in arrays.items()}
        self.update(key, lambda _current: fixed)

    def update(self, key: str, fn: Callable[[Arrays | None], Mapping[str, np.ndarray]]) -> Arrays:
        """Atomically replace the arrays under ``key`` by ``fn(current)``; returns what was written."""
        name = self._key(key)
        op = f"{name}:op:{uuid.uuid4().hex}"
        return self.connection.call(lambda c: self._update_once(c, name, op, fn))

    def _update_once(self, client: Any, name: str, op: str, fn: Callable[[Arrays | None], Any]) -> Arrays:
        from redis.exceptions import WatchError

        for _ in range(self.max_conflicts):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(name, op)
                    if pipe.exists(op):  # a retry of an update that was applied: do not apply it twice
                        current, _ = self._read(pipe, name)
                        return current if current is not None else {}
                    current, version = self._read(pipe, name)
                    result = {k: np.array(v, copy=True) for k, v in fn(current).items()}
                    pipe.multi()
                    pipe.hset(name, mapping={"data": encode_arrays(result), "version": version + 1})
                    pipe.set(op, b"1", ex=self.op_ttl)
                    pipe.execute()
                    return result
                except WatchError:
                    continue
        raise CorruptStateError(f"bandit state {name!r}: {self.max_conflicts} conflicting writers in a row; "
                                "is something rewriting the key in a loop?")

    def delete(self, key: str) -> None:
        name = self._key(key)
        self.connection.call(lambda c: c.delete(name))

    def ping(self) -> None:
        """A quick health probe (no retries); raises StoreUnavailableError when Redis does not answer."""
        self.connection.ping()

    def close(self) -> None:
        self.connection.close()

    def __repr__(self) -> str:
        return f"RedisBanditStore({self.connection.url!r}, prefix={self.prefix!r})"


__all__ = ["RedisBanditStore"]
