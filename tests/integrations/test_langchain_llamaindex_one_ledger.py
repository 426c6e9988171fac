"""Both frameworks, one request ledger: an LCEL chain of stage routers and a LlamaIndex RouterQueryEngine with
RoutingSelector, sync, async and streaming. Fast with framework fakes; slow with MiniLM/FAISS and the real
local model (loaded once for the module)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from langchain_core.language_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.tools import QueryEngineTool  # noqa: E402

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.integrations import (  # noqa: E402
    ChatModelLLM,
    LlamaIndexChatLLM,
    RoutedRAGQueryEngine,
    StageRunnable,
    instrument,
    uninstrument,
)
from rag_routing.integrations.llamaindex import router_query_engine  # noqa: E402
from rag_routing.ledger import ledger_scope  # noqa: E402
from rag_routing.retrieval import BM25Retriever  # noqa: E402
from rag_routing.routers.similarity import KNNRouter  # noqa: E402
from rag_routing.stages import (  # noqa: E402
    ContextRouter,
    GeneratorRouter,
    PromptStrategyRouter,
    RetrievalStrategyRouter,
    RetrieverRouter,
    RoutedRAG,
)

DOCS = [{"_id": "fr", "text": "The capital of Freedonia is Zorbatown."},
        {"_id": "sy", "text": "Sylvania exports cheese and wool to Freedonia."}]
QUESTION = "What is the capital of Freedonia?"
HARD = "Compare the exports of Sylvania and explain why Freedonia buys them"


def size_router() -> KNNRouter:
    simple = ["what is the capital of freedonia", "capital of sylvania", "who rules freedonia", "capital city"]
    hard = ["compare the exports and explain why", "explain why sylvania exports wool and compare",
            "compare two countries and explain", "explain and compare the trade of freedonia"]
    ds = RoutingDataset(simple + hard, ["small", "large"], [[1, 1]] * 4 + [[0, 1]] * 4,
                        np.tile([0.0001, 0.01], (8, 1)))
    return KNNRouter(k=2, prior=0.0, featurizer="tfidf", lam=10.0).fit(ds)


def lcel_chain(retriever: Any, small: Any, large: Any) -> Any:
    generator = GeneratorRouter({"small": small, "large": large}, router=size_router(), max_new_tokens=16)
    return (StageRunnable(RetrievalStrategyRouter(retriever, k=1)) | StageRunnable(ContextRouter())
            | StageRunnable(PromptStrategyRouter()) | StageRunnable(generator))


def llamaindex_engine(retriever: Any, small: Any, large: Any, streaming: bool = False) -> Any:
    def tool(name: str, llm: Any) -> QueryEngineTool:
        rag = RoutedRAG(retriever=RetrieverRouter({"kb": retriever}, k=1), generator=GeneratorRouter({name: llm}))
        return QueryEngineTool.from_defaults(RoutedRAGQueryEngine(rag, streaming=streaming), name=name,
                                             description=f"the {name} pipeline")

    return router_query_engine(size_router(), [tool("small", small), tool("large", large)])


async def test_fakes_lcel_chain_and_router_query_engine_record_into_one_ledger() -> None:
    usage = {"input_tokens": 20, "output_tokens": 2, "total_tokens": 22}
    chat = GenericFakeChatModel(messages=itertools.cycle([AIMessage("Zorbatown", usage_metadata=usage)]))
    price = Pricing(input_per_mtok=1.0, output_per_mtok=2.0)
    bm25 = BM25Retriever(name="bm25").add_documents(DOCS)
    chain = lcel_chain(bm25, ChatModelLLM(chat, model_name="gpt-4o-mini"), ChatModelLLM(chat, model_name="gpt-4o"))
    engine = llamaindex_engine(bm25, LlamaIndexChatLLM(MockLLM(max_tokens=1), pricing=price),
                               LlamaIndexChatLLM(MockLLM(max_tokens=3), pricing=price))
    handler = instrument(pricing={"MockLLM": price})
    try:
        with ledger_scope() as ledger:
            lc = [chain.invoke(QUESTION), await chain.ainvoke(HARD), list(chain.stream(QUESTION))[-1].state]
            li = [str(engine.query(QUESTION)), str(await engine.aquery(HARD))]
    finally:
        uninstrument()
    assert [s.answer for s in lc] == ["Zorbatown"] * 3 and li == ["text", "text text text"]
    assert [s.choices()["generator"] for s in lc] == ["small", "large", "small"]
    models = [e.model for e in ledger.entries if e.stage == "generation"]
    assert models == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini", "MockLLM", "MockLLM"]
    assert len([e for e in ledger.entries if e.stage == "routing"]) >= 2 + 3  # 2 selections + the stage routers
    assert ledger.totals()["cost_usd"] > 0 and ledger.totals()["unpriced_calls"] == 0 and handler.errors == []


@pytest.fixture(scope="module")
def local_models() -> tuple[Any, Any]:
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from rag_routing.integrations import LocalChatModel, LocalLlamaIndexLLM

    chat, llm = LocalChatModel(max_tokens=16), LocalLlamaIndexLLM(max_tokens=16)
    chat.llm.load()  # both wrappers share the one loaded model
    return chat, llm


@pytest.fixture(scope="module")
def dense() -> Any:
    pytest.importorskip("faiss")
    pytest.importorskip("sentence_transformers")
    from rag_routing.retrieval import DenseRetriever

    return DenseRetriever(name="minilm").add_documents(DOCS)


@pytest.mark.slow
async def test_real_models_both_frameworks_sync_async_streaming_one_ledger(local_models: Any, dense: Any) -> None:
    chat, llm = local_models
    chain = lcel_chain(dense, ChatModelLLM(chat), ChatModelLLM(chat))
    engine = llamaindex_engine(dense, LlamaIndexChatLLM(llm), LlamaIndexChatLLM(llm), streaming=True)
    with ledger_scope() as ledger:
        out = chain.invoke(QUESTION)
        chunks = [c async for c in chain.astream(QUESTION)]
        response = engine.query(QUESTION)
        streamed = "".join(response.response_gen)
        aresponse = await engine.aquery(QUESTION)
        astreamed = "".join([t async for t in aresponse.async_response_gen()])
    assert "Zorbatown" in out.answer and chunks[-1].state.answer == out.answer
    assert "".join(c.answer_delta for c in chunks if not c.is_final).strip()
    assert "Zorbatown" in streamed and streamed == astreamed
    assert out.document_ids == ["fr"] and response.source_nodes[0].node.node_id == "fr"
    stages = {e.stage for e in ledger.entries}
    assert {"routing", "retrieval", "generation"} <= stages
    generation = [e for e in ledger.entries if e.stage == "generation"]
    assert len(generation) == 4 and {e.model for e in generation} == {"SmolLM2-135M-Instruct"}
