"""A campaign spread over many fresh keys meets one key's limits once the keys share a NewKeyPool.

Without the pool, every per-key defence is beaten by spreading the same traffic over 100 keys: each key stays
under its quota, never fills an alarm window, never hits its feedback rate limit (the issue's finding). With the
pool, keys without standing act as one principal; established keys keep their own limits.
"""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.baselines import BestSingleRouter
from rag_routing.security import ExpensiveRouteQuota, GuardedRouter, NewKeyPool, RoutingShiftAlarm
from rag_routing.security.poisoning import feedback_campaign

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def always_large() -> BestSingleRouter:
    ds = RoutingDataset(["q1", "q2"], ["small", "large"], [[0.0, 1.0], [0.0, 1.0]], [[0.1, 1.0]] * 2)
    return BestSingleRouter().fit(ds)


KEYS = [f"attacker-{i}" for i in range(100)]


def expensive_routes(guarded: GuardedRouter, principals: list[str], per_key: int) -> int:
    return sum(guarded.route_one("q", principal=p).candidate == "large" for p in principals for _ in range(per_key))


def test_quota_per_key_is_beaten_by_many_keys_and_the_pool_restores_it() -> None:
    plain = GuardedRouter(always_large(), [ExpensiveRouteQuota(max_routes=5)])
    assert expensive_routes(plain, KEYS, per_key=3) == 300  # each key under its quota of 5
    clock = Clock()
    pool = NewKeyPool(min_requests=10, min_age_seconds=3600, clock=clock)
    pooled = GuardedRouter(always_large(), [ExpensiveRouteQuota(max_routes=5, clock=clock)], identities=pool)
    assert expensive_routes(pooled, KEYS, per_key=3) == 5  # all fresh keys together: one key's quota
    decision = pooled.route_one("q", principal="attacker-0")
    assert decision.metadata["acting_as"] == pool.pool_name and decision.metadata["principal"] == "attacker-0"


def test_established_keys_keep_their_own_quota() -> None:
    clock = Clock()
    pool = NewKeyPool(min_requests=3, min_age_seconds=60, clock=clock)
    guarded = GuardedRouter(always_large(), [ExpensiveRouteQuota(max_routes=5, window_seconds=30, clock=clock)],
                            identities=pool)
    for _ in range(3):
        guarded.route_one("q", principal="alice")  # history while new (pooled)
    clock.now = 100.0  # the pool's quota window has passed; alice now has standing
    assert pool.established("alice") and not pool.established("bob")
    assert expensive_routes(guarded, ["attacker-1", "attacker-2"], per_key=5) == 5  # the pool's quota
    assert expensive_routes(guarded, ["alice"], per_key=5) == 5  # alice's own quota, untouched by the pool
    assert "acting_as" not in guarded.route_one("q", principal="alice").metadata


def test_routing_shift_alarm_sees_the_pool_of_fresh_keys() -> None:
    def alarm() -> RoutingShiftAlarm:
        return RoutingShiftAlarm({"small": 0.8, "large": 0.2}, window=50, min_requests=20, alpha=1e-3,
                                 action="downgrade")

    plain = GuardedRouter(always_large(), [alarm()])
    assert expensive_routes(plain, KEYS, per_key=2) == 200  # no key ever fills a window of 20
    pooled = GuardedRouter(always_large(), [alarm()], identities=NewKeyPool(min_requests=5, min_age_seconds=60))
    taken = expensive_routes(pooled, KEYS, per_key=2)
    assert taken < 30  # the pool fills one window and the alarm downgrades the rest
    assert pooled.guards[0].alarms[0].principal == pooled.identities.pool_name


@pytest.mark.parametrize("seed", range(5))
def test_poisoning_over_100_keys_flips_the_bandit_without_the_pool_and_not_with_it(seed: int) -> None:
    plain = feedback_campaign(seed=seed, n_keys=100)
    assert plain.poison_rejected == 0 and plain.flipped  # 20 updates a key x 100 keys: all accepted
    pooled = feedback_campaign(seed=seed, n_keys=100,
                               identities=lambda clock: NewKeyPool(min_requests=10, min_age_seconds=3600, clock=clock))
    assert not pooled.flipped and pooled.poison_rejected >= 1950
    assert pooled.honest_rejected_day2 == 0 and pooled.honest_sent_day2 == 750  # honest users keep their say


def test_new_key_pool_validation_trust_and_revocation() -> None:
    clock = Clock()
    pool = NewKeyPool(min_requests=2, min_age_seconds=10, established=["evaluator"], clock=clock)
    assert pool.observe("evaluator") == "evaluator"
    assert [pool.observe("k") for _ in range(3)] == [pool.pool_name] * 3  # old enough? not yet
    clock.now = 11.0
    assert pool.observe("k") == "k"
    pool.revoke("k")
    assert pool.observe("k") == pool.pool_name and len(pool) == 2
    for bad in ({"min_requests": -1}, {"min_age_seconds": float("inf")}, {"max_tracked": 0}, {"pool_name": ""}):
        with pytest.raises(InvalidInputError):
            NewKeyPool(**bad)
    for bad_principal in ("", None, 3):
        with pytest.raises(InvalidInputError):
            pool.observe(bad_principal)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        GuardedRouter(always_large(), identities=object())  # type: ignore[arg-type]
    small = NewKeyPool(max_tracked=2)
    for key in ("a", "b", "c"):
        small.observe(key)
    assert len(small) == 2  # least recently seen forgotten
