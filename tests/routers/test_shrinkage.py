"""Shrinkage toward each candidate's training mean, fitted on held-out folds (empirical Bayes)."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.decision import select
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.registry import create_router
from rag_routing.routers.shrinkage import Shrinkage, fit_weights
from rag_routing.routers.support import GuardSettings
from tests.routers.guard_data import EMB, featurizer, task


def noise(n: int, seed: int) -> RoutingDataset:
    """Outcomes independent of the features: no router has real signal."""
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(n, 12)).astype(np.float32)
    quality = (rng.random((n, 3)) < [0.55, 0.6, 0.75]).astype(float)
    return RoutingDataset([f"q{seed}-{i}" for i in range(n)], ["small", "medium", "large"], quality,
                          np.tile([0.001, 0.004, 0.02], (n, 1))).with_embeddings(E / np.linalg.norm(E, axis=1)[:, None],
                                                                                   EMB)


def test_fit_weights_recovers_the_slope_and_clips():
    rng = np.random.default_rng(0)
    x = rng.random((2000, 2))
    y = np.column_stack([0.5 * x[:, 0] + 0.1 * rng.standard_normal(2000), rng.random(2000)])
    s = fit_weights(x, y, center=np.array([0.25, 0.5]))
    assert abs(s.weight[0] - 0.5) < 0.05 and s.weight[1] < 0.1
    y[:, 1] = -x[:, 1]  # anti-correlated: weight 0, never negative
    assert fit_weights(x, y, center=np.zeros(2)).weight[1] == 0.0
    assert np.isfinite(fit_weights(x, np.full_like(y, np.nan), center=np.zeros(2)).weight).all()


@pytest.mark.parametrize("name", ["cluster", "mf", "classifier"])
def test_no_signal_shrinks_to_the_best_fixed_choice(name):
    train, test = noise(600, 0), noise(300, 1)
    router = create_router(name, featurizer=featurizer()).fit(train)
    prior = int(np.argmax(train.mean_quality()))
    rows = np.arange(len(test))
    chosen = router.route_indices(test, lam=0.0)
    raw = select(router.predict_raw_quality(test), router.predict_cost(test), 0.0)
    assert (chosen == prior).mean() >= (raw == prior).mean()
    assert test.quality[rows, chosen].mean() >= test.quality[:, prior].mean() - 0.02


@pytest.mark.parametrize("name", ["cluster", "mf", "classifier", "regressor"])
def test_in_distribution_predictions_do_not_get_worse(name):
    train, test = task(500, axis=0, seed=0), task(300, axis=0, seed=3)
    router = create_router(name, featurizer=featurizer()).fit(train)
    known = ~np.isnan(test.quality)
    raw, shrunk = router.predict_raw_quality(test), router.predict_quality(test)
    mse = lambda S: float(np.mean((S[known] - test.quality[known]) ** 2))  # noqa: E731
    rows = np.arange(len(test))
    for lam in (0.0, 10.0, 40.0):
        routed = test.quality[rows, select(shrunk, router.predict_cost(test), lam)].mean()
        unshrunk = test.quality[rows, select(raw, router.predict_cost(test), lam)].mean()
        assert routed >= unshrunk - 0.02
    if router.guards_.shrinkage is not None:
        assert mse(shrunk) <= mse(raw) + 0.005
        report = router.guards_.shrinkage.report
        assert report["routing_shrunk"] >= report["routing_raw"]


def test_opt_out_and_small_data_and_online_routers():
    train = task(300, axis=0, seed=0)
    router = create_router("cluster", featurizer=featurizer())
    router.guard_settings = GuardSettings(shrinkage=False)
    assert router.fit(train).guards_.shrinkage is None and router.guards_.support is not None
    small = create_router("cluster", featurizer=featurizer()).fit(task(40, axis=0, seed=1))
    assert small.guards_.shrinkage is None and "40 training rows" in small.guards_.notes[0]
    knn = create_router("knn", featurizer=featurizer()).fit(train)  # online: shrinkage until its first update
    assert knn.guards_.version == len(train)
    new = task(20, axis=0, seed=2)
    knn.update(new, new.quality)
    inside = ~knn.out_of_support(new)
    assert inside.any()
    np.testing.assert_allclose(knn.predict_quality(new)[inside], knn.predict_raw_quality(new)[inside])


def test_state_round_trip():
    s = Shrinkage(np.array([0.2, 0.4]), np.array([0.3, 0.5]), np.array([0.5, 1.0]), (0.0, 1.0), {"mse_raw": 0.1})
    again = Shrinkage.from_state(*s.get_state())
    S = np.array([[0.9, 0.1], [0.0, 0.95]])
    np.testing.assert_allclose(again.apply(S), s.apply(S))
    assert again.report == {"mse_raw": 0.1} and (s.apply(S) >= 0).all() and (s.apply(S) <= 1).all()
    np.testing.assert_allclose(s.apply(S[:, [1]], np.array([1])), s.apply(S)[:, [1]])
