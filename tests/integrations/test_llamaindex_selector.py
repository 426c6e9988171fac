"""RoutingSelector inside LlamaIndex's RouterQueryEngine and RouterRetriever (real BM25, MockLLM, a fitted router)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.base.response.schema import AsyncStreamingResponse, StreamingResponse  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RouterQueryEngine  # noqa: E402
from llama_index.core.retrievers import RouterRetriever  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402
from llama_index.core.tools import QueryEngineTool, RetrieverTool, ToolMetadata  # noqa: E402

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.errors import NotFittedError, UnknownCandidateError  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.integrations.llamaindex import (  # noqa: E402
    LlamaIndexChatLLM,
    RoutedRAGQueryEngine,
    RoutingDecisionEvent,
    RoutingSelector,
    instrument,
    router_query_engine,
    router_retriever,
    uninstrument,
)
from rag_routing.ledger import ledger_scope  # noqa: E402
from rag_routing.retrieval import BM25Retriever  # noqa: E402
from rag_routing.routers.similarity import KNNRouter  # noqa: E402
from rag_routing.stages import RoutedRAG  # noqa: E402

MATH = "solve the integral of x^7 times sin(x) dx"
CHAT = "hello, how are you doing today my friend"
DOCS = [{"_id": "calc", "text": "The integral of sin(x) is -cos(x) plus a constant."},
        {"_id": "greet", "text": "A friendly greeting: hello, I am doing well today."}]
PRICE = Pricing(input_per_mtok=1.0, output_per_mtok=2.0)


@pytest.fixture
def router(toy_dataset: RoutingDataset) -> KNNRouter:
    return KNNRouter(k=5, prior=0.0, featurizer="tfidf", lam=10.0).fit(toy_dataset)


def engine(max_tokens: int, streaming: bool = False) -> RoutedRAGQueryEngine:
    llm = LlamaIndexChatLLM(MockLLM(max_tokens=max_tokens), model_name=f"mock-{max_tokens}", pricing=PRICE)
    rag = RoutedRAG(retriever=BM25Retriever(name="bm25").add_documents(DOCS), generator=llm, k=1)
    return RoutedRAGQueryEngine(rag, streaming=streaming)


def tools(streaming: bool = False) -> list[QueryEngineTool]:
    return [QueryEngineTool.from_defaults(engine(1, streaming), name="small", description="cheap model"),
            QueryEngineTool.from_defaults(engine(3, streaming), name="large", description="strong model")]


class Decisions(BaseEventHandler):
    events: list = []

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, RoutingDecisionEvent) and event.stage == "routing":
            self.events.append(event)


@pytest.fixture
def decisions() -> Any:
    handler = Decisions(events=[])
    get_dispatcher().add_event_handler(handler)
    yield handler
    get_dispatcher().event_handlers.remove(handler)


async def test_router_query_engine_runs_the_engine_the_router_chose(router: KNNRouter, decisions: Any) -> None:
    qe = RouterQueryEngine(selector=RoutingSelector(router), query_engine_tools=tools(), llm=MockLLM())
    for query, choice, answer in ((MATH, 1, "text text text"), (CHAT, 0, "text")):
        expected = router.route_one(query).candidate
        assert ["small", "large"][choice] == expected
        response = qe.query(query)
        assert str(response) == answer and response.metadata["selector_result"].ind == choice
        assert response.metadata["choices"]["generator"] == f"mock-{[1, 3][choice]}"
        aresponse = await qe.aquery(query)
        assert str(aresponse) == answer and aresponse.metadata["selector_result"].ind == choice
    assert [e.choice for e in decisions.events] == ["large", "large", "small", "small"]
    assert decisions.events[0].decision["candidate"] == "large" and decisions.events[0].choice_index == 1


async def test_streaming_engines_behind_the_router(router: KNNRouter) -> None:
    qe = router_query_engine(router, tools(streaming=True))
    response = qe.query(MATH)
    assert isinstance(response, StreamingResponse)
    assert "".join(response.response_gen) == "text text text"
    assert response.source_nodes[0].node.node_id == "calc" and response.metadata["answer"] == "text text text"
    aresponse = await qe.aquery(CHAT)
    assert isinstance(aresponse, AsyncStreamingResponse)
    assert [t async for t in aresponse.async_response_gen()] == ["text"]
    assert aresponse.metadata["selector_result"].ind == 0


async def test_selections_and_calls_land_in_one_ledger(router: KNNRouter) -> None:
    handler = instrument(pricing={"MockLLM": PRICE})
    try:
        qe = router_query_engine(router, tools())
        with ledger_scope() as ledger:
            qe.query(MATH)
            await qe.aquery(CHAT)
    finally:
        uninstrument()
    routing = [e for e in ledger.entries if e.stage == "routing"]
    generation = [e for e in ledger.entries if e.stage == "generation"]
    assert [e.metadata["choice"] for e in routing] == ["large", "small"] and all(e.decision_id for e in routing)
    assert len(generation) == 2 and all(e.cost_usd > 0 for e in generation)  # once each, not twice
    assert {e.stage for e in ledger.entries} == {"routing", "retrieval", "generation"}
    assert handler.errors == []


class BM25Tool(BaseRetriever):
    """Our BM25 retriever behind LlamaIndex's retriever interface."""

    def __init__(self, docs: list[dict[str, str]]):
        super().__init__()
        self.bm25 = BM25Retriever(name="bm25").add_documents(docs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.bm25.retrieve(query_bundle.query_str, 1)
        return [NodeWithScore(node=TextNode(id_=h.id, text=h.text), score=h.score) for h in hits]


async def test_router_retriever_picks_the_knowledge_base() -> None:
    queries = ["integral of x", "derivative of sin", "solve the equation", "hello friend", "how are you", "good day"]
    ds = RoutingDataset(queries, ["math_kb", "chat_kb"], [[1, 0]] * 3 + [[0, 1]] * 3, np.full((6, 2), 0.001))
    router = KNNRouter(k=3, prior=0.0, featurizer="tfidf").fit(ds)
    retriever_tools = [RetrieverTool.from_defaults(BM25Tool(DOCS[:1]), name="math_kb", description="maths"),
                       RetrieverTool.from_defaults(BM25Tool(DOCS[1:]), name="chat_kb", description="chat")]
    rr = RouterRetriever(selector=RoutingSelector(router), retriever_tools=retriever_tools, llm=MockLLM())
    assert [n.node.node_id for n in rr.retrieve("solve the integral of x")] == ["calc"]
    assert [n.node.node_id for n in await rr.aretrieve("hello, how are you")] == ["greet"]
    assert [n.node.node_id for n in router_retriever(router, retriever_tools).retrieve("hello friend")] == ["greet"]


def test_bad_choice_mappings_raise_instead_of_misrouting(router: KNNRouter) -> None:
    small, large = ToolMetadata(name="small", description="a"), ToolMetadata(name="large", description="b")
    medium = ToolMetadata(name="medium", description="c")
    with pytest.raises(UnknownCandidateError, match="not candidates"):
        RoutingSelector(router).select([small, medium], MATH)
    with pytest.raises(UnknownCandidateError, match="without a tool"):
        RoutingSelector(router).select([small], MATH)
    with pytest.raises(UnknownCandidateError, match="duplicates"):
        RoutingSelector(router).select([small, large, small], MATH)
    with pytest.raises(UnknownCandidateError, match="no name"):
        RoutingSelector(router).select([ToolMetadata(description="anonymous"), large], MATH)
    with pytest.raises(UnknownCandidateError, match="2 tools"):
        RoutingSelector(router, choice_names=["small"]).select([small, large], MATH)
    with pytest.raises(UnknownCandidateError, match="not in choice_names"):
        RoutingSelector(router, choice_names={"cheap": "small"}).select([small, large], MATH)
    with pytest.raises(NotFittedError):
        RoutingSelector(KNNRouter(featurizer="tfidf")).select([small, large], MATH)


async def test_explicit_choice_names_map_tools_to_candidates(router: KNNRouter) -> None:
    tools_ = [ToolMetadata(name="gpt4", description="strong"), ToolMetadata(name="mini", description="cheap")]
    by_index = RoutingSelector(router, choice_names=["large", "small"])
    by_name = RoutingSelector(router, choice_names={"gpt4": "large", "mini": "small"})
    assert by_index.select(tools_, MATH).ind == 0 and by_name.select(tools_, CHAT).ind == 1
    result = await by_name.aselect(tools_, QueryBundle(MATH))
    assert result.ind == 0 and "large" in result.reason
    assert RoutingSelector(router, choice_names=["small", "large"]).select(["d1", "d2"], CHAT).ind == 0
