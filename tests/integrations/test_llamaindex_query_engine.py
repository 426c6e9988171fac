"""RoutedRAGQueryEngine: a routed pipeline (real BM25 stages, a fitted generator router) as a LlamaIndex engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.response.schema import AsyncStreamingResponse, Response, StreamingResponse  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.tools import QueryEngineTool  # noqa: E402

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.errors import InvalidInputError  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.integrations.llamaindex import (  # noqa: E402
    LlamaIndexChatLLM,
    RoutedRAGQueryEngine,
    RoutingDecisionEvent,
    router_query_engine,
)
from rag_routing.ledger import ledger_scope  # noqa: E402
from rag_routing.retrieval import BM25Retriever  # noqa: E402
from rag_routing.routers.similarity import KNNRouter  # noqa: E402
from rag_routing.stages import GeneratorRouter, RetrieverRouter, RoutedRAG  # noqa: E402

DOCS = [{"_id": "peru", "text": "Lima is the capital of Peru.", "title": "Peru"},
        {"_id": "ecuador", "text": "Quito is the capital of Ecuador.", "title": "Ecuador"}]
SIMPLE = "What is the capital of Peru?"
HARD = "Compare the capitals of Peru and Ecuador and explain which is higher"
PRICE = Pricing(input_per_mtok=1.0, output_per_mtok=2.0)


def pipeline() -> RoutedRAG:
    simple = ["what is the capital of peru", "capital of chile", "who wrote hamlet", "capital of france"]
    hard = ["compare peru and chile and explain why", "explain why and compare the andes",
            "compare two capitals and explain which is older", "explain and compare rivers"]
    ds = RoutingDataset(simple + hard, ["small", "large"], [[1, 1]] * 4 + [[0, 1]] * 4,
                        np.tile([0.0001, 0.01], (8, 1)))
    generator = GeneratorRouter(
        {"small": LlamaIndexChatLLM(MockLLM(max_tokens=1), model_name="mock-small", pricing=PRICE),
         "large": LlamaIndexChatLLM(MockLLM(max_tokens=4), model_name="mock-large", pricing=PRICE)},
        router=KNNRouter(k=2, prior=0.0, featurizer="tfidf", lam=10.0).fit(ds))
    retriever = RetrieverRouter({"bm25": BM25Retriever(name="bm25").add_documents(DOCS)}, k=1)
    return RoutedRAG(retriever=retriever, generator=generator)


class StageEvents(BaseEventHandler):
    events: list = []

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, RoutingDecisionEvent):
            self.events.append(event)


@pytest.fixture
def events() -> Any:
    handler = StageEvents(events=[])
    get_dispatcher().add_event_handler(handler)
    yield handler
    get_dispatcher().event_handlers.remove(handler)


async def test_query_returns_answer_sources_trace_and_cost(events: Any) -> None:
    engine = RoutedRAGQueryEngine(pipeline())
    with ledger_scope() as ledger:
        response = engine.query(HARD)
        aresponse = await engine.aquery(SIMPLE)
    assert isinstance(response, Response) and str(response) == "text text text text"
    assert str(aresponse) == "text"
    node = response.source_nodes[0]
    assert node.node.node_id in {"peru", "ecuador"} and node.node.metadata["title"] and node.score is not None
    assert response.metadata["choices"] == {"retriever": "bm25", "generator": "large"}
    assert aresponse.metadata["choices"]["generator"] == "small"
    assert [step["stage"] for step in response.metadata["trace"]] == ["retriever", "generator"]
    total = response.metadata["cost"]["usd"] + aresponse.metadata["cost"]["usd"]
    assert total == pytest.approx(ledger.totals()["cost_usd"]) and total > 0
    assert [(e.stage, e.choice) for e in events.events] == [("retriever", "bm25"), ("generator", "large"),
                                                             ("retriever", "bm25"), ("generator", "small")]
    assert events.events[1].decision["candidate"] == "large" and events.events[1].cost_usd > 0


async def test_streaming_sync_and_async() -> None:
    engine = RoutedRAGQueryEngine(pipeline(), streaming=True)
    with ledger_scope() as ledger:
        response = engine.query(HARD)
        assert isinstance(response, StreamingResponse) and response.source_nodes == []  # filled at the end
        tokens = list(response.response_gen)
        aresponse = await engine.aquery(HARD)
        assert isinstance(aresponse, AsyncStreamingResponse)
        atokens = [t async for t in aresponse.async_response_gen()]
    assert tokens == atokens == ["text ", "text ", "text ", "text"]
    assert response.metadata["answer"] == "".join(tokens) and response.source_nodes[0].node.node_id
    assert aresponse.metadata["choices"]["generator"] == "large"
    assert len([e for e in ledger.entries if e.stage == "generation"]) == 2


async def test_an_llm_that_cannot_stream_yields_the_answer_at_once() -> None:
    rag = RoutedRAG(retriever=BM25Retriever().add_documents(DOCS), generator=lambda messages: "Lima", k=1)
    engine = RoutedRAGQueryEngine(rag, streaming=True)
    assert list(engine.query(SIMPLE).response_gen) == ["Lima"]
    assert [t async for t in (await engine.aquery(SIMPLE)).async_response_gen()] == ["Lima"]


def test_errors_surface_in_the_stream_and_bad_pipelines_are_refused() -> None:
    def broken(messages: Any) -> str:
        raise RuntimeError("generator down")

    rag = RoutedRAG(retriever=BM25Retriever().add_documents(DOCS), generator=broken, k=1)
    with pytest.raises(RuntimeError, match="generator down"):
        list(RoutedRAGQueryEngine(rag, streaming=True).query(SIMPLE).response_gen)
    with pytest.raises(InvalidInputError):
        RoutedRAGQueryEngine(object())


def test_whole_pipelines_as_tools_of_a_router_query_engine(toy_dataset: RoutingDataset) -> None:
    router = KNNRouter(k=5, prior=0.0, featurizer="tfidf", lam=10.0).fit(toy_dataset)
    small = RoutedRAG(retriever=BM25Retriever().add_documents(DOCS), generator=lambda m: "from small", k=1)
    large = RoutedRAG(retriever=BM25Retriever().add_documents(DOCS), generator=lambda m: "from large", k=1)
    qe = router_query_engine(router, [QueryEngineTool.from_defaults(RoutedRAGQueryEngine(small), name="small"),
                                      QueryEngineTool.from_defaults(RoutedRAGQueryEngine(large), name="large")])
    assert str(qe.query("solve the integral of x^7 times sin(x) dx")) == "from large"
    assert str(qe.query("hello, how are you doing today")) == "from small"


async def test_instrumented_streaming_records_each_call_once() -> None:
    from rag_routing.integrations.llamaindex import instrument, uninstrument

    instrument(pricing={"MockLLM": PRICE})
    try:
        engine = RoutedRAGQueryEngine(pipeline(), streaming=True)
        with ledger_scope() as ledger:
            list(engine.query(HARD).response_gen)
            [t async for t in (await engine.aquery(SIMPLE)).async_response_gen()]
            engine.streaming = False
            engine.query(HARD)
    finally:
        uninstrument()
    generation = [e for e in ledger.entries if e.stage == "generation"]
    assert len(generation) == 3 and {e.model for e in generation} == {"MockLLM"}
