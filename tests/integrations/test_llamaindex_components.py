"""Your own LlamaIndex components in the stages: a VectorStoreIndex retriever as a retriever-stage and
retrieval-strategy option, nodes converted both ways, a LlamaIndex LLM as a generator option whose calls carry the
stage's decision id. Real ``VectorStoreIndex`` over the bundled demo corpus, deterministic hashing embeddings."""

from __future__ import annotations

import math
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document as LIDocument  # noqa: E402
from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.errors import InvalidInputError  # noqa: E402
from rag_routing.integrations.llamaindex import (  # noqa: E402
    LlamaIndexChatLLM,
    LlamaIndexRetriever,
    from_llamaindex_nodes,
    to_llamaindex_nodes,
)
from rag_routing.ledger import CostLedger, ledger_scope  # noqa: E402
from rag_routing.retrieval import BM25Retriever, load_corpus  # noqa: E402
from rag_routing.stages import GeneratorRouter, RetrievalStrategyRouter, RetrieverRouter, RoutedRAG  # noqa: E402
from rag_routing.stages.defaults import demo_corpus_path  # noqa: E402
from tests.integrations.hashing_embeddings import llamaindex_embedding  # noqa: E402

QUESTION = "What is the capital of the island nation Tesmark?"


@pytest.fixture(scope="module")
def corpus() -> list[Any]:
    return load_corpus(demo_corpus_path())


@pytest.fixture(scope="module")
def index(corpus: list[Any]) -> VectorStoreIndex:
    docs = [LIDocument(text=d.text, id_=d.id, metadata={"title": d.title, **dict(d.metadata)}) for d in corpus]
    return VectorStoreIndex.from_documents(docs, embed_model=llamaindex_embedding())


def test_a_vector_store_index_retriever_is_a_retriever_stage_option(index: VectorStoreIndex, corpus: list[Any]) -> None:
    stage = RetrieverRouter({"index": index.as_retriever(similarity_top_k=5),
                             "bm25": BM25Retriever(name="bm25").add_documents(corpus)}, k=3, default="index")
    with ledger_scope(CostLedger(allow_unpriced=True)) as ledger:
        out = stage.invoke(QUESTION)
    top = out.documents[0]
    assert len(out.documents) == 3 and top.id == "tesmark-0" and top.title == "Tesmark"
    assert top.retriever == "index" and top.document.metadata["parent_id"] == "tesmark"
    assert [d.rank for d in out.documents] == [1, 2, 3] and top.score >= out.documents[1].score > 0
    step = out.trace[0]
    assert step.choice == "index" and step.metadata["document_ids"][0] == "tesmark-0"
    # the query's embedding and the retrieval are metered, stamped with the stage's decision id
    assert {e.stage for e in ledger.entries} >= {"embedding", "retrieval"}
    assert all(e.decision_id == step.decision_id for e in ledger.entries)


async def test_it_serves_the_retrieval_strategy_stage_sync_and_async(index: VectorStoreIndex) -> None:
    stage = RetrievalStrategyRouter(index.as_retriever(similarity_top_k=4), k=2, default="single")
    sync, asynchronous = stage.invoke(QUESTION), await stage.ainvoke(QUESTION)
    assert sync.document_ids == asynchronous.document_ids and sync.document_ids[0] == "tesmark-0"


def test_nodes_and_documents_convert_both_ways(index: VectorStoreIndex) -> None:
    nodes = index.as_retriever(similarity_top_k=3).retrieve(QUESTION)
    hits = from_llamaindex_nodes(nodes, retriever="index")
    back = to_llamaindex_nodes(hits)
    again = from_llamaindex_nodes(back, retriever="index")
    assert [h.id for h in hits] == [n.node.ref_doc_id for n in nodes] == [h.id for h in again]
    assert [h.score for h in again] == [n.score for n in nodes]
    assert again[0].document == hits[0].document and back[0].node.metadata["rank"] == 1
    with pytest.raises(InvalidInputError, match="NodeWithScore"):
        from_llamaindex_nodes(["not a node"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="BaseRetriever"):
        LlamaIndexRetriever(object())  # type: ignore[arg-type]


def test_a_llamaindex_llm_is_a_generator_option_and_its_calls_carry_the_decision_id(
        index: VectorStoreIndex) -> None:
    price = Pricing(input_per_mtok=1.0, output_per_mtok=2.0)
    rag = RoutedRAG(retriever=index.as_retriever(similarity_top_k=2), k=2,
                    generator=GeneratorRouter({"mock": LlamaIndexChatLLM(MockLLM(max_tokens=3), pricing=price)}))
    plain = RoutedRAG(retriever=index.as_retriever(similarity_top_k=2), k=2,
                      generator=GeneratorRouter({"mock": MockLLM(max_tokens=3)}))  # adapted automatically
    with ledger_scope(CostLedger(allow_unpriced=True)) as ledger:
        out = rag.invoke(QUESTION)
        assert plain.invoke(QUESTION).answer == out.answer == "text text text"
    generator_step = out.trace[-1]
    (call,) = [e for e in ledger.entries if e.stage == "generation" and e.priced]
    assert call.decision_id == generator_step.decision_id and call.output_tokens == 3
    assert math.isclose(call.cost_usd, (call.input_tokens * 1.0 + 3 * 2.0) / 1e6)
    assert generator_step.usd == call.cost_usd
