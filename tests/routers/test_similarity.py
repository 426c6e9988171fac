"""KNNRouter and ClusterRouter: shapes, persistence, determinism, errors, and routing behaviour."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import InvalidInputError, NotFittedError, UnknownCandidateError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import load_router
from rag_routing.routers.registry import get_router_class
from rag_routing.routers.similarity import ClusterRouter, KNNRouter
from rag_routing.routers.support import GuardSettings

EMB = "toy-embeddings"


def _unit(M: np.ndarray) -> np.ndarray:
    return (M / np.linalg.norm(M, axis=1, keepdims=True)).astype(np.float32)


def two_groups(n: int = 40, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` vectors near axis 0 (group 0) then ``n`` near axis 1 (group 1), and the group labels."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, d))
    centres[0, 0] = centres[1, 1] = 1.0
    group = np.repeat([0, 1], n)
    return _unit(centres[group] + 0.15 * rng.standard_normal((2 * n, d))), group


@pytest.fixture
def groups_dataset() -> RoutingDataset:
    """Candidate A is right on group 0 only, B on group 1 only, C is right half the time everywhere."""
    E, group = two_groups()
    rng = np.random.default_rng(1)
    quality = np.stack([group == 0, group == 1, rng.random(len(group)) < 0.5], axis=1).astype(float)
    cost = np.tile([0.01, 0.01, 0.001], (len(group), 1))
    queries = [f"group {g} query {i}" for i, g in enumerate(group)]
    return RoutingDataset(queries, ["A", "B", "C"], quality, cost).with_embeddings(E, EMB)


def fresh(klass, **params):
    return klass(featurizer=PrecomputedFeaturizer(EMB), **params)


def test_registry_names():
    assert get_router_class("knn") is KNNRouter and get_router_class("cluster") is ClusterRouter


def test_faiss_is_not_imported_with_the_package():
    code = ("import sys, rag_routing, rag_routing.routers.similarity, rag_routing.routers.preference; "
            "sys.exit('faiss' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("klass,params", [(KNNRouter, {"k": 10}), (ClusterRouter, {"n_clusters": 2}),
                                          (ClusterRouter, {"n_clusters": 2, "assignment": "soft"})])
def test_routes_each_group_to_its_winner(groups_dataset, klass, params):
    router = fresh(klass, **params).fit(groups_dataset)
    test_E, test_group = two_groups(seed=7)
    S = router.predict_quality(test_E)
    assert S.shape == (len(test_group), 3)
    assert ((S >= 0) & (S <= 1)).all()
    assert np.array_equal(router.route_indices(test_E), test_group)  # A (0) for group 0, B (1) for group 1


def test_knn_routes_text_with_tfidf(toy_dataset):
    router = KNNRouter(k=5, prior=0.0, featurizer="tfidf").fit(toy_dataset)
    chosen = router.route_indices(["solve the integral of x^3 times sin(x) dx", "hello, how are you doing today"],
                                  lam=1.0)
    assert chosen.tolist() == [1, 0]  # math needs the large model; chat ties, so the cheaper one wins


@pytest.mark.parametrize("klass,params", [(KNNRouter, {"k": 7, "weighting": "similarity"}),
                                          (ClusterRouter, {"n_clusters": 3, "assignment": "soft"})])
def test_save_load_round_trip_and_determinism(tmp_path, groups_dataset, klass, params):
    router = fresh(klass, **params).fit(groups_dataset)
    probe, _ = two_groups(seed=3)
    loaded = load_router(router.save(tmp_path / "router"))
    assert type(loaded) is klass and loaded.get_params() == router.get_params()
    assert np.array_equal(loaded.predict_quality(probe), router.predict_quality(probe))
    again = fresh(klass, **params).fit(groups_dataset)
    assert np.array_equal(again.predict_quality(probe), router.predict_quality(probe))


def test_unfitted_and_bad_hyper_parameters(groups_dataset):
    with pytest.raises(NotFittedError):
        KNNRouter().predict_quality(np.zeros((1, 16), dtype=np.float32))
    with pytest.raises(NotFittedError):
        ClusterRouter().representative_queries()
    for bad in ({"k": 0}, {"k": 2.5}, {"weighting": "gaussian"}, {"temperature": 0.0}, {"prior": -1.0}):
        with pytest.raises(InvalidInputError):
            KNNRouter(**bad)
    for bad in ({"n_clusters": 0}, {"assignment": "fuzzy"}, {"prior": float("nan")}, {"n_representatives": 0}):
        with pytest.raises(InvalidInputError):
            ClusterRouter(**bad)
    router = fresh(KNNRouter).fit(groups_dataset)
    with pytest.raises(InvalidInputError, match="16-d"):
        router.predict_quality(np.zeros((2, 5), dtype=np.float32))


def test_knn_nan_outcomes_are_unknown_not_wrong(groups_dataset):
    quality = groups_dataset.quality.copy()
    quality[:, 2] = np.nan
    quality[::4, 2] = 1.0  # C is measured on a quarter of the queries, and right every time
    data = RoutingDataset(groups_dataset.queries, groups_dataset.candidates, quality, groups_dataset.cost,
                          embeddings=groups_dataset.embeddings, embedding_model=EMB)
    S = fresh(KNNRouter, k=10, prior=0.0).fit(data).predict_quality(two_groups(seed=5)[0])
    assert np.allclose(S[:, 2], 1.0)
    # A candidate no neighbour has measured falls back to its global mean.
    quality[:40, 2] = np.nan
    data.quality = quality
    router = fresh(KNNRouter, k=5, weighting="uniform", prior=0.0).fit(data)
    assert np.allclose(router.predict_quality(two_groups(seed=5)[0][:40])[:, 2], 1.0)


def test_knn_update_without_refit(groups_dataset):
    router = fresh(KNNRouter, k=5, temperature=0.01).fit(groups_dataset)
    probe = two_groups(seed=9)[0][:5]
    assert set(router.route_indices(probe)) == {0}
    # New feedback: on group 0, C is now the only right candidate.
    router.update(probe, np.tile([0.0, 0.0, 1.0], (5, 1)))
    assert set(router.route_indices(probe)) == {2}
    with pytest.raises(InvalidInputError):
        router.update(probe, np.ones((5, 2)))


def test_knn_ivf_index_above_threshold(tmp_path, groups_dataset):
    test_E, test_group = two_groups(seed=7)
    router = fresh(KNNRouter, k=10, ivf_threshold=50, nprobe=4).fit(groups_dataset)
    assert not router.index_.exact
    assert np.array_equal(router.route_indices(test_E), test_group)
    loaded = load_router(router.save(tmp_path / "ivf"))
    assert np.array_equal(loaded.predict_quality(test_E), router.predict_quality(test_E))
    # Growing past the threshold with update() switches the exact index to IVF.
    growing = fresh(KNNRouter, k=10, ivf_threshold=100).fit(groups_dataset)
    assert growing.index_.exact
    growing.update(test_E, groups_dataset.quality)
    assert not growing.index_.exact and len(growing.index_) == 160
    assert np.array_equal(growing.route_indices(test_E), test_group)


def _perfect_on_cluster_of(router: ClusterRouter, group_of_query, target_group: int, per_cluster: int = 3):
    reps = router.representative_queries(per_cluster=per_cluster)
    return [1.0 if group_of_query(q) == target_group else 0.0 for q in reps]


def test_cluster_add_candidate_changes_routing_without_refit(tmp_path, groups_dataset):
    quality = groups_dataset.quality.copy()
    quality[40:, 1] = np.arange(40) % 5 < 3  # B is right on 60 % of group 1 only
    data = RoutingDataset(groups_dataset.queries, groups_dataset.candidates, quality, groups_dataset.cost,
                          embeddings=groups_dataset.embeddings, embedding_model=EMB)
    router = fresh(ClusterRouter, n_clusters=2, prior=1.0)
    # Exact routes per group: without the support fallback, which sends its ~1 % of in-distribution queries
    # (alpha = 0.01) to the fixed candidate (tests/routers/test_support.py covers it).
    router.guard_settings = GuardSettings.off()
    router.fit(data)
    centroids = router.centroids_.copy()
    test_E, test_group = two_groups(seed=11)
    before = router.route_indices(test_E)

    def group_of(query: str) -> int:
        return int(query.split()[1])

    outcomes = _perfect_on_cluster_of(router, group_of, target_group=1)
    assert len(outcomes) == 6
    router.add_candidate("D", outcomes, cost=0.001)
    assert router.candidates_ == ["A", "B", "C", "D"] and np.array_equal(router.centroids_, centroids)
    after = router.route_indices(test_E)
    # D, right on every representative of group 1's cluster, takes group 1; group 0 is untouched.
    assert set(before[test_group == 1]) == {1} and set(after[test_group == 1]) == {3}
    assert np.array_equal(after[test_group == 0], before[test_group == 0])

    loaded = load_router(router.save(tmp_path / "cluster"))
    assert loaded.candidates_ == router.candidates_
    assert np.array_equal(loaded.predict_quality(test_E), router.predict_quality(test_E))
    assert loaded.representative_queries(3) == router.representative_queries(3)

    router.remove_candidate("D")
    assert router.candidates_ == ["A", "B", "C"] and np.array_equal(router.route_indices(test_E), before)


def test_cluster_add_candidate_from_explicit_features_and_nan(groups_dataset):
    router = fresh(ClusterRouter, n_clusters=2, prior=0.0).fit(groups_dataset)
    E, group = two_groups(n=4, seed=21)
    outcomes = np.where(group == 0, 1.0, 0.0)
    outcomes[0] = np.nan  # unknown: ignored, not a failure
    router.add_candidate("E", outcomes, E, cost=0.0)
    S = router.predict_quality(two_groups(seed=2)[0])
    assert np.allclose(S[:40, 3], 1.0, atol=1e-6) and np.allclose(S[40:, 3], 0.0, atol=1e-6)


def test_cluster_pool_errors(groups_dataset):
    router = fresh(ClusterRouter, n_clusters=2, n_representatives=4).fit(groups_dataset)
    with pytest.raises(UnknownCandidateError):
        router.remove_candidate("nobody")
    with pytest.raises(InvalidInputError, match="already exists"):
        router.add_candidate("A", [1.0] * 2, cost=0.1)
    with pytest.raises(InvalidInputError, match="match no representative"):
        router.add_candidate("D", [1.0] * 3, cost=0.1)
    with pytest.raises(InvalidInputError, match="known"):
        router.add_candidate("D", [np.nan] * 2, cost=0.1)
    with pytest.raises(InvalidInputError):
        router.add_candidate("D", [1.0] * 2, cost=-1.0)
    with pytest.raises(InvalidInputError, match="exceeds"):
        router.representative_queries(per_cluster=5)
    router.remove_candidate("A")
    router.remove_candidate("B")
    with pytest.raises(InvalidInputError, match="only candidate"):
        router.remove_candidate("C")


def test_cluster_is_deterministic_under_seed(groups_dataset):
    a = fresh(ClusterRouter, n_clusters=4, seed=3).fit(groups_dataset)
    b = fresh(ClusterRouter, n_clusters=4, seed=3).fit(groups_dataset)
    assert np.array_equal(a.centroids_, b.centroids_)
    assert a.representative_queries(2) == b.representative_queries(2)
