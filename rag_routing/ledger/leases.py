"""The heartbeat that keeps the leases of open reservations alive while their calls run.

A :class:`~rag_routing.ledger.budget.Reservation` on a leasing store registers here; one daemon thread per
process renews every registered lease each third of its store's ``lease_seconds``. The keeper holds
reservations *weakly*: a reservation that is dropped without commit or release stops being renewed and its
lease expires, as does every lease of a process that dies (``kill -9``), so the store reclaims it. A failed
renewal (store unreachable or busy) is retried at the next beat; a lease the store already reclaimed (the
process stalled past ``lease_seconds``) is logged and dropped: committing it still charges what was spent.

Example:
    >>> from rag_routing.ledger import Budget, MemoryBudgetStore
    >>> budget = Budget(max_usd=1.0, store=MemoryBudgetStore(lease_seconds=0.3))
    >>> held = budget.reserve(usd=0.5)
    >>> import time; time.sleep(0.5)          # longer than the lease: the heartbeat renewed it
    >>> budget.reserved().usd
    0.5
    >>> held.release(); budget.reserved().usd
    0.0
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag_routing.ledger.budget import Reservation

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews the leases of registered reservations from one daemon thread (started on first use)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[int, weakref.ref[Reservation]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._beat: float | None = None  # the interval the thread sleeps on now (None: until woken)

    def keep(self, reservation: Reservation) -> None:
        """Renew ``reservation``'s lease until :meth:`drop` (or until it is garbage-collected)."""
        with self._cond:
            if self._pid != os.getpid():  # a forked child owns none of its parent's leases
                self._held.clear()
                self._thread, self._pid = None, os.getpid()
            self._held[id(reservation)] = weakref.ref(reservation)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rag-routing-lease-heartbeat", daemon=True)
                self._thread.start()
            interval = self._interval([reservation])
            if self._beat is None or (interval is not None and interval < self._beat):
                self._cond.notify()  # wake the thread only when this lease needs an earlier beat

    def drop(self, reservation: Reservation) -> None:
        with self._cond:
            self._held.pop(id(reservation), None)

    def __len__(self) -> int:
        with self._cond:
            return len(self._held)

    def _interval(self, held: list[Reservation]) -> float | None:
        seconds = [getattr(r.budget.store, "lease_seconds", None) for r in held if r.budget is not None]
        seconds = [s for s in seconds if s]
        return min(seconds) / 3.0 if seconds else None

    def _live(self) -> list[Reservation]:
        live = []
        for key, ref in list(self._held.items()):
            reservation = ref()
            if reservation is None or reservation.state != "open":
                self._held.pop(key, None)
            else:
                live.append(reservation)
        return live

    def _run(self) -> None:
        next_beat: float | None = None
        while True:
            with self._cond:
                interval = self._beat = self._interval(self._live())
                if interval is None:  # nothing held: sleep until a reservation is registered
                    next_beat = None
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if next_beat is None or next_beat > now + interval:
                    next_beat = now + interval
                if now < next_beat:  # a new registration wakes us early: only a shorter lease moves the beat
                    self._cond.wait(timeout=next_beat - now)
                    continue
                held, next_beat = self._live(), None
            for reservation in held:
                self._renew(reservation)
            del held

    def _renew(self, reservation: Reservation) -> None:
        budget, lease = reservation.budget, reservation.lease
        if budget is None or lease is None or reservation.state != "open":
            return
        try:
            alive = budget.store.renew(budget.key, lease)  # type: ignore[attr-defined]
        except Exception as exc:  # unreachable or busy store: the next beat tries again
            logger.warning("could not renew the lease of %r on budget %r (%s: %s); retrying at the next beat",
                           reservation, budget.key, type(exc).__name__, exc)
            return
        if not alive and reservation.state == "open":
            logger.warning("the lease of %r on budget %r expired before it was renewed (was the process "
                           "stalled longer than lease_seconds?); its amount was returned to the budget, and "
                           "committing it still charges what was spent", reservation, budget.key)
            self.drop(reservation)


#: The process-wide keeper used by every Budget.
KEEPER = LeaseKeeper()


def _after_fork() -> None:
    global KEEPER
    KEEPER = LeaseKeeper()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

__all__ = ["LeaseKeeper", "KEEPER"]
