"""Support estimates: conformal p-values, the fallback to the prior choice out of support, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.decision import select
from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.routers.base import load_router
from rag_routing.routers.registry import create_router
from rag_routing.routers.support import GuardSettings, SupportEstimator, force_prior
from tests.routers.guard_data import CANDIDATES, COST, featurizer, task

LEARNED = ["knn", "cluster", "mf", "classifier", "regressor", "sw_ranking", "elo"]


@pytest.fixture(scope="module")
def data():
    return task(400, axis=0, seed=0), task(200, axis=0, seed=1), task(200, axis=8, seed=2)


def fixed_choice(train, lam: float) -> str:
    """The prior: best training-mean quality - λ·cost."""
    return CANDIDATES[int(np.argmax(np.nanmean(train.quality, axis=0) - lam * COST))]


def test_conformal_p_values_are_calibrated_in_distribution():
    rng = np.random.default_rng(3)
    est = SupportEstimator(k=5).fit(rng.normal(size=(500, 6)))
    p = est.p_values(rng.normal(size=(2000, 6)))
    assert ((p > 0) & (p <= 1)).all()
    for alpha in (0.05, 0.1, 0.2):  # conservative: at most about alpha flagged
        assert (p < alpha).mean() <= alpha + 0.02
    far = est.p_values(rng.normal(loc=3.0, size=(50, 6)))
    assert (far <= 1 / 501).all() and (far > 0).all()  # beyond every calibration score: the extrapolated tail


def test_conformal_tail_without_spread_is_not_extrapolated_from_nothing():
    from rag_routing.routers.support import conformal_p

    # Every held-out query had all its words known (share 0): nothing says how fast the tail falls, so one new
    # word (a number, a name) keeps the plain conformal 1/(n+1) instead of a p-value of ~1e-8.
    flat = np.zeros(24)
    assert conformal_p(flat, np.array([0.0, 1 / 7, 1.0])).tolist() == pytest.approx([1.0, 1 / 25, 1 / 25])
    # A flat top tail over a spread body: the body's standard deviation sets the scale.
    body = np.sort(np.r_[np.linspace(0.0, 0.5, 20), [0.5] * 4])
    p = conformal_p(body, np.array([0.6, 2.0]))
    assert 1e-6 < p[0] < 1 / 25 and p[1] < p[0]


def test_split_conformal_beyond_max_reference():
    rng = np.random.default_rng(4)
    est = SupportEstimator(k=3, max_reference=200).fit(rng.normal(size=(600, 4)))
    assert est.reference_.shape == (200, 4) and est.calibration_.size == 400
    assert (est.p_values(rng.normal(size=(1000, 4))) < 0.1).mean() <= 0.13


@pytest.mark.parametrize("name", LEARNED)
def test_unseen_task_is_out_of_support_and_falls_back(data, name):
    train, same, other = data
    router = create_router(name, featurizer=featurizer()).fit(train)
    assert (router.out_of_support(same)).mean() <= 0.05
    assert (router.out_of_support(other)).mean() >= 0.95
    for lam in (0.0, 20.0):
        decisions = router.route(other, lam=lam)
        prior = fixed_choice(train, lam)
        out = [d for d in decisions if d.metadata["out_of_support"]]
        assert out and all(d.candidate == prior for d in out)
        assert all(d.reason.startswith("out of support") and d.metadata["support_p"] < 0.01 for d in out)
        assert np.array_equal(router.route_indices(other, lam=lam)[[d.metadata["out_of_support"] for d in
                                                                     decisions]], [CANDIDATES.index(prior)] * len(out))


@pytest.mark.parametrize("name", ["knn", "cluster", "mf", "classifier"])
def test_in_distribution_keeps_per_query_routing(data, name):
    train, same, _ = data
    router = create_router(name, featurizer=featurizer()).fit(train)
    inside = ~router.out_of_support(same)
    np.testing.assert_array_equal(router.predict_raw_quality(same)[inside] if router.guards_.shrinkage is None
                                  else router.guards_.shrinkage.apply(router.predict_raw_quality(same))[inside],
                                  router.predict_quality(same)[inside])
    rows = np.arange(len(same))
    guarded = same.quality[rows, router.route_indices(same, lam=0.0)].mean()
    raw = same.quality[rows, select(router.predict_raw_quality(same), router.predict_cost(same), 0.0)].mean()
    assert guarded >= raw - 0.01
    assert len({d.candidate for d in router.route(same, lam=0.0)}) >= 2  # still routes per query


def test_guards_off_keeps_raw_estimates(data):
    train, _, other = data
    router = create_router("knn", featurizer=featurizer())
    router.guard_settings = GuardSettings.off()
    router.fit(train)
    assert np.isnan(router.support(other)).all() and not router.out_of_support(other).any()
    np.testing.assert_array_equal(router.predict_quality(other), router.predict_raw_quality(other))
    assert all(d.metadata["support_p"] is None for d in router.route(other.subset([0, 1])))


def test_force_prior_sends_everything_to_the_fixed_choice(data):
    train, same, _ = data
    router = create_router("knn", featurizer=featurizer()).fit(train)
    force_prior(router)
    decisions = router.route(same, lam=0.0)
    assert {d.candidate for d in decisions} == {fixed_choice(train, 0.0)}
    assert all(d.metadata["prior_forced"] and "fallback forced" in d.reason for d in decisions)
    force_prior(router, False)
    assert len({d.candidate for d in router.route(same, lam=0.0)}) > 1


def test_support_survives_save_and_load(data, tmp_path):
    train, same, other = data
    router = create_router("cluster", featurizer=featurizer()).fit(train)
    loaded = load_router(router.save(tmp_path / "r.npz"))
    for X in (same, other):
        np.testing.assert_allclose(loaded.support(X), router.support(X))
        np.testing.assert_allclose(loaded.predict_quality(X), router.predict_quality(X))
    assert loaded.guard_settings == router.guard_settings


def test_added_candidate_stays_unguarded_but_known_ones_fall_back(data):
    train, _, other = data
    router = create_router("cluster", n_clusters=4, featurizer=featurizer()).fit(train)
    router.add_candidate("new", [1.0] * 4, other.subset(range(4)), cost=0.002)
    S, out = router.predict_quality(other), router.out_of_support(other)
    assert S.shape == (len(other), 4) and out.mean() > 0.9
    np.testing.assert_allclose(S[out, :3], np.tile(np.nanmean(train.quality, axis=0), (int(out.sum()), 1)))
    np.testing.assert_allclose(S[:, 3], router.predict_raw_quality(other)[:, 3])


def test_not_guarded_routers():
    train = task(100, axis=0, seed=5)
    for name in ("best", "random", "epsilon_greedy"):  # no query features: nothing to be out of
        router = create_router(name).fit(train)
        assert np.isnan(router.support(train)).all()


def test_bad_settings_and_unfitted():
    with pytest.raises(InvalidInputError):
        GuardSettings(alpha=1.5)
    with pytest.raises(InvalidInputError):
        GuardSettings(k=0)
    with pytest.raises(NotFittedError):
        create_router("knn").support(["a question"])
    with pytest.raises(InvalidInputError):
        SupportEstimator().fit(np.zeros((2, 3)))
    est = SupportEstimator().fit(np.random.default_rng(0).normal(size=(20, 3)))
    with pytest.raises(InvalidInputError):
        est.p_values(np.zeros((1, 4)))
