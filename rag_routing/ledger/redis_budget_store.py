"""Budgets in Redis with leased reservations: an atomic check-and-reserve across all limits (Lua), shared by
every process and machine that uses the same server.

``try_reserve`` checks spent + reserved + wanted against *every* limit and reserves in one script, so N
workers racing on one budget never reserve past it. Each reservation made with ``lease=`` is recorded with
a deadline on the Redis server's clock; the holder's heartbeat renews it, and any later operation on the
budget returns the amounts of leases past their deadline (a worker killed with ``kill -9`` leaks its
reservation for at most ``lease_seconds``, also across a Redis restart with AOF, since the leases are
persisted with the state). A pause of the whole budget longer than a lease (a Redis outage) moves the
deadlines forward instead of robbing holders that could not renew. :meth:`RedisBudgetStore.clear_reserved`
and :meth:`RedisBudgetStore.reset` never touch a live lease. Each call carries an operation id stored by the
same script, so a retried ``try_reserve`` or ``settle`` is applied once. Restart, persistence and outage
rules: see :mod:`rag_routing.ledger.redis_store`.

Example (needs redis-server with AOF):
    >>> import math
    >>> from rag_routing.ledger.budget_stores import Amounts
    >>> store = RedisBudgetStore("redis://127.0.0.1:6379/0")                       # doctest: +SKIP
    >>> limits = Amounts(usd=1.0, tokens=math.inf, seconds=math.inf, kwh=math.inf)
    >>> store.try_reserve("k", Amounts(usd=0.6), limits), store.try_reserve("k", Amounts(usd=0.6), limits)
    ...                                                                              # doctest: +SKIP
    (True, False)
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

from rag_routing.errors import CorruptStateError, InvalidInputError, StateLostError
from rag_routing.ledger.budget_stores import _REL_TOL, DEFAULT_LEASE_SECONDS, Amounts, check_lease_seconds
from rag_routing.ledger.redis_base import RedisStoreBase, check_name, text
from rag_routing.ledger.redis_scripts import CLEAR, RENEW, SETTLE, SNAPSHOT, TRY_RESERVE


class RedisBudgetStore(RedisStoreBase):
    """Budget state in Redis hashes, with leased reservations (see the module docstring).

    Args:
        url_or_client: a Redis URL or a ``redis.Redis`` client.
        prefix: the key prefix (a budget's state lives at ``<prefix>:budget:{<key>}`` and beside it).
        retry_seconds: how long a command is retried while Redis is unreachable.
        op_ttl: seconds an operation id is remembered for idempotent retries (must exceed ``retry_seconds``).
        lease_seconds: how long a reservation lives without being renewed.
        check_persistence: ask the server whether it persists (and refuse it if not).
        allow_non_persistent: accept a server without AOF (a restart then loses budgets; running stores raise
            StateLostError).
        spool: where settlements wait while Redis is unreachable: ``"auto"``, a path, or ``None`` (raise).
    """

    def __init__(self, url_or_client: Any = "redis://127.0.0.1:6379/0", *, prefix: str = "rag_routing",
                 retry_seconds: float = 10.0, socket_timeout: float = 5.0, op_ttl: int = 300,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, check_persistence: bool = True,
                 allow_non_persistent: bool = False, spool: str | Path | None = "auto"):
        self.lease_seconds = check_lease_seconds(lease_seconds)
        if (isinstance(op_ttl, bool) or not isinstance(op_ttl, int) or isinstance(retry_seconds, bool)
                or not isinstance(retry_seconds, (int, float)) or op_ttl < max(1.0, retry_seconds)):
            raise InvalidInputError(f"op_ttl must be an integer number of seconds >= retry_seconds, got {op_ttl!r}")
        super().__init__(url_or_client, prefix=prefix, retry_seconds=retry_seconds, socket_timeout=socket_timeout,
                         check_persistence=check_persistence, allow_non_persistent=allow_non_persistent,
                         spool=spool, identity=("budget",))
        self.op_ttl = op_ttl
        self._epochs: dict[str, str] = {}
        self._acknowledged: set[str] = set()  # keys whose lost state the user accepted: old spool records apply
        self._scripts = {name: self.connection.script(src) for name, src in
                         (("reserve", TRY_RESERVE), ("renew", RENEW), ("settle", SETTLE), ("snapshot", SNAPSHOT),
                          ("clear", CLEAR))}

    def _keys(self, key: str) -> list[str]:
        state = f"{self.prefix}:budget:{{{check_name(key, 'budget key')}}}"
        return [state, f"{state}:leases", f"{state}:lease_deadlines", f"{state}:epoch"]

    def _run(self, name: str, key: str, args: list[Any], *, op: str | None = None, epoch: str = "",
             retry: bool = True) -> list[Any]:
        keys = self._keys(key) + ([f"{self._keys(key)[0]}:op:{op}"] if op else [])
        known = epoch or self._epochs.get(key, "")
        head = [known, uuid.uuid4().hex, repr(self.lease_seconds)]
        script = self._scripts[name]
        reply = self.connection.call(lambda c: script(keys=keys, args=head + args, client=c), retry=retry)
        if int(reply[0]) == -2:
            raise StateLostError(
                f"Redis at {self.connection.url} lost the state of budget {key!r}: its epoch key is gone or "
                f"changed (a restart without persistence, or a flush), so what was spent before is unknown and "
                f"the budget is not restarted from zero; nothing was applied. Check the server's persistence, "
                f"record what was really spent (Budget.charge), then call acknowledge_lost_state({key!r})")
        self._epochs.setdefault(key, text(reply[1]))
        return reply

    def acknowledge_lost_state(self, key: str) -> None:
        """Carry on after a :class:`StateLostError` on ``key``: adopt the state Redis holds now (settlements
        still spooled from before are then charged to it: they were spent)."""
        self._epochs.pop(key, None)
        self._acknowledged.add(key)

    # -- the BudgetStore protocol ----------------------------------------------------------------------------
    def try_reserve(self, key: str, wanted: Amounts, limits: Amounts, *, lease: str | None = None) -> bool:
        """Reserve ``wanted`` if spent + reserved + wanted fits every limit; ``False`` (no change) if not."""
        self._check_persistence()
        self.replay_spool()  # settlements of calls that ran during an outage count first
        args = [self.op_ttl, *(_num(v) for v in wanted.as_tuple()),
                *(-1 if math.isinf(v) else _num(v) for v in limits.as_tuple()), _num(_REL_TOL), lease or ""]
        return int(self._run("reserve", key, args, op=uuid.uuid4().hex)[0]) == 1

    def renew(self, key: str, lease: str) -> bool:
        """Extend a live lease by ``lease_seconds`` (one attempt, no retries: the heartbeat beats again)."""
        return int(self._run("renew", key, [lease], retry=False)[0]) == 1

    def settle(self, key: str, reserved: Amounts, actual: Amounts, *, lease: str | None = None) -> None:
        """Return the lease (or ``reserved``) and add ``actual`` to spent, once; spooled while Redis is down."""
        self._write_or_spool("settle", {
            "key": key, "op": uuid.uuid4().hex, "actual": [_num(v) for v in actual.as_tuple()],
            "reserved": [_num(v) for v in reserved.as_tuple()], "lease": lease or "",
            "epoch": self._epochs.get(key, "")})

    def _apply(self, kind: str, record: dict[str, Any]) -> None:
        key = record["key"]
        epoch = "" if key in self._acknowledged else record.get("epoch", "")
        self._run("settle", key, [self.op_ttl, *record["actual"], *record["reserved"], record["lease"]],
                  op=record["op"], epoch=epoch)

    def snapshot(self, key: str) -> tuple[Amounts, Amounts]:
        """(spent, reserved) of ``key``, after returning expired leases."""
        self._check_persistence()
        self.replay_spool()
        try:
            reply = self._run("snapshot", key, [])
        except CorruptStateError as exc:
            if isinstance(exc, StateLostError):
                raise
            raise CorruptStateError(f"budget state of {key!r} cannot be read ({exc}); reset it") from exc
        try:
            numbers = [float(text(v)) for v in reply[2:10]]
        except ValueError as exc:
            raise CorruptStateError(f"budget state of {key!r} holds a non-number ({reply[2:10]}); reset it") from exc
        if any(not math.isfinite(v) for v in numbers):
            raise CorruptStateError(f"budget state of {key!r} holds a non-finite amount ({numbers}); reset it")
        return Amounts(*numbers[:4]), Amounts(*(max(0.0, v) for v in numbers[4:]))

    def reset(self, key: str) -> None:
        """Forget what was spent and every reservation except live leases (their holders are still running)."""
        self._check_persistence()
        self._run("clear", key, ["1"])

    def clear_reserved(self, key: str) -> None:
        """Drop expired leases and reservations held without a lease (the old protocol); live leases stay."""
        self._check_persistence()
        self._run("clear", key, ["0"])

    def __repr__(self) -> str:
        return f"RedisBudgetStore({self.connection.url!r}, prefix={self.prefix!r})"


def _num(value: float) -> str:
    # repr() round-trips a float exactly; Redis parses it as a long double.
    return repr(float(value)) if value != 0 else "0"


__all__ = ["RedisBudgetStore"]
