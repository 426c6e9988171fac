"""Budgets and metering on the RoutedRAG paths: invoke, ainvoke, stream, astream, with a priced generator.

Columns: metered with no handler attached (every entry carries its stage's decision id); refused before the
call when the budget cannot cover it (the model's call counter does not move); exact totals under 8 threads /
200 asyncio tasks. The generator is the real local decoding loop over a scripted model (no weights), billed as
``gpt-4o-mini`` by :class:`~rag_routing.stages.generator.PricedLLM`.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

pytest.importorskip("torch")

from rag_routing.errors import BudgetExceededError  # noqa: E402
from rag_routing.ledger import Budget, CostLedger, LedgerThreadPoolExecutor, ledger_scope  # noqa: E402
from rag_routing.llms.local import LocalLLM  # noqa: E402
from rag_routing.llms.scripted import scripted_model  # noqa: E402
from rag_routing.stages import GeneratorRouter, PricedLLM, RoutedRAG  # noqa: E402

PATHS = ["invoke", "ainvoke", "stream", "astream"]
ANSWER = "Velmora"
MINI_IN, MINI_OUT = 0.15e-6, 0.60e-6


class CountingLocalLLM(LocalLLM):
    """The local decoding loop; ``calls`` counts how often decoding really started."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []

    def stream_chunks(self, prompt: Any, **kwargs: Any) -> Any:
        self.calls.append(1)
        return super().stream_chunks(prompt, **kwargs)


@pytest.fixture
def model(tmp_path: Any) -> CountingLocalLLM:
    return CountingLocalLLM(scripted_model(ANSWER, folder=str(tmp_path / "m")))


def pipeline(bm25: Any, model: CountingLocalLLM) -> RoutedRAG:
    return RoutedRAG(retriever=bm25, k=2,
                     generator=GeneratorRouter({"mini": PricedLLM(model, "gpt-4o-mini")}, max_new_tokens=16))


def ask(path: str, rag: RoutedRAG, question: str) -> str:
    if path == "invoke":
        return rag.invoke(question).answer
    if path == "stream":
        stream = rag.stream(question)
        pieces = list(stream)
        assert "".join(pieces) == stream.state.answer and len(pieces) == len(ANSWER)  # one piece per token
        return stream.state.answer

    async def go() -> str:
        if path == "ainvoke":
            return (await rag.ainvoke(question)).answer
        stream = rag.astream(question)
        pieces = [p async for p in stream]
        assert "".join(pieces) == stream.state.answer
        return stream.state.answer

    return asyncio.run(go())


def generation(ledger: CostLedger) -> list[Any]:
    return [e for e in ledger.entries if e.stage == "generation"]


@pytest.mark.parametrize("path", PATHS)
def test_metered_with_no_handler_attached(path: str, bm25: Any, model: CountingLocalLLM) -> None:
    with ledger_scope() as ledger:
        assert ask(path, pipeline(bm25, model), "What is the capital of Tesmark?") == ANSWER
    (entry,) = generation(ledger)
    assert entry.model == "gpt-4o-mini" and not entry.estimated and entry.energy_kwh is not None  # model size known
    assert entry.output_tokens == len(ANSWER) + 1  # one token a character, plus the end of sequence
    assert math.isclose(entry.cost_usd, entry.input_tokens * MINI_IN + entry.output_tokens * MINI_OUT)
    assert entry.decision_id is not None and {e.decision_id for e in ledger.entries} >= {entry.decision_id}
    assert len(model.calls) == 1


@pytest.mark.parametrize("path", PATHS)
def test_refused_before_the_call_when_the_budget_cannot_cover_it(path: str, bm25: Any,
                                                                 model: CountingLocalLLM) -> None:
    budget = Budget(max_usd=0.000005)  # the estimate: ~70 prompt tokens + 16 output tokens at gpt-4o-mini
    with ledger_scope(CostLedger(budget=budget)) as ledger:
        with pytest.raises(BudgetExceededError, match="gpt-4o-mini"):
            ask(path, pipeline(bm25, model), "What is the capital of Tesmark?")
    assert model.calls == [] and generation(ledger) == []
    assert budget.spent().usd == 0 and budget.reserved().usd == 0


@pytest.mark.parametrize("path", ["invoke", "stream"])
def test_exact_totals_under_8_threads(path: str, bm25: Any, model: CountingLocalLLM) -> None:
    rag, budget = pipeline(bm25, model), Budget(max_usd=1.0)
    with ledger_scope(CostLedger(budget=budget)) as ledger:
        with LedgerThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda i: ask(path, rag, f"Capital of Tesmark? ({i})"), range(24)))
    entries = generation(ledger)
    assert answers == [ANSWER] * 24 and len(entries) == len(model.calls) == 24
    expected = sum(e.input_tokens * MINI_IN + e.output_tokens * MINI_OUT for e in entries)
    assert math.isclose(ledger.totals()["cost_usd"], expected, rel_tol=1e-12)
    assert math.isclose(budget.spent().usd, expected, rel_tol=1e-12)
    assert math.isclose(budget.reserved().usd, 0, abs_tol=1e-12)


@pytest.mark.parametrize("path", ["ainvoke", "astream"])
async def test_exact_totals_under_200_asyncio_tasks(path: str, bm25: Any, model: CountingLocalLLM) -> None:
    rag, budget = pipeline(bm25, model), Budget(max_usd=1.0)

    async def one(i: int) -> str:
        if path == "ainvoke":
            return (await rag.ainvoke(f"Capital of Tesmark? ({i})")).answer
        return "".join([p async for p in rag.astream(f"Capital of Tesmark? ({i})")])

    with ledger_scope(CostLedger(budget=budget)) as ledger:
        answers = await asyncio.gather(*(one(i) for i in range(200)))
    entries = generation(ledger)
    assert answers == [ANSWER] * 200 and len(entries) == len(model.calls) == 200
    expected = sum(e.input_tokens * MINI_IN + e.output_tokens * MINI_OUT for e in entries)
    assert math.isclose(budget.spent().usd, expected, rel_tol=1e-12)
    assert math.isclose(budget.reserved().usd, 0, abs_tol=1e-12)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_routed_rag_query_engine_is_refused_before_the_call(streaming: bool, bm25: Any,
                                                              model: CountingLocalLLM) -> None:
    pytest.importorskip("llama_index.core")
    from rag_routing.integrations.llamaindex import RoutedRAGQueryEngine

    engine = RoutedRAGQueryEngine(pipeline(bm25, model), streaming=streaming)
    budget = Budget(max_usd=0.000005)
    with ledger_scope(CostLedger(budget=budget)):
        with pytest.raises(BudgetExceededError):
            response = engine.query("What is the capital of Tesmark?")
            if streaming:
                list(response.response_gen)  # the refusal surfaces in the stream
    assert model.calls == [] and budget.spent().usd == 0 and budget.reserved().usd == 0
    with ledger_scope(CostLedger(budget=Budget(max_usd=1.0))) as ledger:
        response = engine.query("What is the capital of Tesmark?")
        answer = "".join(response.response_gen) if streaming else str(response)
    assert answer == ANSWER and len(generation(ledger)) == 1 and generation(ledger)[0].model == "gpt-4o-mini"
