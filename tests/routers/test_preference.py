"""SWRankingRouter and EloRouter: Bradley-Terry and Elo from pairwise battles, per query neighbourhood."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import load_router
from rag_routing.routers.preference import EloRouter, SWRankingRouter, battles, bradley_terry
from rag_routing.routers.registry import get_router_class

EMB = "toy-embeddings"


def _unit(M: np.ndarray) -> np.ndarray:
    return (M / np.linalg.norm(M, axis=1, keepdims=True)).astype(np.float32)


def two_groups(n: int = 40, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, d))
    centres[0, 0] = centres[1, 1] = 1.0
    group = np.repeat([0, 1], n)
    return _unit(centres[group] + 0.15 * rng.standard_normal((2 * n, d))), group


def make_dataset(quality: np.ndarray, E: np.ndarray) -> RoutingDataset:
    cost = np.tile([0.01, 0.01, 0.001], (len(quality), 1))
    queries = [f"query {i}" for i in range(len(quality))]
    return RoutingDataset(queries, ["A", "B", "C"], quality, cost).with_embeddings(E, EMB)


@pytest.fixture
def groups_dataset() -> RoutingDataset:
    """A is right on group 0 only, B on group 1 only, C is right half the time everywhere."""
    E, group = two_groups()
    rng = np.random.default_rng(1)
    quality = np.stack([group == 0, group == 1, rng.random(len(group)) < 0.5], axis=1).astype(float)
    return make_dataset(quality, E)


def fresh(klass, **params):
    return klass(featurizer=PrecomputedFeaturizer(EMB), **params)


ROUTERS = [(SWRankingRouter, {"k": 20}), (EloRouter, {"n_neighbors": 10, "k_factor": 32.0})]


def test_registry_names():
    assert get_router_class("sw_ranking") is SWRankingRouter and get_router_class("elo") is EloRouter


def test_battles_and_bradley_terry():
    score, mask = battles(np.array([[1.0, 0.0, np.nan], [1.0, 1.0, 0.0]]), ties="half")
    assert score[0, 0, 1] == 1.0 and score[0, 1, 0] == 0.0 and not mask[0, 0, 2] and not mask[0, 2, 2]
    assert score[1, 0, 1] == 0.5 and mask[1, 0, 1]
    _, mask_ignore = battles(np.array([[1.0, 1.0, 0.0]]), ties="ignore")
    assert not mask_ignore[0, 0, 1] and mask_ignore[0, 0, 2]
    # 3 wins to 1: the maximum-likelihood win probability is 0.75 (a negligible ridge).
    beta = bradley_terry(np.array([[[0.0, 3.0], [1.0, 0.0]]]), np.zeros(2), alpha=1e-9)
    assert 1 / (1 + np.exp(beta[0, 1] - beta[0, 0])) == pytest.approx(0.75, abs=1e-6)
    # A one-sided record stays finite thanks to the ridge, and is shrunk towards the prior.
    beta = bradley_terry(np.array([[[0.0, 5.0], [0.0, 0.0]]]), np.zeros(2), alpha=1.0)
    assert np.isfinite(beta).all() and 0 < beta[0, 0] - beta[0, 1] < 10


@pytest.mark.parametrize("klass,params", ROUTERS)
def test_routes_each_group_to_its_winner(groups_dataset, klass, params):
    router = fresh(klass, **params).fit(groups_dataset)
    test_E, test_group = two_groups(seed=7)
    S = router.predict_quality(test_E)
    assert S.shape == (len(test_group), 3) and ((S >= 0) & (S <= 1)).all()
    assert np.array_equal(router.route_indices(test_E), test_group)


def test_routes_text_with_tfidf(toy_dataset):
    for router in (SWRankingRouter(k=5, featurizer="tfidf"), EloRouter(n_neighbors=5, k_factor=32.0,
                                                                          featurizer="tfidf")):
        router.fit(toy_dataset)
        score = router.score(["solve the integral of x^3 times sin(x) dx", "hello, how are you doing today"])
        assert score[0] > score[1]  # the large model is predicted to help on math, not on chat


@pytest.mark.parametrize("klass,params", ROUTERS)
def test_save_load_round_trip_and_determinism(tmp_path, groups_dataset, klass, params):
    router = fresh(klass, **params).fit(groups_dataset)
    probe, _ = two_groups(seed=3)
    loaded = load_router(router.save(tmp_path / "router"))
    assert type(loaded) is klass and loaded.get_params() == router.get_params()
    assert np.array_equal(loaded.predict_quality(probe), router.predict_quality(probe))
    again = fresh(klass, **params).fit(groups_dataset)
    assert np.array_equal(again.predict_quality(probe), router.predict_quality(probe))


def test_unfitted_and_bad_hyper_parameters():
    for klass in (SWRankingRouter, EloRouter):
        with pytest.raises(NotFittedError):
            klass().predict_quality(np.zeros((1, 16), dtype=np.float32))
    for bad in ({"k": 0}, {"gamma": -1.0}, {"alpha": 0.0}, {"ties": "draw"}, {"n_iter": 0}, {"nprobe": 0}):
        with pytest.raises(InvalidInputError):
            SWRankingRouter(**bad)
    for bad in ({"n_neighbors": 0}, {"p_global": 1.5}, {"k_factor": 0.0}, {"ties": None}, {"seed": -1},
                {"period": 0}):
        with pytest.raises(InvalidInputError):
            EloRouter(**bad)


@pytest.mark.parametrize("klass,params", ROUTERS)
def test_nan_outcomes_are_unknown_not_wrong(groups_dataset, klass, params):
    quality = groups_dataset.quality.copy()
    quality[:, 2] = np.nan
    quality[::4, 2] = 1.0  # C is measured on a quarter of the queries, and right every time
    router = fresh(klass, **params).fit(make_dataset(quality, groups_dataset.embeddings))
    S = router.predict_quality(two_groups(seed=5)[0])
    # C ties the winner of each group and beats the loser: as good as the winner, not a loser.
    assert (S[:, 2] > 0.6).all()
    assert np.abs(S[:, 2] - S.max(axis=1)).max() < 0.1


def test_elo_global_weight_and_update(tmp_path, groups_dataset):
    test_E, _ = two_groups(seed=7)
    only_global = fresh(EloRouter, p_global=1.0).fit(groups_dataset).predict_quality(test_E)
    assert np.allclose(only_global, only_global[0])  # the global Elo ignores the query

    router = fresh(EloRouter, n_neighbors=10, k_factor=32.0).fit(groups_dataset)
    before = router.global_elo_.copy()
    probe = test_E[:10]
    assert set(router.route_indices(probe)) == {0}
    router.update(probe, np.tile([0.0, 0.0, 1.0], (10, 1)))  # C is now the only right one on group 0
    assert router.global_elo_[2] > before[2]
    assert set(router.route_indices(probe)) == {2}
    loaded = load_router(router.save(tmp_path / "elo"))
    assert np.array_equal(loaded.global_elo_, router.global_elo_)
    assert np.array_equal(loaded.predict_quality(test_E), router.predict_quality(test_E))


def test_sw_ranking_similarity_weighting(groups_dataset):
    """With gamma = 0 every neighbour counts the same; a large k then washes out the groups."""
    test_E, test_group = two_groups(seed=7)
    flat = fresh(SWRankingRouter, k=80, gamma=0.0).fit(groups_dataset).predict_quality(test_E)
    sharp = fresh(SWRankingRouter, k=80, gamma=20.0).fit(groups_dataset)
    assert np.allclose(flat, flat[0])
    assert np.array_equal(sharp.route_indices(test_E), test_group)
    strengths = sharp.strengths(test_E)
    assert strengths.shape == (len(test_E), 3) and np.isfinite(strengths).all()


def test_elo_rating_periods_approximate_sequential_elo(groups_dataset):
    """Batched rating periods stay close to one-neighbour-at-a-time Elo when K is small."""
    test_E, _ = two_groups(seed=7)
    sequential = fresh(EloRouter, n_neighbors=20, period=1).fit(groups_dataset).ratings(test_E)
    batched = fresh(EloRouter, n_neighbors=20, period=10).fit(groups_dataset).ratings(test_E)
    assert np.abs(sequential - batched).max() < 5.0  # Elo points, on local shifts of about 40
    assert np.array_equal(np.argmax(sequential, axis=1), np.argmax(batched, axis=1))
