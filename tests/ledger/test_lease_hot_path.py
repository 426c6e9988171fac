"""The cheap hot path of leased reservations keeps every lease guarantee: a reservation registered while the
heartbeat is already beating (no wake-up) is still renewed, the memory store still reclaims an expired lease
when others are live (it scans only once one may have expired), and lease ids stay unique."""

from __future__ import annotations

import math
import time

from rag_routing.ledger import Budget, MemoryBudgetStore
from rag_routing.ledger.budget import _new_lease_id
from rag_routing.ledger.budget_stores import Amounts

LIMITS = Amounts(usd=10.0, tokens=math.inf, seconds=math.inf, kwh=math.inf)


def test_reservations_registered_without_a_wake_up_are_renewed():
    budget = Budget(max_usd=10.0, store=MemoryBudgetStore(lease_seconds=0.6))
    first = budget.reserve(usd=1.0)  # wakes the heartbeat (or starts it)
    later = [budget.reserve(usd=0.5) for _ in range(3)]  # the heartbeat beats already: registered silently
    first.release()
    time.sleep(1.5)  # well past the lease: only renewals keep them
    assert budget.reserved().usd == 1.5
    for held in later:
        held.release()
    assert budget.reserved().usd == 0.0


def test_an_expired_lease_is_reclaimed_while_another_is_live():
    store = MemoryBudgetStore(lease_seconds=0.3)
    assert store.try_reserve("k", Amounts(usd=4.0), LIMITS, lease="dropped")
    time.sleep(0.2)
    assert store.try_reserve("k", Amounts(usd=1.0), LIMITS, lease="live")
    time.sleep(0.2)  # "dropped" is past its deadline, "live" is not
    assert store.snapshot("k")[1].usd == 1.0
    store.settle("k", Amounts(usd=1.0), Amounts(usd=1.0), lease="live")
    assert store.snapshot("k") == (Amounts(usd=1.0), Amounts())


def test_lease_ids_are_unique():
    ids = {_new_lease_id() for _ in range(10_000)}
    assert len(ids) == 10_000
