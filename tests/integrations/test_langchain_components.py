"""Your own LangChain components in the stages: an ``InMemoryVectorStore`` retriever as a retriever-stage and
retrieval-strategy option (real vector store over the bundled demo corpus, deterministic hashing embeddings),
documents converted both ways, a LangChain chat model as a generator option."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402

from rag_routing.errors import InvalidInputError  # noqa: E402
from rag_routing.integrations.langchain import (  # noqa: E402
    LangChainRetriever,
    from_langchain_documents,
    to_langchain_documents,
)
from rag_routing.ledger import ledger_scope  # noqa: E402
from rag_routing.retrieval import BM25Retriever, load_corpus  # noqa: E402
from rag_routing.stages import GeneratorRouter, RetrievalStrategyRouter, RetrieverRouter  # noqa: E402
from rag_routing.stages.defaults import demo_corpus_path  # noqa: E402
from tests.integrations.hashing_embeddings import langchain_embeddings  # noqa: E402
from tests.integrations.langchain_fakes import CountingChat  # noqa: E402

QUESTION = "What is the capital of the island nation Tesmark?"


@pytest.fixture(scope="module")
def corpus() -> list[Any]:
    return load_corpus(demo_corpus_path())


@pytest.fixture(scope="module")
def store(corpus: list[Any]) -> InMemoryVectorStore:
    store = InMemoryVectorStore(langchain_embeddings())
    store.add_documents([LCDocument(page_content=d.text, metadata={"_id": d.id, "title": d.title, **d.metadata})
                         for d in corpus])
    return store


def test_a_vector_store_retriever_is_a_retriever_stage_option(store: InMemoryVectorStore, corpus: list[Any]) -> None:
    stage = RetrieverRouter({"memory": store.as_retriever(), "bm25": BM25Retriever(name="bm25").add_documents(corpus)},
                            k=3, default="memory")
    with ledger_scope() as ledger:
        out = stage.invoke(QUESTION)
    top = out.documents[0]
    assert [d.rank for d in out.documents] == [1, 2, 3] and top.id == "tesmark-0" and top.title == "Tesmark"
    assert top.retriever == "memory" and top.document.metadata == {"parent_id": "tesmark"}
    expected = store.similarity_search_with_score(QUESTION, k=3)  # the store's own cosine scores
    assert [d.score for d in out.documents] == [s for _, s in expected]
    (entry,) = [e for e in ledger.entries if e.stage == "retrieval"]
    assert entry.component == "memory" and entry.decision_id == out.trace[0].decision_id


async def test_it_serves_the_retrieval_strategy_stage_sync_and_async(store: InMemoryVectorStore) -> None:
    stage = RetrievalStrategyRouter(store.as_retriever(), k=2, default="single")
    sync, asynchronous = stage.invoke(QUESTION), await stage.ainvoke(QUESTION)
    assert sync.document_ids == asynchronous.document_ids and sync.document_ids[0] == "tesmark-0"


async def test_other_search_types_use_the_retriever_itself(store: InMemoryVectorStore) -> None:
    retriever = LangChainRetriever(store.as_retriever(search_type="mmr", search_kwargs={"fetch_k": 10}), name="mmr")
    hits, ahits = retriever.retrieve(QUESTION, 2), await retriever.aretrieve(QUESTION, 2)
    assert [h.id for h in hits] == [h.id for h in ahits] and len(hits) == 2 and hits[0].id == "tesmark-0"
    assert [h.score for h in hits] == [1.0, 0.5]  # no scores from MMR: 1 / rank


def test_documents_convert_both_ways(store: InMemoryVectorStore) -> None:
    hits = LangChainRetriever(store.as_retriever(), name="memory").retrieve(QUESTION, 3)
    docs = to_langchain_documents(hits)
    again = from_langchain_documents(docs, retriever="memory")
    assert again == hits  # ids, texts, titles, metadata, scores, ranks
    assert docs[0].id == "tesmark-0" and docs[0].metadata["score"] == hits[0].score
    with pytest.raises(InvalidInputError, match="LangChain Documents"):
        from_langchain_documents(["text"])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="BaseRetriever"):
        LangChainRetriever(store)  # type: ignore[arg-type]


def test_a_langchain_chat_model_is_a_generator_option() -> None:
    chat = CountingChat(reply="Velmora")  # a priced model (gpt-4o-mini) that reports its usage
    with ledger_scope() as ledger:
        out = GeneratorRouter({"chat": chat}).invoke(QUESTION)
    (entry,) = [e for e in ledger.entries if e.stage == "generation"]
    assert out.answer == "Velmora" and entry.model == "gpt-4o-mini" and entry.decision_id == out.trace[0].decision_id
