"""CISI (BEIR format, 76 judged queries): retrieval quality stays in the range measured when this was written.

Measured (benchmarks/retrievers.py): BM25 nDCG@10 0.3659, recall@100 0.4360 (deterministic); MiniLM dense
nDCG@10 0.4192, recall@100 0.4720; hybrid RRF nDCG@10 0.4157, recall@100 0.5127. The bands leave room for
other torch / BLAS builds, not for a broken tokenizer, formula or index.
"""

from __future__ import annotations

import pytest

from rag_routing.retrieval import (
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    evaluate,
    load_corpus,
    load_qrels,
    load_queries,
)


def _cisi(shared_data):
    folder = shared_data / "rag" / "cisi"
    if not folder.is_dir():
        pytest.skip(f"CISI not found at {folder}")
    queries = load_queries(folder / "queries.jsonl")
    qrels = {q: r for q, r in load_qrels(folder / "qrels" / "test.tsv").items() if any(r.values())}
    ids = [q for q in queries if q in qrels]
    return load_corpus(folder / "corpus.jsonl"), ids, [queries[q] for q in ids], qrels


def _score(retriever, ids, texts, qrels):
    hits = retriever.retrieve_batch(texts, 100)
    return evaluate({q: [h.id for h in h_] for q, h_ in zip(ids, hits)}, qrels)


@pytest.mark.slow
def test_cisi_bm25(shared_data):
    docs, ids, texts, qrels = _cisi(shared_data)
    assert len(ids) == 76 and len(docs) == 1460
    m = _score(BM25Retriever().add_documents(docs), ids, texts, qrels)
    assert 0.35 <= m["ndcg@10"] <= 0.38
    assert 0.42 <= m["recall@100"] <= 0.45
    reference = _score(BM25Retriever(backend="rank_bm25").add_documents(docs), ids, texts, qrels)
    assert reference == pytest.approx(m)


@pytest.mark.slow
def test_cisi_dense_and_hybrid(shared_data):
    docs, ids, texts, qrels = _cisi(shared_data)
    dense = DenseRetriever().add_documents(docs)
    m = _score(dense, ids, texts, qrels)
    assert 0.39 <= m["ndcg@10"] <= 0.45
    assert 0.44 <= m["recall@100"] <= 0.50
    hybrid = _score(HybridRetriever([dense, BM25Retriever().add_documents(docs)]), ids, texts, qrels)
    assert 0.38 <= hybrid["ndcg@10"] <= 0.45
    assert hybrid["recall@100"] >= m["recall@100"]  # fusion finds what either list finds
