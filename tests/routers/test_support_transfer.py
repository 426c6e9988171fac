"""Transfer guards: contextual bandits and Elo fall back on another task's queries, TF-IDF support sees unknown
words, small calibration sets can still flag, and `auto` says when its chosen router fell back."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing import RoutingDataset
from rag_routing.routers.auto import AutoRouter
from rag_routing.routers.registry import create_router
from rag_routing.routers.support import GuardSettings, SupportEstimator, conformal_p
from tests.routers.guard_data import CANDIDATES, COST, featurizer, task

ANIMALS = ["cat", "dog", "horse", "sheep", "goat", "cow", "duck", "goose", "pig", "hen", "mule", "lamb"]
CHEMISTRY = ["atom", "proton", "electron", "ion", "molecule", "acid", "base", "salt", "metal", "bond", "gas", "ph"]


def text_task(n: int, words: list[str], seed: int) -> RoutingDataset:
    """Queries made of ``words``; 'small' is right when the query names the first half of the words."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(words), 4, replace=False) for _ in range(n)]
    queries = ["which " + " ".join(words[i] for i in p) for p in picks]
    first = np.array([(p < len(words) // 2).sum() >= 2 for p in picks])
    quality = np.stack([first & (rng.random(n) < 0.95), ~first & (rng.random(n) < 0.95), rng.random(n) < 0.8],
                       axis=1).astype(float)
    return RoutingDataset(queries, CANDIDATES, quality, np.tile(COST, (n, 1)))


def fixed(train: RoutingDataset, lam: float) -> str:
    return CANDIDATES[int(np.argmax(np.nanmean(train.quality, axis=0) - lam * COST))]


@pytest.mark.parametrize("name", ["linucb", "thompson", "elo"])
def test_router_falls_back_on_another_tasks_queries(name):
    train, same, other = task(300, axis=0, seed=0), task(150, axis=0, seed=1), task(150, axis=8, seed=2)
    router = create_router(name, featurizer=featurizer()).fit(train)
    assert router.out_of_support(same).mean() < 0.1 and router.out_of_support(other).mean() > 0.9
    S = router.predict_quality(other)
    out = router.out_of_support(other)
    np.testing.assert_allclose(S[out], np.tile(np.nanmean(train.quality, axis=0), (int(out.sum()), 1)))
    decisions = router.route(other, lam=0.0)
    assert all(d.candidate == fixed(train, 0.0) for d, o in zip(decisions, out) if o)
    assert all(d.metadata["out_of_support"] and "out of support" in d.reason for d, o in zip(decisions, out) if o)


def test_bandit_online_act_does_not_explore_out_of_support():
    train, other = task(300, axis=0, seed=0), task(100, axis=8, seed=2)
    router = create_router("thompson", featurizer=featurizer(), seed=1).fit(train)
    chosen, propensity = router.act(other, lam=0.0)
    out = router.out_of_support(other)
    assert out.mean() > 0.9
    assert (np.asarray(CANDIDATES)[chosen[out]] == fixed(train, 0.0)).all() and (propensity[out] == 1.0).all()


def test_tfidf_support_flags_queries_of_unseen_vocabulary():
    train, same, other = text_task(300, ANIMALS, 0), text_task(100, ANIMALS, 1), text_task(100, CHEMISTRY, 2)
    router = create_router("knn", featurizer="tfidf").fit(train)
    assert router.out_of_support(same).mean() < 0.05
    assert router.out_of_support(other).mean() > 0.95
    assert router.out_of_support(other.queries).mean() > 0.95     # plain strings too
    # One known word and three unknown ones: in TF-IDF space such a query maps onto its known word, right among
    # the training queries; only its unknown words give it away.
    rng = np.random.default_rng(5)
    mixed = ["which " + " ".join([*rng.choice(ANIMALS, 1), *rng.choice(CHEMISTRY, 3, replace=False)])
             for _ in range(100)]
    assert router.out_of_support(mixed).mean() > 0.95
    assert (router.support(mixed) > 0).all()
    blind = create_router("knn", featurizer="tfidf")
    blind.guard_settings = GuardSettings(vocabulary=False)
    assert blind.fit(train).out_of_support(mixed).mean() < 0.5


def test_vocabulary_support_round_trips(tmp_path):
    train, other = text_task(120, ANIMALS, 0), text_task(30, CHEMISTRY, 2)
    router = create_router("knn", featurizer="tfidf").fit(train)
    path = router.save(tmp_path / "knn.npz")
    loaded = type(router).load(path)
    np.testing.assert_allclose(loaded.support(other), router.support(other))


def test_small_calibration_sets_can_still_flag():
    rng = np.random.default_rng(0)
    est = SupportEstimator(k=3).fit(rng.normal(size=(40, 4)))     # 40 calibration rows: 1/41 > 0.01
    assert (est.p_values(rng.normal(loc=6.0, size=(20, 4))) < 0.01).all()
    assert (est.p_values(rng.normal(size=(200, 4))) < 0.01).mean() < 0.05
    cal = np.sort(rng.random(50))
    p = conformal_p(cal, np.array([0.5, cal[-1], cal[-1] + 0.1, cal[-1] + 1.0]))
    assert p[0] > p[1] >= p[2] > p[3] > 0 and p[1] == pytest.approx(2 / 51)


def test_auto_decisions_carry_the_chosen_routers_support():
    train, other = task(300, axis=0, seed=0), task(60, axis=8, seed=2)
    auto = AutoRouter(routers=["knn"], featurizer=featurizer()).fit(train)
    assert auto.chosen_ == "knn", auto.explain()["reason"]   # the sub-topic signal is real in distribution
    decisions = auto.route(other, lam=0.0)
    p = auto.support(other)
    assert [d.metadata["support_p"] for d in decisions] == pytest.approx(p.tolist())
    flagged = [d for d in decisions if d.metadata["out_of_support"]]
    assert len(flagged) > 0.9 * len(decisions)
    assert all(d.reason.startswith("out of support of the chosen router 'knn'") for d in flagged)
    assert all(d.candidate == fixed(train, 0.0) for d in flagged)
    inside = auto.route(task(60, axis=0, seed=1), lam=0.0)
    assert sum(d.metadata["out_of_support"] for d in inside) <= 6


def test_auto_kept_fixed_has_no_support():
    rng = np.random.default_rng(0)
    n = 100
    data = RoutingDataset([f"q{i}" for i in range(n)], CANDIDATES, (rng.random((n, 3)) < 0.5).astype(float),
                          np.tile(COST, (n, 1)))
    auto = AutoRouter(routers=["knn"], featurizer="tfidf").fit(data)
    assert auto.chosen_ == "fixed"
    decision = auto.route(["q1"], lam=0.0)[0]
    assert decision.metadata["support_p"] is None and not decision.metadata["out_of_support"]


def test_online_learning_drops_the_shrinkage_fitted_at_fit():
    from rag_routing.routers.support import _learned_since_fit

    train = task(300, axis=0, seed=0)
    router = create_router("linucb", featurizer=featurizer()).fit(train)
    state = router.guards_
    assert state.version == pytest.approx(np.isfinite(train.quality).sum())
    assert not _learned_since_fit(router, state)
    batch = task(5, axis=0, seed=9)
    router.learn(batch, [2] * 5, quality=np.ones(5), cost=np.full(5, COST[2]))
    assert _learned_since_fit(router, state)
    np.testing.assert_allclose(router.predict_quality(batch), router.predict_raw_quality(batch))
