"""Confounder gadgets (Shafran et al. 2025) against every learned router, and the flip rate before and after
each defence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rag_routing.decision import calibrate
from rag_routing.embeddings import TfidfFeaturizer
from rag_routing.errors import InvalidInputError
from rag_routing.routers.registry import create_router
from rag_routing.security import (
    ExpensiveRouteQuota,
    Gadget,
    GadgetFilter,
    GuardedRouter,
    RoutingShiftAlarm,
    common_tokens,
    flip_report,
    search_gadget,
)

LEARNED = ["knn", "cluster", "sw_ranking", "elo", "mf", "classifier", "regressor"]


@pytest.fixture(scope="module")
def setting(security_data):
    train, cal, test = security_data
    featurizer = TfidfFeaturizer(n_components=32).fit(train.queries)
    train = train.with_embeddings(featurizer.transform(train.queries), featurizer.name)
    lm_filter = GadgetFilter(false_positive_rate=0.02).fit(train.queries + cal.queries)
    return train, cal, test, featurizer, common_tokens(train.queries, 200), lm_filter


@pytest.fixture(scope="module")
def attacks(setting):
    """Per learned router: the router (λ calibrated to send half the calibration queries to 'large') and the
    universal gadget hill-climbed on 15 training queries it sends to 'small'."""
    train, cal, _, featurizer, vocab, _ = setting
    out = {}
    for name in LEARNED:
        router = create_router(name, featurizer=featurizer).fit(train)
        router.lam = calibrate(router.predict_quality(cal), router.predict_cost(cal), 0.5, [1])
        cheap = [q for q, i in zip(train.queries, router.route_indices(train)) if i == 0][:15]
        found = search_gadget(router, cheap, n_tokens=8, vocabulary=vocab, iterations=30, candidates_per_step=16)
        out[name] = (router, found)
    return out


@pytest.mark.parametrize("name", LEARNED)
def test_hill_climbing_raises_the_strong_score(attacks, name):
    _, found = attacks[name]
    assert found.objective >= found.history[0] and found.history == sorted(found.history)
    assert len(found.gadget.tokens) == 8 and found.evaluations > 0 and math.isfinite(found.objective)


def test_universal_gadgets_flip_held_out_queries_and_the_filter_undoes_most(attacks, setting):
    _, _, test, _, _, lm_filter = setting
    rates, filtered = {}, {}
    for name, (router, found) in attacks.items():
        report = flip_report(router, test.queries, found.gadget)
        assert report.n_queries == len(test) and 0 < report.n_cheap < len(test)
        rates[name] = report.flip_rate
        defended = flip_report(router, test.queries, found.gadget, defence=GuardedRouter(router, [lm_filter]),
                               defence_name="filter")
        filtered[name] = defended.flip_rate
        assert defended.flip_rate <= report.flip_rate + 1e-9 and defended.clean_changed <= 0.1
    print("flip rates", {k: round(v, 2) for k, v in rates.items()}, "after filter",
          {k: round(v, 2) for k, v in filtered.items()})
    assert max(rates.values()) >= 0.5  # some learned routers are badly exposed...
    assert np.mean(list(filtered.values())) < 0.5 * np.mean(list(rates.values()))  # ...and the filter helps


def test_quota_and_alarm_cap_what_one_attacker_can_spend(attacks, setting):
    _, cal, test, _, _, _ = setting
    router, found = attacks["classifier"]  # the most exposed router on this data
    undefended = flip_report(router, test.queries, found.gadget)
    quota = GuardedRouter(router, [ExpensiveRouteQuota(max_routes=len(test) // 2, window_seconds=3600)])
    capped = flip_report(router, test.queries, found.gadget, defence=quota, defence_name="quota")
    assert capped.expensive_share_attacked <= 0.5 + 1e-9 < undefended.expensive_share_attacked
    alarm = RoutingShiftAlarm(window=30, min_requests=15, alpha=1e-3, action="downgrade")
    guarded = GuardedRouter(router, [alarm]).prepare(cal)
    alarmed = flip_report(router, test.queries, found.gadget, defence=guarded, defence_name="alarm")
    assert alarm.active("attacker") and [a.principal for a in alarm.alarms] == ["attacker"]
    assert alarmed.flip_rate < 0.5 * undefended.flip_rate and not alarm.active("benign")


def test_gadget_application_and_validation(security_data):
    gadget = Gadget(("x", "y"), "prefix")
    assert gadget.apply("q") == "x y q" and Gadget(("x",)).apply_all(["a", "b"]) == ["a x", "b x"]
    router = create_router("best").fit(security_data[0])
    for bad in ({"n_tokens": 0}, {"position": "middle"}, {"vocabulary": ["one"]}, {"iterations": True}):
        with pytest.raises(InvalidInputError):
            search_gadget(router, ["hello there"], **bad)
    with pytest.raises(InvalidInputError):
        search_gadget(router, [])
