"""Streaming end to end: RoutedRAG.stream / astream, the LCEL runnable of a RoutedRAG and a streaming
RoutedRAGQueryEngine yield the generator's tokens as they are produced (the real local decoding loop over a
scripted model); the trace and ledger are complete when the stream ends; an abandoned stream stops the
generation, bills the tokens it produced and releases the rest of the reservation."""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import closing
from typing import Any

import pytest

pytest.importorskip("torch")

from rag_routing.ledger import Budget, CostLedger, ledger_scope  # noqa: E402
from rag_routing.llms.local import LocalLLM  # noqa: E402
from rag_routing.llms.scripted import scripted_model  # noqa: E402
from rag_routing.stages import GeneratorRouter, PricedLLM, RoutedRAG  # noqa: E402
from rag_routing.stages.streaming import AnswerStream, StreamAbandoned, current_stream  # noqa: E402

ANSWER = "Velmora is the capital"
LONG = "x" * 300
QUESTION = "What is the capital of Tesmark?"


class SlowLocalLLM(LocalLLM):
    """The local decoding loop, a few milliseconds a token (so a consumer can leave mid-answer)."""

    def stream_chunks(self, prompt: Any, **kwargs: Any) -> Any:
        chunks = super().stream_chunks(prompt, **kwargs)

        def slow() -> Any:
            with closing(chunks):  # closing this stream closes the model's (which records what ran)
                for chunk in chunks:
                    time.sleep(0.003)
                    yield chunk

        return slow()


def rag(bm25: Any, llm: Any, max_new_tokens: int = 64) -> RoutedRAG:
    return RoutedRAG(retriever=bm25, k=2, generator=GeneratorRouter({"local": llm}, max_new_tokens=max_new_tokens))


@pytest.fixture
def local(tmp_path: Any) -> LocalLLM:
    return LocalLLM(scripted_model(ANSWER, folder=str(tmp_path / "answer")))


@pytest.fixture
def slow(tmp_path: Any) -> SlowLocalLLM:
    return SlowLocalLLM(scripted_model(LONG, folder=str(tmp_path / "long")))


def generation(ledger: CostLedger) -> list[Any]:
    return [e for e in ledger.entries if e.stage == "generation"]


def test_stream_yields_each_token_then_the_full_state(bm25: Any, local: LocalLLM) -> None:
    with ledger_scope() as ledger:
        stream = rag(bm25, local).stream(QUESTION)
        pieces = list(stream)
    assert pieces == list(ANSWER) and stream.state.answer == ANSWER
    assert [s.stage for s in stream.state.trace] == ["retriever", "generator"]
    (entry,) = generation(ledger)
    assert entry.output_tokens == len(ANSWER) + 1 and entry.decision_id == stream.state.trace[-1].decision_id
    assert stream.state.cost()["calls"] == len(ledger)  # the trace and the ledger are complete at the end


async def test_astream_matches_stream(bm25: Any, local: LocalLLM) -> None:
    stream = rag(bm25, local).astream(QUESTION)
    pieces = [p async for p in stream]
    assert pieces == list(ANSWER) and stream.state.answer == ANSWER


def test_a_generator_that_cannot_stream_gives_its_answer_in_one_piece(bm25: Any) -> None:
    stream = rag(bm25, lambda messages: "Velmora").stream(QUESTION)
    assert list(stream) == ["Velmora"] and stream.state.answer == "Velmora"


def test_an_abandoned_stream_bills_what_ran_and_releases_the_rest(bm25: Any, slow: SlowLocalLLM) -> None:
    budget = Budget(max_usd=1.0)
    with ledger_scope(CostLedger(budget=budget)) as ledger:
        stream = rag(bm25, PricedLLM(slow, "gpt-4o-mini"), max_new_tokens=300).stream(QUESTION)
        assert [next(stream) for _ in range(3)] == ["x", "x", "x"]
        stream.close()
    (entry,) = generation(ledger)
    assert 3 <= entry.output_tokens < 100 and entry.metadata["finish_reason"] == "cancelled"
    assert math.isclose(budget.spent().usd, entry.cost_usd) and math.isclose(budget.reserved().usd, 0, abs_tol=1e-12)


async def test_an_abandoned_astream_stops_the_generation(bm25: Any, slow: SlowLocalLLM) -> None:
    budget = Budget(max_tokens=100_000)
    with ledger_scope(CostLedger(budget=budget)) as ledger:
        stream = rag(bm25, slow, max_new_tokens=300).astream(QUESTION)
        async for _ in stream:
            break
        await stream.aclose()
    (entry,) = generation(ledger)
    assert entry.output_tokens < 100 and budget.reserved().tokens == 0


def test_the_stream_control_refuses_pieces_once_cancelled() -> None:
    def pipeline(state: Any) -> Any:
        control = current_stream()
        control.emit("a")
        control.cancel()
        control.emit("b")  # raises: nobody listens any more

    stream = AnswerStream(pipeline, QUESTION)
    assert next(stream) == "a"
    with pytest.raises(StreamAbandoned):
        list(stream)


def test_the_lcel_runnable_of_a_routed_rag_streams_tokens(bm25: Any, local: LocalLLM) -> None:
    pytest.importorskip("langchain_core")
    from rag_routing.integrations.langchain import as_runnable

    chunks = list(as_runnable(rag(bm25, local)).stream(QUESTION))
    deltas = [c.answer_delta for c in chunks if c.state is None]
    assert deltas == list(ANSWER) and chunks[-1].state.answer == ANSWER


async def test_an_abandoned_lcel_astream_stops_the_generation(bm25: Any, slow: SlowLocalLLM) -> None:
    pytest.importorskip("langchain_core")
    from rag_routing.integrations.langchain import as_runnable

    with ledger_scope() as ledger:
        stream = as_runnable(rag(bm25, slow, max_new_tokens=300)).astream(QUESTION)
        async for _ in stream:
            break
        await stream.aclose()
        for _ in range(200):  # the worker thread notices at its next token
            if generation(ledger):
                break
            await asyncio.sleep(0.01)
    (entry,) = generation(ledger)
    assert entry.output_tokens < 100


async def test_a_streaming_query_engine_streams_the_local_model(bm25: Any, local: LocalLLM,
                                                                slow: SlowLocalLLM) -> None:
    pytest.importorskip("llama_index.core")
    from rag_routing.integrations.llamaindex import RoutedRAGQueryEngine

    engine = RoutedRAGQueryEngine(rag(bm25, local), streaming=True)
    response = engine.query(QUESTION)
    assert list(response.response_gen) == list(ANSWER) and response.metadata["answer"] == ANSWER
    assert response.source_nodes and response.metadata["trace"][-1]["stage"] == "generator"
    aresponse = await engine.aquery(QUESTION)
    assert [t async for t in aresponse.async_response_gen()] == list(ANSWER)
    with ledger_scope() as ledger:
        tokens = RoutedRAGQueryEngine(rag(bm25, slow, max_new_tokens=300), streaming=True).query(QUESTION).response_gen
        next(tokens)
        tokens.close()
    (entry,) = generation(ledger)
    assert entry.output_tokens < 100 and entry.metadata["finish_reason"] == "cancelled"
