"""Ledgers and budgets in Redis, shared by many processes and machines.

* :class:`RedisLedgerStore` appends entries to a Redis list. A Lua script adds the entry's ``entry_id`` to a
  set and pushes the entry in one atomic step, so an append retried after a lost reply (a connection error, a
  Redis restart) is written exactly once.
* :class:`RedisBudgetStore` implements the :class:`~rag_routing.ledger.budget_stores.BudgetStore` protocol.
  ``try_reserve`` checks spent + reserved + wanted against *every* limit and reserves in one Lua script, so N
  workers racing on one budget never reserve past it. Each call carries an operation id stored by the same
  script, so a retried ``try_reserve`` or ``settle`` is applied once.

The contract on a Redis restart
-------------------------------
* With AOF and ``appendfsync always`` (``redis-server --appendonly yes --appendfsync always``) a write is on
  disk before Redis replies, so **every append, reservation and settlement that returned is kept**, and
  one whose reply was lost is either kept or not applied, never applied twice (its retry finds its id).
* With ``appendfsync everysec`` (Redis's default when AOF is on) up to about one second of acknowledged
  writes can be lost on a *machine* crash (a process crash loses nothing).
* Without persistence (no AOF; RDB snapshots only or none), **a restart loses the state** back to the last
  snapshot: spent amounts, reservations and ledger entries written since. Use :meth:`persistence` to see
  what the server does; a warning is logged when AOF is off.
* While Redis is down, every call retries with bounded backoff for ``retry_seconds`` and then raises
  :class:`~rag_routing.ledger.redis_connection.StoreUnavailableError`; a call refused this way never ran.
* Reservations of a process that dies before committing stay reserved (the budget errs on the safe side);
  :meth:`RedisBudgetStore.clear_reserved` drops them.
* An operation id lives ``op_ttl`` seconds (default 300): a retry of the same call later than that could
  apply twice, so keep ``op_ttl`` well above ``retry_seconds``.

Example (needs a running redis-server):
    >>> from rag_routing.ledger import Budget, CostLedger
    >>> store = RedisBudgetStore("redis://127.0.0.1:6379/0")                     # doctest: +SKIP
    >>> budget = Budget(max_usd=5.0, scope="principal", principal="team-a", store=store)  # doctest: +SKIP
    >>> ledger = CostLedger(budget=budget, store=RedisLedgerStore("redis://127.0.0.1:6379/0",
    ...                                                           namespace="team-a"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import Any

from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.ledger.budget_stores import _REL_TOL, Amounts
from rag_routing.ledger.entry import LedgerEntry
from rag_routing.ledger.redis_connection import RedisConnection, StoreUnavailableError

logger = logging.getLogger(__name__)

_APPEND = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: state hash, op key. ARGV: op ttl, wanted x4, limits x4 (-1 = unlimited), relative tolerance.
_TRY_RESERVE = """
local done = redis.call('GET', KEYS[2])
if done then return tonumber(done) end
local tol = tonumber(ARGV[10])
local st = redis.call('HMGET', KEYS[1], 's0', 's1', 's2', 's3', 'r0', 'r1', 'r2', 'r3')
for i = 1, 4 do
  local w = tonumber(ARGV[1 + i])
  local lim = tonumber(ARGV[5 + i])
  if w > 0 and lim >= 0 then
    local s = tonumber(st[i] or '0')
    local r = tonumber(st[4 + i] or '0')
    if s + r + w > lim * (1 + tol) then
      redis.call('SET', KEYS[2], '0', 'EX', ARGV[1])
      return 0
    end
  end
end
for i = 1, 4 do
  if tonumber(ARGV[1 + i]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'r' .. (i - 1), ARGV[1 + i]) end
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1
"""

# KEYS: state hash, op key. ARGV: op ttl, actual x4, -reserved x4.
_SETTLE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
for i = 1, 4 do
  if tonumber(ARGV[1 + i]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], 's' .. (i - 1), ARGV[1 + i]) end
  if tonumber(ARGV[5 + i]) ~= 0 then
    local left = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'r' .. (i - 1), ARGV[5 + i]))
    if left < 0 then redis.call('HSET', KEYS[1], 'r' .. (i - 1), '0') end
  end
end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1
"""

