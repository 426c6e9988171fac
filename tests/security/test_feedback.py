"""Feedback poisoning: a campaign of fake rewards moves a defended bandit far less than an undefended one."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.security.feedback import FeedbackSanitizer

bandits = pytest.importorskip("rag_routing.routers.bandits")
COSTS = [0.01, 0.2]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def honest_phase(learner, rng, n=300):
    """Honest users: 'large' is right 90 % of the time, 'small' 50 %."""
    for _ in range(n):
        d = learner.route(["q"])[0]
        p = 0.9 if d.candidate == "large" else 0.5
        learner.update(d.decision_id, quality=float(rng.random() < p), **({"principal": f"user{rng.integers(50)}"}
                                                                         if isinstance(learner, FeedbackSanitizer)
                                                                         else {}))


def campaign(learner, n=2000, value=1.0):
    """One attacker: every decision they get is rated 'value' if it went to 'small', 0 otherwise."""
    rejected = 0
    for _ in range(n):
        d = learner.route(["q"])[0]
        score = value if d.candidate == "small" else 0.0
        if isinstance(learner, FeedbackSanitizer):
            rejected += not learner.update(d.decision_id, quality=score, principal="mallory").accepted
        else:
            learner.update(d.decision_id, quality=score)
    return rejected


def fresh(seed=0):
    return bandits.EpsilonGreedyRouter(epsilon=0.2, lam=1.0, seed=seed).start(["small", "large"], cost=COSTS)


@pytest.mark.parametrize("value", [1.0, 50.0], ids=["in-range", "out-of-range"])
def test_a_poisoning_campaign_moves_the_defended_bandit_less(value):
    plain, defended_router = fresh(), fresh()
    defended = FeedbackSanitizer(defended_router, max_updates=20, window_seconds=3600, clip=(0.0, 1.0))
    honest_phase(plain, np.random.default_rng(0))
    honest_phase(defended, np.random.default_rng(0))
    before_plain, before_defended = plain.predict_quality(["q"])[0], defended.predict_quality(["q"])[0]
    assert plain.route_indices(["q"]).tolist() == defended.route_indices(["q"]).tolist() == [1]
    campaign(plain, value=value)
    rejected = campaign(defended, value=value)
    moved_plain = np.abs(plain.predict_quality(["q"])[0] - before_plain).max()
    moved_defended = np.abs(defended.predict_quality(["q"])[0] - before_defended).max()
    assert rejected >= 1900 and defended.counts["rate_limited"] == rejected and defended.counts["outlier"] == 0
    assert moved_defended < 0.25 * moved_plain
    assert plain.route_indices(["q"]).tolist() == [0]  # the undefended bandit now prefers 'small'...
    assert defended.route_indices(["q"]).tolist() == [1]  # ...the defended one still knows better


def test_outliers_are_rejected_against_the_candidates_history():
    clock = Clock()
    guard = FeedbackSanitizer(fresh(), max_updates=10_000, clip=None, outlier_z=4.0, min_history=20, clock=clock)
    rng = np.random.default_rng(1)
    for _ in range(200):  # honest continuous scores around 0.6
        d = guard.route(["q"])[0]
        assert guard.update(d.decision_id, quality=float(rng.normal(0.6, 0.05)), principal="u").accepted
    d = guard.route(["q"])[0]
    verdict = guard.update(d.decision_id, quality=5.0, principal="mallory")
    assert (verdict.accepted, verdict.reason, verdict.value) == (False, "outlier", None)
    assert guard.update(d.decision_id, quality=0.62, principal="mallory").accepted  # still pending: usable


def test_trusted_principals_rate_limit_window_and_validation():
    clock = Clock()
    guard = FeedbackSanitizer(fresh(), max_updates=1, window_seconds=10, trusted=["evaluator"], clock=clock)
    assert guard.update(guard.route(["q"])[0].decision_id, quality=1.0, principal="u").accepted
    assert guard.update(guard.route(["q"])[0].decision_id, quality=1.0, principal="u").reason == "rate_limited"
    assert all(guard.update(guard.route(["q"])[0].decision_id, quality=2.0, principal="evaluator").reason
               == "clipped" for _ in range(5))
    clock.now = 11.0
    assert guard.update(guard.route(["q"])[0].decision_id, reward=0.5, principal="u").accepted
    d = guard.route(["q"])[0]
    for bad in ({"quality": float("nan")}, {"reward": float("inf")}, {}, {"quality": 1.0, "reward": 1.0},
                {"quality": "high"}):
        with pytest.raises(InvalidInputError):
            guard.update(d.decision_id, principal="u", **bad)
    with pytest.raises(InvalidInputError):
        guard.update(d.decision_id, quality=1.0, principal="")
    with pytest.raises(bandits.UnknownDecisionError):
        guard.update("never-routed", quality=1.0, principal="evaluator")
    assert guard.candidates_ == ["small", "large"]  # everything else is the router's
    for bad in ({"max_updates": -1}, {"window_seconds": 0}, {"clip": (1.0, 0.0)}, {"outlier_z": 0}):
        with pytest.raises(InvalidInputError):
            FeedbackSanitizer(fresh(), **bad)
    with pytest.raises(InvalidInputError):
        FeedbackSanitizer(object())
