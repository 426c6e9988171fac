"""The heartbeat that keeps the leases of open reservations alive while their calls run.

A :class:`~rag_routing.ledger.budget.Reservation` on a leasing store registers here; one daemon thread per
process renews every registered lease each third of its store's ``lease_seconds``. Registering is cheap on the
hot path of every budgeted call: while the thread beats (it keeps beating as long as reservations keep coming),
a registration is a dictionary insert and never wakes it; a reservation settled before the next beat is never
renewed (it never needed to be). The thread is woken only when it sleeps idle (nothing held) or a shorter lease
needs an earlier beat, so a lease is always renewed within a third of its lifetime. The keeper holds
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
        self._cond = threading.Condition(threading.Lock())
        self._held: dict[int, weakref.ref[Reservation]] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._beat: float | None = None  # the interval the thread sleeps on now (None: idle until woken)
        self._fresh = False  # a reservation was registered since the thread last looked
        self._last: float | None = None  # the last interval beaten for (kept through runs of short calls)

    def keep(self, reservation: Reservation) -> None:
        """Renew ``reservation``'s lease until :meth:`drop` (or until it is garbage-collected)."""
        # Fast path (no lock, no wake-up): dict writes are atomic, and the thread, which is beating, renews
        # the lease at its next beat, at most a third of the shortest lease it beats for from now. Order
        # matters: register first, then read ``_beat``; the thread clears ``_beat`` before it looks for work
        # and goes idle only under the lock, so a registration it missed sees ``_beat is None`` and wakes it.
        self._held[id(reservation)] = weakref.ref(reservation)
        self._fresh = True
        beat = self._beat
        budget = reservation.budget
        seconds = getattr(budget.store, "lease_seconds", None) if budget is not None else None
        interval = seconds / 3.0 if seconds else None
        if beat is not None and (interval is None or interval >= beat):
            return
        with self._cond:
            if self._pid != os.getpid():  # a forked child owns none of its parent's leases
                self._held.clear()
                self._held[id(reservation)] = weakref.ref(reservation)
                self._thread, self._pid = None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rag-routing-lease-heartbeat", daemon=True)
                self._thread.start()
            if interval is not None and (self._last is None or interval < self._last):
                self._last = interval
            if self._beat is None or (interval is not None and interval < self._beat):
                self._cond.notify()  # idle, or this lease needs an earlier beat

    def drop(self, reservation: Reservation) -> None:
        self._held.pop(id(reservation), None)  # atomic; the thread reads a copy

    def __len__(self) -> int:
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
                if self._held.get(key) is ref:  # not re-registered under a reused id meanwhile
                    self._held.pop(key, None)
            else:
                live.append(reservation)
        return live

    def _run(self) -> None:
        try:
            self._beat_until_stopped()
        finally:
            self._beat = None  # a dead thread must not look like a beating one (keep() restarts it)

    def _beat_until_stopped(self) -> None:
        next_beat: float | None = None
        while True:
            with self._cond:
                self._beat = None  # before looking: a registration from now on wakes us (see keep)
                fresh, self._fresh = self._fresh, False
                live = self._live()
                interval = self._interval(live)
                if interval is None and fresh:  # registered and settled since the last look: keep beating
                    interval = self._last
                if interval is None:  # nothing held, nothing new: sleep until a reservation is registered
                    next_beat = None
                    self._cond.wait()
                    continue
                self._beat = self._last = interval
                now = time.monotonic()
                if next_beat is None or next_beat > now + interval:
                    next_beat = now + interval
                if now < next_beat:  # woken early (a shorter lease): only a shorter interval moves the beat
                    del live
                    self._cond.wait(timeout=next_beat - now)
                    continue
                next_beat = None
            for reservation in live:
                self._renew(reservation)
            del live

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
