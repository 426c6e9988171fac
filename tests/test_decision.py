"""The shared decision rule: Eq. 1 (argmax S - λC), Eq. 2 (subject to C <= B), ties, infeasible rows, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.decision import calibrate, calibrate_threshold, decide, expensive_share, select
from rag_routing.errors import InvalidInputError, NoRouteError, UnknownCandidateError

S = np.array([[0.6, 0.8, 0.9], [0.5, 0.5, 0.5], [0.9, 0.2, 0.1]])
C = np.array([[0.01, 0.05, 0.20], [0.03, 0.01, 0.02], [0.10, 0.01, 0.01]])


def test_eq1_quality_only_picks_argmax():
    assert select(S, C, lam=0.0).tolist() == [2, 1, 0]


def test_eq1_lambda_trades_quality_for_cost():
    # Row 0 at λ=1: 0.59, 0.75, 0.70 -> candidate 1; at λ=10: 0.5, 0.3, -1.1 -> candidate 0.
    assert select(S, C, lam=1.0)[0] == 1
    assert select(S, C, lam=10.0)[0] == 0


def test_eq2_budget_excludes_expensive_candidates():

    chosen = select(S, C, lam=0.0, budget=0.06)
    assert chosen.tolist() == [1, 1, 1]  # row 2: candidate 0 costs 0.10 > 0.06, best affordable is 1 (0.2)


def test_per_row_budget():
    chosen = select(S, C, budget=np.array([1.0, 1.0, 0.05]))
    assert chosen.tolist() == [2, 1, 1]


def test_ties_go_to_the_cheaper_candidate():
    # Row 1 has equal quality everywhere; cheapest is index 1.
    assert select(S, C)[1] == 1
    tied = select([[0.7, 0.7]], [[0.2, 0.1]])
    assert tied.tolist() == [1]


def test_equal_cost_ties_go_to_lower_index():
    assert select([[0.7, 0.7]], [[0.1, 0.1]]).tolist() == [0]


def test_infeasible_row_raises_or_takes_fallback():
    with pytest.raises(NoRouteError, match="no candidate within the budget"):
        select(S, C, budget=0.005)
    chosen = select(S, C, budget=0.005, fallback="a", candidates=["a", "b", "c"])
    assert chosen.tolist() == [0, 0, 0]
    with pytest.raises(UnknownCandidateError):
        select(S, C, budget=0.005, fallback="zzz", candidates=["a", "b", "c"])
    with pytest.raises(UnknownCandidateError):
        select(S, C, budget=0.005, fallback=7)


def test_cost_row_broadcast_to_all_queries():
    assert select(S, [0.01, 0.05, 0.2], lam=0.0).tolist() == [2, 0, 0]


@pytest.mark.parametrize(
    "quality, cost, message",
    [
        ([[np.nan, 0.5]], [[0.1, 0.2]], "NaN"),
        ([[0.5, 0.5]], [[0.1, -0.2]], "cost must be finite"),
        ([[0.5, 0.5]], [[0.1, 0.2, 0.3]], "same shape"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "2-D"),
    ],
)
def test_bad_input_is_a_clear_error(quality, cost, message):
    with pytest.raises(InvalidInputError, match=message):
        select(quality, cost)


def test_negative_lambda_and_budget_rejected():
    with pytest.raises(InvalidInputError, match="lam"):
        select(S, C, lam=-1)
    with pytest.raises(InvalidInputError, match="budget"):
        select(S, C, budget=-1)


def test_decide_explains_each_choice():
    decisions = decide(S, C, ["a", "b", "c"], lam=1.0, budget=0.06, router="test")
    first = decisions[0]
    assert first.candidate == "b" and first.index == 1
    assert first.quality == {"a": 0.6, "b": 0.8, "c": 0.9}
    assert first.cost["c"] == pytest.approx(0.2)
    assert first.lam == 1.0 and first.budget == 0.06 and first.router == "test"
    assert "'b' maximises" in first.reason and "2 feasible of 3" in first.reason
    assert len({d.decision_id for d in decisions}) == 3
    fallback = decide(S, C, ["a", "b", "c"], budget=0.0, fallback="b")[0]
    assert fallback.fallback and "fallback" in fallback.reason
    assert fallback.to_dict()["candidate"] == "b"


def test_calibration_reaches_target_share_within_one_percent():
    rng = np.random.default_rng(0)
    quality = rng.random((10_000, 4))
    cost = rng.random((10_000, 4)) * np.array([0.001, 0.005, 0.02, 0.05])
    # At λ = 0 about half of the rows go to the two expensive candidates.
    for target in (0.05, 0.2, 0.35, 0.45):
        lam = calibrate(quality, cost, target, expensive=[2, 3])
        assert abs(expensive_share(quality, cost, lam, [2, 3]) - target) <= 0.01


def test_calibration_defaults_to_most_expensive_and_handles_unreachable_targets():
    rng = np.random.default_rng(1)
    quality = rng.random((10_000, 2))
    cost = np.tile([0.001, 0.03], (10_000, 1))
    lam = calibrate(quality, cost, 0.3)
    assert abs(expensive_share(quality, cost, lam, [1]) - 0.3) <= 0.01
    # At λ = 0 about half go to the expensive model, so any larger target returns λ = 0.
    assert calibrate(quality, cost, 0.9) == 0.0
    with pytest.raises(InvalidInputError):
        calibrate(quality, cost, 1.5)


def test_threshold_calibration_two_candidates():
    scores = np.linspace(0, 1, 1001)
    threshold = calibrate_threshold(scores, 0.2)
    assert abs((scores > threshold).mean() - 0.2) <= 0.01
    with pytest.raises(InvalidInputError):
        calibrate_threshold([], 0.5)