_FIELDS = ("s0", "s1", "s2", "s3", "r0", "r1", "r2", "r3")


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what} must be a non-empty string, got {value!r}")
    return value


class _RedisStoreBase:
    def __init__(self, url_or_client: Any, *, prefix: str, retry_seconds: float, socket_timeout: float):
        self.prefix = _check_name(prefix, "prefix")
        self.connection = RedisConnection(url_or_client, retry_seconds=retry_seconds, socket_timeout=socket_timeout)

    def ping(self) -> None:
        """A quick health probe (no retries); raises StoreUnavailableError when Redis does not answer."""
        self.connection.ping()

    def persistence(self) -> dict[str, Any]:
        """What survives a restart (see the module docstring); ``{}`` when the server hides its config."""
        return self.connection.persistence()

    def _warn_if_volatile(self) -> None:
        try:
            info = self.connection.persistence(retry=False)
        except StoreUnavailableError:  # not up yet: the first real command waits for it
            return
        if info and not info["aof"]:
            logger.warning("Redis at %s runs without AOF: a restart loses %s state written since the last "
                           "snapshot; start it with --appendonly yes --appendfsync always",
                           self.connection.url, type(self).__name__)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisLedgerStore(_RedisStoreBase):
    """Ledger entries in a Redis list, appended exactly once per ``entry_id`` (see the module docstring).

    Args:
        url_or_client: a Redis URL or a ``redis.Redis`` client.
        namespace: entries of one namespace are read back together (one ledger per session / service).
        prefix: the key prefix (keys are ``<prefix>:ledger:{<namespace>}:entries`` and ``...:ids``).
        retry_seconds: how long a command is retried while Redis is unreachable.
        check_persistence: log a warning when the server runs without AOF.
    """

    def __init__(self, url_or_client: Any = "redis://127.0.0.1:6379/0", *, namespace: str = "default",
                 prefix: str = "rag_routing", retry_seconds: float = 10.0, socket_timeout: float = 5.0,
                 check_persistence: bool = True):
        super().__init__(url_or_client, prefix=prefix, retry_seconds=retry_seconds, socket_timeout=socket_timeout)
        self.namespace = _check_name(namespace, "namespace")
        base = f"{self.prefix}:ledger:{{{self.namespace}}}"
        self._entries_key, self._ids_key = f"{base}:entries", f"{base}:ids"
        self._append = self.connection.script(_APPEND)
        if check_persistence:
            self._warn_if_volatile()

    def append(self, entry: LedgerEntry) -> None:
        """Write ``entry`` durably (per the server's persistence); a second write of its id is skipped."""
        if not isinstance(entry, LedgerEntry):
            raise InvalidInputError(f"append expects a LedgerEntry, got {type(entry).__name__}")
        payload = json.dumps(entry.to_dict(), default=str, separators=(",", ":"))
        self.connection.call(lambda c: self._append(keys=[self._ids_key, self._entries_key],
                                                    args=[entry.entry_id, payload], client=c))

    def load_entries(self) -> list[LedgerEntry]:
        """Every entry of this namespace, in the order they were committed."""
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
            except (ValueError, TypeError, AttributeError) as exc:  # JSONDecodeError, InvalidInputError
                raise CorruptStateError(
                    f"ledger entry {i} in Redis key {self._entries_key!r} is unreadable ({exc}); "
                    f"repair or delete the key") from exc
        return entries

    def __len__(self) -> int:
        return int(self.connection.call(lambda c: c.llen(self._entries_key)))

    def clear(self) -> None:
        """Delete this namespace's entries (and their ids)."""
        self.connection.call(lambda c: c.delete(self._entries_key, self._ids_key))

    def __repr__(self) -> str:
        return f"RedisLedgerStore({self.connection.url!r}, namespace={self.namespace!r})"


