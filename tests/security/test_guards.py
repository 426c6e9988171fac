"""GuardedRouter and its decision guards: per-principal quotas on expensive routes, routing-shift alarms."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.decision import decide
from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.routers.baselines import BestSingleRouter
from rag_routing.routers.registry import create_router
from rag_routing.security import (
    ExpensiveRouteQuota,
    GuardedRouter,
    QuotaExceededError,
    RouteGuard,
    RoutingAlarmError,
    RoutingShiftAlarm,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def decisions(n: int, expensive: bool = True, budget: float | None = None) -> list:
    quality = [[0.1, 0.5, 0.9]] if expensive else [[0.9, 0.5, 0.1]]
    return decide(quality * n, [[0.01, 0.1, 1.0]] * n, ["small", "medium", "large"], budget=budget)


def test_quota_slides_per_principal():
    clock = Clock()
    quota = ExpensiveRouteQuota(max_routes=2, window_seconds=10, clock=clock, limits={"vip": 3})
    checked = [quota.check_decision(d, "mallory") for d in decisions(3)]
    assert [d.candidate for d in checked] == ["large", "large", "medium"]  # the best of the rest under S - λC
    assert checked[2].metadata["guards"][0]["action"] == "downgraded" and "quota" in checked[2].reason
    assert checked[2].metadata["downgraded_from"] == "large" and "guards" not in checked[0].metadata
    assert [quota.check_decision(d, "vip").candidate for d in decisions(4)] == ["large"] * 3 + ["medium"]
    assert quota.check_decision(decisions(1)[0], "alice").candidate == "large"
    assert quota.check_decision(decisions(1, expensive=False)[0], "mallory").candidate == "small"  # not counted
    clock.now = 10.5
    assert quota.remaining("mallory") == 2 and quota.check_decision(decisions(1)[0], "mallory").candidate == "large"
    quota.reset("vip")
    assert quota.remaining("vip") == 3


def test_quota_refuses_with_a_typed_error_when_asked_or_when_nothing_cheaper_fits():
    refuse = ExpensiveRouteQuota(max_routes=0, action="refuse")
    with pytest.raises(QuotaExceededError, match="quota of 0 expensive routes"):
        refuse.check_decision(decisions(1)[0], "mallory")
    everything = ExpensiveRouteQuota(max_routes=0, expensive=["small", "medium", "large"])
    with pytest.raises(QuotaExceededError, match="no cheaper candidate"):
        everything.check_decision(decisions(1)[0], "mallory")
    within_budget = ExpensiveRouteQuota(max_routes=0, expensive=["large"])
    assert within_budget.check_decision(decisions(1, budget=1.0)[0], "m").candidate == "medium"
    for bad in ({"max_routes": -1}, {"max_routes": 1, "window_seconds": 0}, {"max_routes": 1, "action": "shrug"},
                {"max_routes": 1, "limits": {"x": 1.5}}):
        with pytest.raises(InvalidInputError):
            ExpensiveRouteQuota(**bad)


def test_alarm_fires_once_per_episode_on_a_shift_and_recovers():
    fired = []
    alarm = RoutingShiftAlarm({"small": 0.7, "medium": 0.2, "large": 0.1}, window=20, min_requests=10,
                              alpha=1e-3, on_alarm=fired.append)
    for d in decisions(9):
        alarm.check_decision(d, "mallory")
    assert not alarm.active("mallory")  # too few requests to test
    for d in decisions(11):
        alarm.check_decision(d, "mallory")
    assert alarm.active("mallory") and len(fired) == 1 and fired[0].requests == 10
    assert fired[0].observed["large"] == 1.0 and fired[0].p_value < 1e-3
    for d in decisions(30, expensive=False):
        alarm.check_decision(d, "mallory")
    assert not alarm.active("mallory") and len(fired) == 1
    for d in decisions(30, expensive=False):
        alarm.check_decision(d, "alice")  # a shift towards cheap routes is not an attack
    assert not alarm.active("alice")


def test_alarm_actions_and_clean_traffic():
    downgrade = RoutingShiftAlarm({"small": 0.9, "large": 0.1}, window=10, min_requests=5, action="downgrade",
                                  expensive=["large"])
    picks = [downgrade.check_decision(d, "m").candidate for d in decisions(8)]
    assert picks[:4] == ["large"] * 4 and set(picks[5:]) == {"medium"}
    refuse = RoutingShiftAlarm({"small": 0.9, "large": 0.1}, window=10, min_requests=5, action="refuse")
    with pytest.raises(RoutingAlarmError):
        for d in decisions(8):
            refuse.check_decision(d, "m")
    rng = np.random.default_rng(0)
    clean = RoutingShiftAlarm({"small": 0.5, "large": 0.5}, window=50, min_requests=20, alpha=1e-3)
    for _ in range(500):  # honest traffic drawn from the reference: no alarm
        cheap = rng.random() < 0.5
        clean.check_decision(decide([[0.9, 0.1] if cheap else [0.1, 0.9]], [[0.01, 1.0]], ["small", "large"])[0],
                             "alice")
    assert clean.alarms == []
    with pytest.raises(NotFittedError):
        RoutingShiftAlarm(min_requests=1).check_decision(decisions(1)[0], "m")
    for bad in ({"window": 1}, {"min_requests": 0}, {"alpha": 2.0}, {"direction": "up"}, {"action": "panic"},
                {"reference": {"a": -1.0}}):
        with pytest.raises(InvalidInputError):
            RoutingShiftAlarm(**bad)


def test_guarded_router_is_a_router(security_data):
    train, cal, test = security_data
    quota = ExpensiveRouteQuota(max_routes=5)
    alarm = RoutingShiftAlarm(window=20, min_requests=10)
    guarded = GuardedRouter(create_router("knn", k=5, lam=20.0, featurizer="tfidf"), [quota, alarm]).fit(train, cal)
    assert guarded.is_fitted and guarded.candidates_ == ["small", "large"]
    assert set(alarm.reference) == {"small", "large"}  # learned from the calibration routes
    np.testing.assert_allclose(guarded.predict_quality(test), guarded.router.predict_quality(test))
    routes = guarded.route(test.queries, principal="team-a")
    assert sum(d.candidate == "large" for d in routes) <= 5 and all(d.router == "guarded:knn" for d in routes)
    assert routes[0].metadata["principal"] == "team-a"
    assert guarded.route_indices(test.queries[:3], principal="team-b").shape == (3,)
    assert guarded.route_one(test.queries[0]).metadata["principal"] == "anonymous"
    with pytest.raises(InvalidInputError, match="save the wrapped router"):
        guarded.save("x.npz")
    with pytest.raises(InvalidInputError):
        GuardedRouter("not a router")
    with pytest.raises(InvalidInputError):
        GuardedRouter(guarded.router, [object()])
    with pytest.raises(NotFittedError):
        GuardedRouter(BestSingleRouter()).route(["q"])


def test_query_guards_see_every_query_and_leave_notes(security_data):
    train, _, _ = security_data

    class Upper(RouteGuard):
        name = "upper"

        def check_query(self, query, principal):
            return query.upper(), {"action": "uppercased", "who": principal}

    guarded = GuardedRouter(BestSingleRouter().fit(train), [Upper()])
    decision = guarded.route_one("hello", principal="p")
    assert decision.metadata["guards"] == [{"guard": "upper", "action": "uppercased", "who": "p"}]
    cleaned, notes = guarded.clean(train.subset([0, 1]))
    assert cleaned.queries == [q.upper() for q in train.queries[:2]] and cleaned.embeddings is None
