"""Retrieval spends land in the ambient ledger: query time, indexing, tokens, zero $ for local components."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rag_routing.candidates import Pricing
from rag_routing.ledger import CostLedger, count_tokens_batch, ledger_scope
from rag_routing.retrieval import BM25Retriever, DenseRetriever, HybridRetriever


def test_nothing_is_recorded_outside_a_scope(corpus):
    r = BM25Retriever().add_documents(corpus)
    assert r.retrieve("cats", k=1)  # no ledger, no error


def test_bm25_records_indexing_and_retrieval(corpus):
    with ledger_scope() as ledger:
        r = BM25Retriever().add_documents(corpus)
        r.retrieve_batch(["cats", "capital"], k=2)
    indexing, retrieval = ledger.entries
    assert (indexing.stage, indexing.component, indexing.model) == ("indexing", "bm25", "bm25")
    assert indexing.metadata["n_documents"] == len(corpus)
    assert (retrieval.stage, retrieval.component, retrieval.model) == ("retrieval", "bm25", "bm25")
    assert retrieval.cost_usd == 0.0 and retrieval.input_tokens == 0 and retrieval.seconds > 0
    assert retrieval.metadata == {"n_queries": 2, "k": 2}


def test_dense_records_tokens_and_zero_cost(corpus, tfidf_embedder):
    queries = ["capital of France", "cats and dogs"]
    with ledger_scope() as ledger:
        r = DenseRetriever(tfidf_embedder).add_documents(corpus)
        r.retrieve_batch(queries, k=3)
        r.retrieve(queries[0], k=1)
    indexing, batch, single = ledger.entries
    assert indexing.stage == "indexing" and indexing.model == "tfidf-lsa-6"
    assert indexing.input_tokens == sum(count_tokens_batch([d.content for d in corpus]))
    assert batch.stage == "retrieval" and batch.component == "dense-tfidf-lsa-6"
    assert batch.input_tokens == sum(count_tokens_batch(queries)) and batch.output_tokens == 0
    assert single.input_tokens == count_tokens_batch(queries[:1])[0]
    assert all(e.cost_usd == 0.0 and e.priced and e.estimated for e in ledger.entries)


def test_a_local_model_missing_from_the_price_table_is_free_not_an_error(corpus):
    class LocalEmbedder:
        name = "/models/my-finetuned-e5"  # a local path: no price-table entry

        def transform(self, texts):
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    with ledger_scope(prices=None) as ledger:
        DenseRetriever(LocalEmbedder(), pricing=Pricing(input_per_mtok=0, output_per_mtok=0)) \
            .add_documents(corpus).retrieve("cats")
    assert [e.cost_usd for e in ledger.entries] == [0.0, 0.0]
    assert ledger.entries[0].energy_kwh is None  # size unknown: energy unknown, not invented


def test_paid_embedder_is_priced(corpus):
    class ApiEmbedder:
        name = "text-embedding-3-small"

        def transform(self, texts):
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    with ledger_scope() as ledger:
        DenseRetriever(ApiEmbedder()).add_documents(corpus)
    (entry,) = ledger.entries
    expected = entry.input_tokens * 0.02 / 1e6  # $0.02 per 1M tokens in the shipped table
    assert entry.cost_usd == pytest.approx(expected) and entry.cost_usd > 0


def test_hybrid_records_fusion_time_only(corpus):
    a = BM25Retriever(name="a").add_documents(corpus)
    b = BM25Retriever(name="b", k1=0.9).add_documents(corpus)
    hybrid = HybridRetriever([a, b])
    with ledger_scope() as ledger:
        hybrid.retrieve("capital", k=2)
    assert [(e.component, e.model) for e in ledger.entries] == [("a", "bm25"), ("b", "bm25"), ("hybrid", "rrf")]
    assert ledger.entries[2].metadata["fused"] == ["a", "b"]


async def test_aretrieve_records_into_the_callers_ledger(corpus):
    r = BM25Retriever().add_documents(corpus)
    with ledger_scope() as ledger:
        single, batch = await asyncio.gather(r.aretrieve("cats", k=1), r.aretrieve_batch(["capital"], k=1))
    assert single[0].id in {"cats", "dogs"} and batch[0][0].id in {"paris", "berlin"}
    assert [e.stage for e in ledger.entries] == ["retrieval", "retrieval"]


async def test_async_results_equal_sync(corpus):
    r = BM25Retriever().add_documents(corpus)
    assert await r.aretrieve("capital of France", k=3) == r.retrieve("capital of France", k=3)


def test_explicit_ledger_scope_object(corpus):
    ledger = CostLedger()
    with ledger_scope(ledger):
        BM25Retriever().add_documents(corpus)
    assert len(ledger) == 1


@pytest.mark.slow
def test_minilm_entries_carry_energy_from_the_price_table(corpus):
    with ledger_scope() as ledger:
        DenseRetriever().add_documents(corpus).retrieve("capital of France")
    for entry in ledger.entries:
        assert entry.model == "all-MiniLM-L6-v2" and entry.cost_usd == 0.0 and entry.priced
        assert entry.energy_kwh is not None  # the table knows MiniLM's size (0.0227 B parameters)
