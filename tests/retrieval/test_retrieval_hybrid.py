"""Reciprocal rank fusion against hand-computed scores."""

from __future__ import annotations

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.retrieval import BM25Retriever, HybridRetriever, WordTokenizer, reciprocal_rank_fusion


def test_rrf_by_hand():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k_rrf=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    order = [doc for doc, _ in reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k_rrf=60)]
    assert order == ["a", "c", "b"]  # 1/61 + 1/62 > 1/61 + 1/63 > 1/62


def test_rrf_weights_k_and_ties():
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], k_rrf=0, weights=[2.0, 1.0])
    assert fused == [("a", pytest.approx(2 / 1 + 1 / 2)), ("b", pytest.approx(2 / 2 + 1 / 1))]
    # a tie (each first in one list) keeps first-met order
    assert [d for d, _ in reciprocal_rank_fusion([["x"], ["y"]])] == ["x", "y"]
    # a repeated id counts at its best rank only
    assert dict(reciprocal_rank_fusion([["a", "a"]], k_rrf=1)) == {"a": pytest.approx(0.5)}
    with pytest.raises(InvalidInputError):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])
    with pytest.raises(InvalidInputError):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[0.0, 0.0])
    with pytest.raises(InvalidInputError):
        reciprocal_rank_fusion([["a"]], k_rrf=-1)


def test_hybrid_retriever_fuses_its_retrievers(corpus):
    plain = BM25Retriever(tokenizer=WordTokenizer(stopwords=None), name="plain")
    stop = BM25Retriever(name="stop")
    hybrid = HybridRetriever([plain, stop], k_rrf=60).add_documents(corpus)
    assert len(plain) == len(stop) == len(hybrid) == len(corpus)
    query = "capital of France"
    hits = hybrid.retrieve(query, k=3)
    a = [h.id for h in plain.retrieve(query, k=100)]
    b = [h.id for h in stop.retrieve(query, k=100)]
    expected = reciprocal_rank_fusion([a, b], k_rrf=60)[:3]
    assert [(h.id, h.score) for h in hits] == [(d, pytest.approx(s)) for d, s in expected]
    assert [h.rank for h in hits] == [1, 2, 3] and {h.retriever for h in hits} == {"hybrid"}
    assert hits[0].document.title == "Paris"
    batch = hybrid.retrieve_batch([query, "cats"], k=3)
    assert [h.id for h in batch[0]] == [h.id for h in hits]


def test_hybrid_fetch_depth_and_weights(corpus):
    first = BM25Retriever(name="one").add_documents(corpus[:4])
    second = BM25Retriever(name="two").add_documents(corpus[4:])
    hybrid = HybridRetriever([first, second], weights=[1.0, 3.0], fetch_k=1)
    hits = hybrid.retrieve("capital", k=2)  # paris only in `one`, berlin only in `two`
    assert [h.id for h in hits] == ["berlin", "paris"]
    assert hits[0].score == pytest.approx(3 / 61)
    assert {d.id for d in hybrid.documents} == {d.id for d in corpus}


def test_hybrid_errors(corpus):
    with pytest.raises(InvalidInputError):
        HybridRetriever([])
    with pytest.raises(InvalidInputError):
        HybridRetriever(["bm25"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        HybridRetriever([BM25Retriever()], weights=[1.0, 1.0])
    empty = HybridRetriever([BM25Retriever(), BM25Retriever(name="b")])
    with pytest.raises(InvalidInputError, match="no documents"):
        empty.retrieve("cats")
    one_empty = HybridRetriever([BM25Retriever().add_documents(corpus), BM25Retriever(name="b")])
    assert one_empty.retrieve("cats", k=1)[0].id in {"cats", "dogs"}
    with pytest.raises(InvalidInputError):
        one_empty.retrieve("cats", k=0)


def test_hybrid_add_is_all_or_nothing(corpus):
    a = BM25Retriever(name="a").add_documents(corpus[:1])
    b = BM25Retriever(name="b")
    hybrid = HybridRetriever([b, a])
    with pytest.raises(InvalidInputError, match="duplicate"):
        hybrid.add_documents(corpus[:2])  # corpus[0] is already in `a`
    assert len(b) == 0 and len(a) == 1
