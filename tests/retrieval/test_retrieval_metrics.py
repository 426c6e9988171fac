"""Metrics checked against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.retrieval import Document, ScoredDocument, evaluate, mrr, ndcg_at_k, recall_at_k

RANKED = [["a", "b", "c", "d"], ["x", "y", "z"], ["p", "q"]]
RELEVANT = [{"b", "d"}, {"x"}, {"r"}]


def test_ndcg_by_hand():
    # q1: hits at ranks 2 and 4 -> DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3)
    q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    got = ndcg_at_k(RANKED, RELEVANT, k=4)
    assert got == pytest.approx([q1, 1.0, 0.0])
    # k=2 cuts off the second hit and the ideal list: (1/log2(3)) / (1 + 1/log2(3))
    assert ndcg_at_k(RANKED, RELEVANT, k=2)[0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # k larger than every ranking
    assert ndcg_at_k(RANKED, RELEVANT, k=50)[0] == pytest.approx(q1)


def test_recall_and_mrr_by_hand():
    assert recall_at_k(RANKED, RELEVANT, k=2).tolist() == [0.5, 1.0, 0.0]
    assert recall_at_k(RANKED, RELEVANT, k=4).tolist() == [1.0, 1.0, 0.0]
    assert mrr(RANKED, RELEVANT).tolist() == [0.5, 1.0, 0.0]
    assert mrr(RANKED, RELEVANT, k=1).tolist() == [0.0, 1.0, 0.0]


def test_duplicates_count_once_and_hits_accepted():
    assert recall_at_k([["a", "a", "b"]], [{"a", "b"}], k=3).tolist() == [1.0]
    assert recall_at_k([["a", "a"]], [{"a", "b"}], k=2).tolist() == [0.5]
    hits = [[ScoredDocument(Document("b", "t"), 1.0, 1, "r")]]
    assert ndcg_at_k(hits, [{"b"}], k=10).tolist() == [1.0]


def test_graded_qrels_are_binarised():
    assert recall_at_k([["a", "b"]], [{"a": 2, "b": 0, "c": 1}], k=2).tolist() == [0.5]


def test_metric_errors():
    with pytest.raises(InvalidInputError, match="no relevant"):
        ndcg_at_k([["a"]], [set()], k=1)
    with pytest.raises(InvalidInputError, match="align"):
        recall_at_k([["a"]], [{"a"}, {"b"}], k=1)
    with pytest.raises(InvalidInputError):
        recall_at_k([["a"]], [{"a"}], k=0)
    with pytest.raises(InvalidInputError):
        recall_at_k(["abc"], [{"a"}], k=1)


def test_evaluate_drops_unjudged_queries_and_scores_missing_runs_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}, "q3": {"c": 1}}
    out = evaluate({"q1": ["a", "z"]}, qrels, ndcg_k=(1, 10), recall_k=(1,))
    assert out == {"ndcg@1": 0.5, "ndcg@10": 0.5, "recall@1": 0.5, "mrr": 0.5, "n_queries": 2.0}
    with pytest.raises(InvalidInputError):
        evaluate({}, {"q": {"a": 0}})


def test_vectorised_matches_loop_on_random_rankings():
    rng = np.random.default_rng(0)
    ranked = [[str(i) for i in rng.permutation(30)[:15]] for _ in range(40)]
    relevant = [{str(i) for i in rng.choice(30, size=rng.integers(1, 6), replace=False)} for _ in range(40)]
    fast = ndcg_at_k(ranked, relevant, k=10)
    for q, (r, rel) in enumerate(zip(ranked, relevant)):
        dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(r[:10]) if d in rel)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel), 10)))
        assert fast[q] == pytest.approx(dcg / idcg)
