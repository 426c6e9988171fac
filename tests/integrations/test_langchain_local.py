"""The local chat model inside LCEL stage chains, with a scripted stand-in for the weights (fast).

The real SmolLM2 runs in test_langchain_llamaindex_local_e2e.py (slow)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("torch")

from rag_routing.integrations.langchain import ChatModelLLM, LocalChatModel, StageRunnable  # noqa: E402
from rag_routing.ledger import ledger_scope  # noqa: E402
from rag_routing.retrieval import BM25Retriever  # noqa: E402
from rag_routing.stages import (  # noqa: E402
    ContextRouter,
    GeneratorRouter,
    PromptStrategyRouter,
    RetrievalStrategyRouter,
)

DOCS = [{"_id": "fr", "text": "The capital of Freedonia is Zorbatown."},
        {"_id": "sy", "text": "Sylvania exports cheese and wool."}]
QUESTION = "What is the capital of Freedonia?"


def stage_chain(model: LocalChatModel) -> Any:
    bm25 = BM25Retriever(name="bm25").add_documents(DOCS)
    generator = GeneratorRouter({"local": ChatModelLLM(model)}, max_new_tokens=16)
    return (StageRunnable(RetrievalStrategyRouter(bm25, k=1)) | StageRunnable(ContextRouter())
            | StageRunnable(PromptStrategyRouter()) | StageRunnable(generator))


async def test_scripted_local_model_streams_tokens_and_records_each_call_once(tmp_path: Any) -> None:
    from rag_routing.llms.scripted import scripted_model

    model = LocalChatModel(model_path=scripted_model("Zorbatown", folder=str(tmp_path / "m")), max_tokens=16)
    chain = stage_chain(model)
    with ledger_scope() as ledger:
        out = chain.invoke(QUESTION)
        chunks = list(chain.stream(QUESTION))
        achunks = [c async for c in chain.astream(QUESTION)]
        aout = await chain.ainvoke(QUESTION)
    assert out.answer == aout.answer == chunks[-1].state.answer == achunks[-1].state.answer == "Zorbatown"
    assert "".join(c.answer_delta for c in chunks) == "Zorbatown" and len(chunks) > 5  # one chunk per character
    generation = [e for e in ledger.entries if e.stage == "generation"]
    assert len(generation) == 4  # the model records itself; the ChatModelLLM handler does not count it again
    assert all(e.cost_usd == 0.0 and e.output_tokens > 0 for e in generation)
    assert generation[0].decision_id == out.steps("generator")[0].decision_id
