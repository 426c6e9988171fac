"""Metric tests on hand-computed cases: RouteLLM's thresholds/APGR/CPT, Pareto front, hull, AIQ."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.metrics import (
    RouteLLMCurve,
    aiq,
    apgr,
    cost_to_reach,
    cpt,
    hull_value,
    non_decreasing_hull,
    pareto_front,
    routellm_curve,
    routellm_thresholds,
)


def curve(share, performance):
    share = np.asarray(share, dtype=float)
    return RouteLLMCurve(np.zeros_like(share), share, np.asarray(performance, dtype=float))


# ------------------------------------------------------------------ RouteLLM
def test_thresholds_are_the_qcut_edges_linear_quantiles():
    # pandas.qcut([1, 2, 3, 4, 5], 10, retbins=True) gives 1.0, 1.4, ..., 5.0 (linear interpolation).
    edges = routellm_thresholds([5, 1, 3, 2, 4])
    assert edges == pytest.approx(np.linspace(1, 5, 11))


def test_curve_by_hand():
    scores = np.array([0.9, 0.1, 0.8, 0.2])
    strong = np.array([1.0, 1.0, 1.0, 0.0])
    weak = np.array([0.0, 1.0, 0.0, 1.0])
    c = routellm_curve(scores, strong, weak)
    # Edges 0.1, .13, .16, .19, .32, .5, .68, .81, .84, .87, .9: the first sends all to strong, the last
    # (score > 0.9) none; points come sorted by share, ties in edge order.
    assert c.thresholds.tolist() == pytest.approx([0.9, 0.81, 0.84, 0.87, 0.32, 0.5, 0.68, 0.13, 0.16, 0.19, 0.1])
    assert c.strong_share.tolist() == [0.0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 1.0]
    assert c.performance.tolist() == [0.5, 0.75, 0.75, 0.75, 1.0, 1.0, 1.0, 0.75, 0.75, 0.75, 0.75]
    # Area: 0.25 * (0.625 + 0.875 + 0.875 + 0.75) = 0.78125; APGR = (0.78125 - 0.5) / (0.75 - 0.5).
    assert apgr(c, weak=0.5, strong=0.75) == pytest.approx(1.125)


def test_apgr_of_reference_curves():
    assert apgr(curve([0, 1], [0.6, 0.8]), 0.6, 0.8) == pytest.approx(0.5)      # random mixing
    assert apgr(curve([0, 0.5, 1], [0.6, 0.6, 0.6]), 0.6, 0.8) == pytest.approx(0.0)
    assert apgr(curve([0, 0.5, 1], [0.8, 0.8, 0.8]), 0.6, 0.8) == pytest.approx(1.0)
    with pytest.raises(InvalidInputError):
        apgr(curve([0, 1], [0.6, 0.6]), 0.6, 0.6)


def test_cpt_interpolates_share_against_performance():
    c = curve([0.0, 0.5, 1.0], [0.6, 0.9, 1.0])
    # target for 50 %: 0.6 + 0.5 * 0.4 = 0.8 -> share 0.5 * (0.2 / 0.3)
    assert cpt(c, 0.6, 1.0, 0.5) == pytest.approx(1 / 3)
    assert cpt(c, 0.6, 1.0, 0.0) == pytest.approx(0.0)
    assert cpt(curve([0, 1], [0.6, 1.0]), 0.6, 1.0, 0.2) == pytest.approx(0.2)  # random: CPT(p) = p
    with pytest.raises(InvalidInputError):
        cpt(c, 0.6, 1.0, 1.5)


def test_oracle_cpt_matches_the_closed_form():
    # 16 queries: 4 only-strong-right, 8 both, 1 only-weak, 3 neither. weak 9/16, strong 12/16, perfect 13/16.
    strong = np.array([1] * 4 + [1] * 8 + [0] + [0] * 3, dtype=float)
    weak = np.array([0] * 4 + [1] * 8 + [1] + [0] * 3, dtype=float)
    c = routellm_curve(strong - weak, strong, weak)   # the oracle's score
    # CPT(50 %) = 0.5 * (strong - weak) / (perfect - weak) * share_only_strong = 1.5 / 16.
    assert cpt(c, 9 / 16, 12 / 16, 0.5) == pytest.approx(1.5 / 16)


def test_curve_leaves_unknown_outcomes_out():
    c = routellm_curve([0.1, 0.9], [np.nan, 1.0], [0.0, 0.0])
    assert c.performance[-1] == pytest.approx(1.0)   # all strong: only the known outcome counts


def test_curve_input_errors():
    with pytest.raises(InvalidInputError):
        routellm_curve([0.1, np.nan], [1, 1], [0, 0])
    with pytest.raises(InvalidInputError):
        routellm_curve([0.1, 0.2], [1, 1, 1], [0, 0])


# ------------------------------------------------------------------ RouterBench
def test_pareto_front():
    assert pareto_front([1, 2, 3, 2], [0.5, 0.4, 0.9, 0.7]).tolist() == [0, 3, 2]
    assert pareto_front([1, 1], [0.5, 0.5]).tolist() == [0]          # duplicates: the first
    assert pareto_front([2, 1], [0.9, 0.9]).tolist() == [1]          # same quality: the cheaper


def test_hull_drops_concave_dents_and_the_decreasing_tail():
    c, q = non_decreasing_hull([0, 1, 2, 3], [0.0, 0.2, 1.0, 0.5])
    assert c.tolist() == [0.0, 2.0] and q.tolist() == [0.0, 1.0]
    c, q = non_decreasing_hull([0, 1, 2, 4], [0.0, 0.6, 0.8, 1.0])   # already concave: kept
    assert c.tolist() == [0, 1, 2, 4] and q.tolist() == [0.0, 0.6, 0.8, 1.0]
    c, q = non_decreasing_hull([0, 1, 2], [0.0, 0.5, 1.0])           # collinear middle point dropped
    assert c.tolist() == [0, 2]
    assert hull_value(c, q, [-1.0, 1.0, 5.0]).tolist() == [0.0, 0.5, 1.0]


def test_aiq_by_hand():
    assert aiq([1.0, 3.0], [0.6, 0.8], cost_range=(1.0, 3.0)) == pytest.approx(0.7)
    assert aiq([1.0, 3.0], [0.6, 0.8], cost_range=(0.0, 4.0)) == pytest.approx((1.4 + 0.8) / 4)
    assert aiq([3.0], [0.9], cost_range=(1.0, 3.0)) == pytest.approx(0.0)    # only at the top of the range
    assert aiq([1.0], [0.9], cost_range=(1.0, 3.0)) == pytest.approx(0.9)    # flat from the bottom
    assert aiq([2.0, 2.0], [0.4, 0.7], cost_range=(2.0, 2.0)) == pytest.approx(0.7)  # degenerate range
    assert aiq([1.0, 2.0, 3.0], [0.5, 0.4, 1.0]) == pytest.approx(0.75)      # own range, dent removed
    with pytest.raises(InvalidInputError):
        aiq([1.0], [0.5], cost_range=(2.0, 1.0))


def test_cost_to_reach():
    assert cost_to_reach([1.0, 3.0], [0.6, 0.8], 0.7) == pytest.approx(2.0)
    assert cost_to_reach([1.0, 3.0], [0.6, 0.8], 0.5) == pytest.approx(1.0)
    assert cost_to_reach([1.0, 3.0], [0.6, 0.8], 0.8) == pytest.approx(3.0)
    assert cost_to_reach([1.0, 3.0], [0.6, 0.8], 0.81) is None
