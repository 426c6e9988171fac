"""Retriever and retrieval-strategy stages keep the best fixed option unless CV shows a real gain, and a kept
router falls back to that option out of support."""

from __future__ import annotations

import numpy as np

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.retrieval import BM25Retriever
from rag_routing.routers.similarity import ClusterRouter
from rag_routing.stages.complexity import ComplexityClassifierRouter
from rag_routing.stages.retrieval_strategy import RetrievalStrategyRouter
from rag_routing.stages.retriever import RetrieverRouter
from rag_routing.stages.selection import cross_validated_gain

DOCS = [{"_id": "a", "text": "Lima is the capital of Peru."}, {"_id": "b", "text": "Quito is in Ecuador."}]


def outcomes(n: int, signal: bool, seed: int, shift: float = 0.0) -> RoutingDataset:
    """nDCG-like outcomes of 'bm25' and 'dense': with ``signal`` each is better on its own half of the feature
    space; without, 'dense' is a little better everywhere at random."""
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(n, 6))
    E[:, 0] += np.where(rng.random(n) < 0.5, 2.0, -2.0) + shift
    side = E[:, 0] > shift
    if signal:
        q = np.stack([np.where(side, 0.9, 0.3), np.where(side, 0.35, 0.85)], axis=1) + 0.05 * rng.normal(size=(n, 2))
    else:
        q = np.stack([rng.random(n) * 0.8, rng.random(n) * 0.8 + 0.1], axis=1)
    return RoutingDataset([f"q{seed}-{i}" for i in range(n)], ["bm25", "dense"], q, np.zeros((n, 2)),
                          embeddings=E.astype(np.float32), embedding_model="v")


def stage() -> RetrieverRouter:
    bm25 = BM25Retriever().add_documents(DOCS)
    return RetrieverRouter({"bm25": bm25, "dense": BM25Retriever(name="dense").add_documents(DOCS)}, k=1)


def router() -> ClusterRouter:
    return ClusterRouter(n_clusters=4, featurizer=PrecomputedFeaturizer("v"))


def test_no_real_gain_keeps_the_best_fixed_retriever():
    s = stage().fit(outcomes(200, signal=False, seed=0), router())
    assert s.router is None and s.default == "dense"
    assert not s.selection_.keep_router and "not kept" in s.selection_.reason
    assert s.choose("anything").choice == "dense"


def test_a_real_gain_keeps_the_router_and_it_falls_back_out_of_support():
    train = outcomes(300, signal=True, seed=1)
    s = stage().fit(train, router())
    assert s.router is not None and s.selection_.keep_router and s.selection_.lower > 0
    test = outcomes(100, signal=True, seed=2)
    chosen = s.router.route_indices(test, lam=0.0)
    assert (chosen == np.where(test.embeddings[:, 0] > 0, 0, 1)).mean() > 0.9
    far = outcomes(50, signal=True, seed=3, shift=40.0)  # a corpus/query type it never saw
    assert s.router.out_of_support(far).mean() > 0.9
    prior = int(np.argmax(train.mean_quality()))  # the best fixed retriever on the training data
    assert set(s.router.route_indices(far, lam=0.0).tolist()) == {prior}
    assert all(d.reason.startswith("out of support") for d in s.router.route(far.subset(range(5))))


def test_select_by_cv_off_and_labels_keep_the_router():
    s = stage()
    s.select_by_cv = False
    assert s.fit(outcomes(200, signal=False, seed=0), router()).router is not None
    strategy = RetrievalStrategyRouter(BM25Retriever().add_documents(DOCS), k=1)
    strategy.fit_from_labels([f"hello {i}" for i in range(6)] + [f"capital of country {i}" for i in range(6)],
                             ["none"] * 6 + ["single"] * 6, router=ComplexityClassifierRouter(featurizer="tfidf"))
    assert strategy.router is not None and not hasattr(strategy, "selection_")


def test_too_few_queries_keep_the_fixed_option():
    report = cross_validated_gain(router(), outcomes(6, signal=True, seed=4))
    assert not report.keep_router and "too few" in report.reason
