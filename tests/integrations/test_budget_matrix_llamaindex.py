"""Budgets and metering on every LlamaIndex path, with no handler attached and no ``instrument()`` call.

Rows: a LlamaIndex query engine over a real ``VectorStoreIndex`` of the bundled demo corpus — ``query``,
``aquery`` and a streaming ``query`` — and the same through a ``RoutingSelector`` router engine (decision ids).
Columns: metered inside ``ledger_scope`` with nothing attached; refused before the call when the budget cannot
cover it (the fake LLM's provider counter does not move); exact totals under 8 threads / 200 asyncio tasks.
The fake LLM reports its usage the OpenAI way and is priced from the price table (``gpt-4o-mini``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document as LIDocument  # noqa: E402
from llama_index.core import VectorStoreIndex  # noqa: E402
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.llms import CustomLLM  # noqa: E402
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402

import rag_routing  # noqa: E402
from rag_routing.errors import BudgetExceededError, UnknownPriceError  # noqa: E402
from rag_routing.integrations.llamaindex.budget_gate import SPANS  # noqa: E402
from rag_routing.ledger import Budget, CostLedger, LedgerThreadPoolExecutor, ledger_scope  # noqa: E402
from rag_routing.ledger.tokens import count_tokens  # noqa: E402

PATHS = ["query", "aquery", "stream"]
ANSWER_TOKENS = 6
MINI_IN, MINI_OUT = 0.15e-6, 0.60e-6  # gpt-4o-mini, $ per token
CORPUS = Path(rag_routing.__file__).parent / "data" / "demo_corpus.jsonl"


class CountingLLM(CustomLLM):
    """Answers with ``ANSWER_TOKENS`` words, reports OpenAI usage, counts how often the provider really ran."""

    model: str = "gpt-4o-mini"
    max_tokens: int = 64
    calls: list[int] = []  # noqa: RUF012 - a mutable counter shared by copies the engine may make

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model, num_output=self.max_tokens)

    def _response(self, prompt: str, text: str, delta: str | None = None) -> CompletionResponse:
        usage = {"prompt_tokens": count_tokens(prompt), "completion_tokens": len(text.split())}
        return CompletionResponse(text=text, delta=delta, raw={"model": self.model, "usage": usage})

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls.append(1)
        return self._response(prompt, " ".join(["word"] * ANSWER_TOKENS))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Iterator[CompletionResponse]:
        self.calls.append(1)

        def gen() -> Iterator[CompletionResponse]:
            text = ""
            for i in range(ANSWER_TOKENS):
                delta = ("" if i == 0 else " ") + "word"
                text += delta
                yield self._response(prompt, text, delta)

        return gen()


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    docs = [LIDocument(text=r["text"], id_=r["_id"], metadata={"title": r.get("title", "")}) for r in rows]
    return VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=16))


def engine(index: VectorStoreIndex, llm: CountingLLM, streaming: bool = False) -> Any:
    return index.as_query_engine(llm=llm, similarity_top_k=2, streaming=streaming)


def ask(path: str, index: VectorStoreIndex, llm: CountingLLM, question: str) -> str:
    if path == "query":
        return str(engine(index, llm).query(question))
    if path == "stream":
        return "".join(engine(index, llm, streaming=True).query(question).response_gen)

    async def go() -> str:
        return str(await engine(index, llm).aquery(question))

    return asyncio.run(go())


def generation(ledger: CostLedger) -> list[Any]:
    return [e for e in ledger.entries if e.stage == "generation"]


def expected_cost(entry: Any) -> float:
    return entry.input_tokens * MINI_IN + entry.output_tokens * MINI_OUT


@pytest.mark.parametrize("path", PATHS)
def test_metered_with_no_handler_attached(path: str, index: VectorStoreIndex) -> None:
    llm = CountingLLM(calls=[])
    with ledger_scope(CostLedger(allow_unpriced=True)) as ledger:  # MockEmbedding has no price: $0 allowed
        answer = ask(path, index, llm, "What is the capital of Tesmark?")
    (entry,) = generation(ledger)
    assert answer.split() == ["word"] * ANSWER_TOKENS and len(llm.calls) == 1
    assert entry.model == "gpt-4o-mini" and entry.output_tokens == ANSWER_TOKENS and entry.input_tokens > 20
    assert not entry.estimated and entry.priced and math.isclose(entry.cost_usd, expected_cost(entry))
    assert any(e.stage == "embedding" for e in ledger.entries)  # the query's embedding is metered too


@pytest.mark.parametrize("path", PATHS)
def test_refused_before_the_call_when_the_budget_cannot_cover_it(path: str, index: VectorStoreIndex) -> None:
    llm = CountingLLM(calls=[])  # the estimate: ~80 prompt tokens + max_tokens (64) of output, ~$0.00005
    budget = Budget(max_usd=0.00001)
    with ledger_scope(CostLedger(budget=budget, allow_unpriced=True)) as ledger:
        with pytest.raises(BudgetExceededError, match="generation/gpt-4o-mini"):
            ask(path, index, llm, "What is the capital of Tesmark?")
    assert llm.calls == [] and generation(ledger) == []
    assert math.isclose(budget.reserved().usd, 0, abs_tol=1e-12) and budget.spent().usd == 0


def test_an_unknown_price_is_refused_before_the_call(index: VectorStoreIndex) -> None:
    llm = CountingLLM(calls=[], model="gemini-9-ultra")
    with ledger_scope(CostLedger(allow_unpriced=False)):
        with pytest.raises(UnknownPriceError, match="gemini-9-ultra"):
            engine(index, llm).query("What is the capital of Tesmark?")
    assert llm.calls == []


@pytest.mark.parametrize("path", PATHS)
def test_exact_totals_under_8_threads(path: str, index: VectorStoreIndex) -> None:
    llm = CountingLLM(calls=[])
    budget = Budget(max_usd=1.0)
    questions = [f"What is the capital of Tesmark? ({i})" for i in range(24)]
    with ledger_scope(CostLedger(budget=budget, allow_unpriced=True)) as ledger:
        with LedgerThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda q: ask(path, index, llm, q), questions))
    entries = generation(ledger)
    assert len(answers) == len(entries) == len(llm.calls) == 24
    assert math.isclose(sum(expected_cost(e) for e in entries), ledger.totals()["cost_usd"], rel_tol=1e-12)
    assert math.isclose(budget.spent().usd, ledger.totals()["cost_usd"], rel_tol=1e-12)
    assert math.isclose(budget.reserved().usd, 0, abs_tol=1e-12) and SPANS.reservations == {}


async def test_exact_totals_under_200_asyncio_tasks(index: VectorStoreIndex) -> None:
    llm = CountingLLM(calls=[])
    budget = Budget(max_usd=1.0)
    with ledger_scope(CostLedger(budget=budget, allow_unpriced=True)) as ledger:
        answers = await asyncio.gather(*(engine(index, llm).aquery(f"Capital of Tesmark? ({i})") for i in range(200)))
    entries = generation(ledger)
    assert len(answers) == len(entries) == len(llm.calls) == 200
    assert math.isclose(budget.spent().usd, sum(expected_cost(e) for e in entries), rel_tol=1e-12)
    assert math.isclose(budget.reserved().usd, 0, abs_tol=1e-12)


async def test_a_tight_budget_under_200_tasks_never_overspends(index: VectorStoreIndex) -> None:
    llm = CountingLLM(calls=[])
    budget = Budget(max_usd=0.001)  # each call reserves ~$0.00005: about 20 fit at a time, not 200

    async def one(i: int) -> bool:
        try:
            await engine(index, llm).aquery(f"Capital of Tesmark? ({i})")
            return True
        except BudgetExceededError:
            return False

    with ledger_scope(CostLedger(budget=budget, allow_unpriced=True)) as ledger:
        admitted = await asyncio.gather(*(one(i) for i in range(200)))
    assert 0 < sum(admitted) < 200 and sum(admitted) == len(llm.calls) == len(generation(ledger))
    assert budget.spent().usd <= 0.001 and math.isclose(budget.reserved().usd, 0, abs_tol=1e-12)


def test_an_abandoned_stream_commits_what_streamed_and_releases_the_rest(index: VectorStoreIndex) -> None:
    llm = CountingLLM(calls=[])
    budget = Budget(max_usd=1.0)
    with ledger_scope(CostLedger(budget=budget, allow_unpriced=True)) as ledger:
        tokens = engine(index, llm, streaming=True).query("What is the capital of Tesmark?").response_gen
        assert next(tokens) == "word"
        next(tokens)
        tokens.close()
    (entry,) = generation(ledger)
    assert entry.output_tokens == 2 and entry.metadata["finish_reason"] == "abandoned"
    assert math.isclose(budget.reserved().usd, 0, abs_tol=1e-12)
    assert math.isclose(budget.spent().usd, ledger.totals()["cost_usd"])


def test_explicit_instrument_does_not_double_count(index: VectorStoreIndex) -> None:
    from rag_routing.integrations.llamaindex import instrument, uninstrument

    llm = CountingLLM(calls=[])
    instrument(allow_unpriced=True)
    try:
        with ledger_scope() as ledger:
            engine(index, llm).query("What is the capital of Tesmark?")
    finally:
        uninstrument()
    assert len(generation(ledger)) == 1 and len(llm.calls) == 1


def test_router_query_engine_calls_carry_the_decision_id(index: VectorStoreIndex, toy_dataset: Any) -> None:
    from llama_index.core.tools import QueryEngineTool

    from rag_routing.integrations.llamaindex import router_query_engine
    from rag_routing.routers.similarity import KNNRouter

    router = KNNRouter(k=1, featurizer="tfidf").fit(toy_dataset)
    small, large = CountingLLM(calls=[]), CountingLLM(calls=[])
    tools = [QueryEngineTool.from_defaults(engine(index, llm), name=name, description=name)
             for name, llm in zip(router.candidates_, (small, large))]
    routed = router_query_engine(router, tools)
    with ledger_scope(CostLedger(allow_unpriced=True)) as ledger:
        routed.query("What is the capital of Tesmark?")
    (routing,) = [e for e in ledger.entries if e.stage == "routing"]
    (call,) = generation(ledger)
    assert routing.decision_id is not None and call.decision_id == routing.decision_id
    assert len(small.calls) + len(large.calls) == 1


def test_llms_that_record_themselves_carry_the_decision_id_too(index: VectorStoreIndex, toy_dataset: Any,
                                                               tmp_path: Any) -> None:
    pytest.importorskip("torch")
    from llama_index.core.tools import QueryEngineTool

    from rag_routing.integrations.llamaindex import LocalLlamaIndexLLM, router_query_engine
    from rag_routing.llms.scripted import scripted_model
    from rag_routing.routers.similarity import KNNRouter

    local = LocalLlamaIndexLLM(model_path=scripted_model("Velmora", folder=str(tmp_path / "m")), max_tokens=8)
    router = KNNRouter(k=1, featurizer="tfidf").fit(toy_dataset)
    tools = [QueryEngineTool.from_defaults(engine(index, llm), name=name, description=name)
             for name, llm in zip(router.candidates_, (local, local))]
    with ledger_scope(CostLedger(allow_unpriced=True)) as ledger:
        answer = router_query_engine(router, tools).query("What is the capital of Tesmark?")
    (routing,) = [e for e in ledger.entries if e.stage == "routing"]
    (call,) = generation(ledger)
    assert str(answer).strip() == "Velmora" and call.metadata.get("local") is True
    assert call.decision_id == routing.decision_id is not None
