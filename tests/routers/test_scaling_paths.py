"""The bounded-memory paths give the reference's predictions: SW ranking and Elo without n x m x m battle
tables, tfidf_lr as one multi-output fit instead of one scikit-learn fit per candidate."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers import battles as battles_module
from rag_routing.routers.battles import battles, neighbour_battles
from rag_routing.routers.multi_logistic import fit_logistic_columns
from rag_routing.routers.neighbours import neighbour_sums
from rag_routing.routers.preference import EloRouter, SWRankingRouter, bradley_terry


def data(n: int, m: int, seed: int = 0, nan_share: float = 0.2, levels: int = 2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = rng.integers(0, levels, size=(n, m)) / (levels - 1)
    Y[rng.random((n, m)) < nan_share] = np.nan
    Y[0] = 1.0  # every candidate has a known outcome
    ds = RoutingDataset([f"q{i}" for i in range(n)], [f"c{j}" for j in range(m)], Y, np.ones((n, m)))
    return ds.with_embeddings(X, "toy"), rng.normal(size=(40, 8)).astype(np.float32)


def unguarded(router):
    try:
        from rag_routing.routers.support import GuardSettings
    except ImportError:
        return router
    router.guard_settings = GuardSettings.off()
    return router


@pytest.mark.parametrize("ties", ["half", "ignore"])
@pytest.mark.parametrize("levels", [2, 3])
def test_sw_ranking_matches_the_dense_table_reference(ties, levels):
    ds, queries = data(300, 4, levels=levels)
    router = unguarded(SWRankingRouter(k=30, ties=ties, featurizer=PrecomputedFeaturizer("toy"))).fit(ds)
    # reference: the old path, a full (n, m*m) table of battles summed through a sparse product
    score, _ = battles(ds.quality, ties)
    m = ds.quality.shape[1]
    global_strength = bradley_terry(score.sum(0)[None], np.zeros(m), alpha=1.0, n_iter=50)[0]
    assert np.allclose(router.global_strength_, global_strength, atol=1e-10)
    F = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims, idx = router.index_.search(F, router.k)
    W = neighbour_sums(np.exp(router.gamma * (sims - sims[:, :1])), idx, score.reshape(len(score), m * m))
    want = bradley_terry(W.reshape(len(F), m, m), global_strength, router.alpha, router.n_iter)
    assert np.allclose(router.strengths(F), want, atol=1e-9)


@pytest.mark.parametrize("ties", ["half", "ignore"])
def test_elo_matches_the_sequential_reference(ties):
    ds, queries = data(200, 3)
    router = unguarded(EloRouter(n_neighbors=20, period=5, ties=ties, featurizer=PrecomputedFeaturizer("toy")))
    router.fit(ds)
    score, mask = battles(ds.quality, ties)
    R = np.full(3, EloRouter.INITIAL_RATING)
    for t in np.random.default_rng(router.seed).permutation(len(ds)):  # the classic one-battle-row-at-a-time loop
        E = 1.0 / (1.0 + 10.0 ** ((R[None, :] - R[:, None]) / EloRouter.SCALE))
        R = R + router.k_factor * (score[t] - mask[t] * E).sum(-1)
    assert np.allclose(router.global_elo_, R, atol=1e-9)
    F = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    _, idx = router.index_.search(F, router.n_neighbors)
    local = np.tile(R, (len(F), 1))
    table = np.hstack([score.reshape(len(score), -1), mask.reshape(len(mask), -1)])
    for start in reversed(range(0, idx.shape[1], router.period)):
        played = neighbour_sums(np.ones((len(F), router.period)), idx[:, start:start + router.period], table)
        s, c = played[:, :9].reshape(-1, 3, 3), played[:, 9:].reshape(-1, 3, 3)
        E = 1.0 / (1.0 + 10.0 ** ((local[:, None, :] - local[:, :, None]) / EloRouter.SCALE))
        local = local + router.k_factor * (s - c * E).sum(-1)
    want = router.p_global * R + (1 - router.p_global) * local
    assert np.allclose(router.ratings(F), want, atol=1e-9)


@pytest.mark.parametrize("router_class", [SWRankingRouter, EloRouter])
def test_table_and_recomputed_battles_give_the_same_predictions(router_class, monkeypatch):
    ds, queries = data(300, 4)
    with_table = unguarded(router_class(featurizer=PrecomputedFeaturizer("toy"))).fit(ds)
    assert with_table._battles is not None
    monkeypatch.setattr(battles_module, "TABLE_BYTES", 0)
    without = unguarded(router_class(featurizer=PrecomputedFeaturizer("toy"))).fit(ds)
    assert without._battles is None
    assert np.allclose(with_table.predict_quality(queries), without.predict_quality(queries), atol=1e-10)


def test_neighbour_battles_blocks_do_not_change_the_sums(monkeypatch):
    ds, _ = data(100, 5)
    rng = np.random.default_rng(1)
    idx = rng.integers(-1, 100, size=(30, 12))
    weights = rng.random((30, 12))
    wins, counts = neighbour_battles(ds.quality, idx, weights, "half")
    monkeypatch.setattr(battles_module, "BLOCK_ELEMENTS", 1)  # one query per block
    wins1, counts1 = neighbour_battles(ds.quality, idx, weights, "half")
    assert np.allclose(wins, wins1) and np.allclose(counts, counts1)
    score, mask = battles(ds.quality, "half")
    q = 3
    keep = idx[q] >= 0
    assert np.allclose(wins[q], np.einsum("k,kij->ij", weights[q][keep], score[idx[q][keep]]))


def test_past_the_table_budget_fit_and_route_never_hold_an_n_by_m_by_m_array(monkeypatch):
    n, m = 3000, 30
    monkeypatch.setattr(battles_module, "TABLE_BYTES", 1_000_000)  # the table would be 43 MB: recompute
    monkeypatch.setattr(battles_module, "BLOCK_ELEMENTS", 100_000)  # memory follows the block, not n
    import rag_routing.routers.preference as preference

    monkeypatch.setattr(preference, "BLOCK_ELEMENTS", 100_000)
    ds, queries = data(n, m, nan_share=0.0)
    full_table = n * m * m * 8
    tracemalloc.start()
    try:
        for router in (SWRankingRouter(k=20), EloRouter(n_neighbors=20)):
            router.featurizer = PrecomputedFeaturizer("toy")
            unguarded(router).fit(ds).predict_quality(queries)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < full_table / 2, f"peak {peak / 1e6:.0f} MB against a {full_table / 1e6:.0f} MB battle table"


def test_multi_output_logistic_matches_one_sklearn_fit_per_column():
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = sparse.random(400, 60, density=0.1, random_state=0, format="csr")
    truth = rng.normal(size=(60, 4))
    Y = (np.asarray(X @ truth) + 0.3 * rng.normal(size=(400, 4)) > 0).astype(float)
    Y[:, 1] = np.where(Y[:, 1] > 0, 0.8, 0.2)  # fractional outcomes
    Y[rng.random((400, 4)) < 0.25] = np.nan
    Y[:, 3] = 1.0  # a constant column
    coef, intercept = fit_logistic_columns(X, Y, C=0.7, tol=1e-8)
    for j in range(3):
        rows = np.flatnonzero(~np.isnan(Y[:, j]))
        y = Y[rows, j]
        frac = (y > 0) & (y < 1)  # the old path: a fractional outcome = weighted right + weighted wrong row
        Xj = X[np.concatenate([rows, rows[frac]])]
        labels = np.concatenate([np.where(frac, 1, y >= 0.5), np.zeros(int(frac.sum()))]).astype(int)
        weights = np.concatenate([np.where(frac, y, 1.0), 1.0 - y[frac]])
        ref = LogisticRegression(C=0.7, max_iter=3000, tol=1e-8).fit(Xj, labels, sample_weight=weights)
        assert np.allclose(coef[j], ref.coef_[0], atol=2e-3), j
        assert abs(intercept[j] - ref.intercept_[0]) < 2e-3
    assert np.all(coef[3] == 0) and intercept[3] > 10


def test_joint_multi_output_solve_gives_the_same_coefficients():
    from scipy import sparse

    rng = np.random.default_rng(2)
    X = sparse.random(200, 30, density=0.2, random_state=2, format="csr")
    Y = (rng.random((200, 5)) < 0.5).astype(float)
    together = fit_logistic_columns(X, Y, C=1.0, tol=1e-8, together=5)  # one multi-output problem
    one_by_one = fit_logistic_columns(X, Y, C=1.0, tol=1e-8)
    assert np.allclose(together[0], one_by_one[0], atol=1e-4) and np.allclose(together[1], one_by_one[1], atol=1e-4)


def test_ivf_index_trains_on_a_sample_and_keeps_recall():
    from rag_routing.routers.neighbours import TRAIN_PER_LIST, NeighbourIndex

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    X = (centres[rng.integers(0, 20, 6000)] + 0.5 * rng.normal(size=(6000, 16))).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    ivf = NeighbourIndex(X, ivf_threshold=1000, nprobe=16)
    assert not ivf.exact and ivf._index.nlist == int(np.sqrt(6000)) and TRAIN_PER_LIST * ivf._index.nlist < 6000
    queries = X[:200] + 0.05 * rng.normal(size=(200, 16)).astype(np.float32)
    _, approx = ivf.search(queries, 10)
    _, exact = NeighbourIndex(X, ivf_threshold=None).search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall > 0.9


def test_module_examples_run():
    import doctest

    from rag_routing.routers import multi_logistic

    for module in (battles_module, multi_logistic):
        assert doctest.testmod(module).failed == 0