class RedisBudgetStore(_RedisStoreBase):
    """Budget state in Redis hashes: an atomic check-and-reserve across all limits (a Lua script).

    Args:
        url_or_client: a Redis URL or a ``redis.Redis`` client.
        prefix: the key prefix (a budget's state lives at ``<prefix>:budget:{<key>}``).
        retry_seconds: how long a command is retried while Redis is unreachable.
        op_ttl: seconds an operation id is remembered for idempotent retries (must exceed ``retry_seconds``).
        check_persistence: log a warning when the server runs without AOF.

    Example (needs redis-server):
        >>> store = RedisBudgetStore("redis://127.0.0.1:6379/0")                       # doctest: +SKIP
        >>> limits = Amounts(usd=1.0, tokens=math.inf, seconds=math.inf, kwh=math.inf)
        >>> store.try_reserve("k", Amounts(usd=0.6), limits), store.try_reserve("k", Amounts(usd=0.6), limits)
        ...                                                                              # doctest: +SKIP
        (True, False)
    """

    def __init__(self, url_or_client: Any = "redis://127.0.0.1:6379/0", *, prefix: str = "rag_routing",
                 retry_seconds: float = 10.0, socket_timeout: float = 5.0, op_ttl: int = 300,
                 check_persistence: bool = True):
        super().__init__(url_or_client, prefix=prefix, retry_seconds=retry_seconds, socket_timeout=socket_timeout)
        if isinstance(op_ttl, bool) or not isinstance(op_ttl, int) or op_ttl < max(1.0, retry_seconds):
            raise InvalidInputError(f"op_ttl must be an integer number of seconds >= retry_seconds, got {op_ttl!r}")
        self.op_ttl = op_ttl
        self._reserve = self.connection.script(_TRY_RESERVE)
        self._settle = self.connection.script(_SETTLE)
        if check_persistence:
            self._warn_if_volatile()

    def _state_key(self, key: str) -> str:
        return f"{self.prefix}:budget:{{{_check_name(key, 'budget key')}}}"

    def _keys(self, key: str) -> tuple[str, str]:
        state = self._state_key(key)
        return state, f"{state}:op:{uuid.uuid4().hex}"

    def try_reserve(self, key: str, wanted: Amounts, limits: Amounts) -> bool:
        """Reserve ``wanted`` if spent + reserved + wanted fits every limit; ``False`` (no change) if not."""
        state, op = self._keys(key)
        args = [self.op_ttl, *(_num(v) for v in wanted.as_tuple()),
                *(-1 if math.isinf(v) else _num(v) for v in limits.as_tuple()), _num(_REL_TOL)]
        return bool(self.connection.call(lambda c: self._reserve(keys=[state, op], args=args, client=c)))

    def settle(self, key: str, reserved: Amounts, actual: Amounts) -> None:
        """Return ``reserved`` and add ``actual`` to spent, once (retries carry the same operation id)."""
        state, op = self._keys(key)
        args = [self.op_ttl, *(_num(v) for v in actual.as_tuple()), *(_num(-v) for v in reserved.as_tuple())]
        self.connection.call(lambda c: self._settle(keys=[state, op], args=args, client=c))

    def snapshot(self, key: str) -> tuple[Amounts, Amounts]:
        """(spent, reserved) of ``key``."""
        state = self._state_key(key)
        values = self.connection.call(lambda c: c.hmget(state, _FIELDS))
        try:
            numbers = [0.0 if v is None else float(v) for v in values]
        except ValueError as exc:
            raise CorruptStateError(f"budget state {state!r} holds a non-number ({values}); reset it") from exc
        if any(not math.isfinite(v) for v in numbers):
            raise CorruptStateError(f"budget state {state!r} holds a non-finite amount ({numbers}); reset it")
        return Amounts(*numbers[:4]), Amounts(*(max(0.0, v) for v in numbers[4:]))

    def reset(self, key: str) -> None:
        """Forget everything spent and reserved under ``key``."""
        state = self._state_key(key)
        self.connection.call(lambda c: c.delete(state))

    def clear_reserved(self, key: str) -> None:
        """Drop reservations left by processes that died before committing or releasing."""
        state = self._state_key(key)
        self.connection.call(lambda c: c.hdel(state, *_FIELDS[4:]))

    def __repr__(self) -> str:
        return f"RedisBudgetStore({self.connection.url!r}, prefix={self.prefix!r})"


def _num(value: float) -> str:
    # repr() round-trips a float exactly; Redis parses it as a long double.
    return repr(float(value)) if value != 0 else "0"


__all__ = ["RedisLedgerStore", "RedisBudgetStore", "StoreUnavailableError"]
