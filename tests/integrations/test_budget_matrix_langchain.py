"""Budgets and metering on every LangChain path, with no handler attached.

Rows: LCEL invoke, batch, stream, ainvoke, astream (a routed chain ``prompt | RouterRunnable | parser``).
Columns: metered inside ``ledger_scope`` with nothing attached; refused before the call when the budget cannot
cover it (the fake model's call counter does not move); exact totals under 8 threads / 200 asyncio tasks.
The LangGraph row lives in ``test_budget_matrix_langgraph.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.errors import BudgetExceededError, UnknownPriceError  # noqa: E402
from rag_routing.integrations.langchain import LedgerCallbackHandler, RouterRunnable  # noqa: E402
from rag_routing.integrations.langchain.ambient import ambient_handler  # noqa: E402
from rag_routing.ledger import Budget, CostLedger, LedgerThreadPoolExecutor, ledger_scope  # noqa: E402
from tests.integrations.langchain_fakes import CountingChat, small_large_router  # noqa: E402

PATHS = ["invoke", "batch", "stream", "ainvoke", "astream"]
QUESTIONS = ["hello there, how are you?", "integrate x squared please"]
# gpt-4o-mini: $0.15 / $0.60 per 1M tokens; gpt-4o: $2.50 / $10.00
MINI_CALL = 1000 * 0.15e-6 + 500 * 0.60e-6
BIG_CALL = 1000 * 2.5e-6 + 500 * 10e-6


def routed_chain(small: CountingChat, large: CountingChat) -> Any:
    prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
    return prompt | RouterRunnable(small_large_router(), {"small": small, "large": large}) | StrOutputParser()


def run(path: str, chain: Any, questions: list[str]) -> list[str]:
    inputs = [{"question": q} for q in questions]
    if path == "invoke":
        return [chain.invoke(x) for x in inputs]
    if path == "batch":
        return chain.batch(inputs)
    if path == "stream":
        return ["".join(chain.stream(x)) for x in inputs]

    async def go() -> list[str]:
        if path == "ainvoke":
            return [await chain.ainvoke(x) for x in inputs]
        return ["".join([c async for c in chain.astream(x)]) for x in inputs]

    return asyncio.run(go())


def assert_no_open_reservations(budget: Budget | None) -> None:
    assert ambient_handler().open_runs == 0
    if budget is not None:
        assert budget.reserved().usd == 0 and budget.reserved().tokens == 0


@pytest.mark.parametrize("path", PATHS)
def test_metered_with_no_handler_attached(path: str) -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o")
    chain = routed_chain(small, large)
    with ledger_scope(budget=Budget(max_usd=1.0)) as ledger:
        answers = run(path, chain, QUESTIONS)
    assert answers == [small.reply, large.reply]
    assert (small.calls, large.calls) == (1, 1)
    generation = [e for e in ledger.entries if e.stage == "generation"]
    routing = [e for e in ledger.entries if e.stage == "routing"]
    assert sorted(e.model for e in generation) == ["gpt-4o", "gpt-4o-mini"]
    assert all((e.input_tokens, e.output_tokens, e.estimated, e.priced) == (1000, 500, False, True)
               for e in generation)
    # every generation entry carries the decision id of the route that chose its model
    assert {e.decision_id for e in generation} == {e.decision_id for e in routing} and None not in {
        e.decision_id for e in generation}
    assert ledger.totals()["cost_usd"] == pytest.approx(MINI_CALL + BIG_CALL)
    assert ledger.budget.spent().usd == pytest.approx(MINI_CALL + BIG_CALL)
    assert_no_open_reservations(ledger.budget)


@pytest.mark.parametrize("path", PATHS)
def test_refused_before_the_call_when_the_budget_cannot_cover_it(path: str) -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o", max_tokens=1000)
    chain = routed_chain(small, large)
    # the router's cost estimate for "large" ($0.006) fits in $0.008, so it routes there; the call's own
    # estimate (1000 output tokens at $10/M = $0.01) does not: refused before the provider runs
    with ledger_scope(budget=Budget(max_usd=0.008)) as ledger:
        with pytest.raises(BudgetExceededError, match="generation/gpt-4o"):
            run(path, chain, ["integrate x squared please"])
    assert large.calls == 0 and small.calls == 0  # the provider was never called
    assert [e.stage for e in ledger.entries] == ["routing"]
    assert ledger.budget.spent().usd == 0
    assert_no_open_reservations(ledger.budget)


@pytest.mark.parametrize("path", PATHS)
def test_spending_stops_once_the_budget_is_used(path: str) -> None:
    model = CountingChat(model="gpt-4o-mini", max_tokens=500)
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | model | StrOutputParser()
    # each call is estimated at ~$0.0003 (prompt + 500 output tokens) and costs $0.00045: 2 fit in $0.001
    with ledger_scope(budget=Budget(max_usd=0.001)) as ledger:
        run(path, chain, ["q1", "q2"])
        with pytest.raises(BudgetExceededError):
            run(path, chain, ["q3"])
    assert model.calls == 2 and len(ledger) == 2
    assert ledger.totals()["cost_usd"] == pytest.approx(2 * MINI_CALL)
    assert_no_open_reservations(ledger.budget)


def test_the_router_picks_what_the_remaining_budget_can_pay_for_and_says_so() -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o")
    chain = routed_chain(small, large)
    question = {"question": "integrate x squared please"}
    with ledger_scope(budget=Budget(max_usd=1.0)) as ledger:
        chain.invoke(question)
    assert large.calls == 1  # plenty of budget: the better model
    with ledger_scope(budget=Budget(max_usd=0.005)) as ledger:  # "large" costs ~$0.006: only "small" is affordable
        chain.invoke(question)
    (routing,) = [e for e in ledger.entries if e.stage == "routing"]
    assert (small.calls, large.calls) == (1, 1) and routing.metadata["choice"] == "small"
    node = chain.steps[1]
    with ledger_scope(budget=Budget(max_usd=0.005)):
        decision = node.route("integrate x squared please")
    assert decision.budget == pytest.approx(0.005) and "ambient budget has left" in decision.reason


def test_the_router_refuses_when_the_remaining_budget_pays_for_no_candidate() -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o")
    with ledger_scope(budget=Budget(max_usd=0.0001)), pytest.raises(BudgetExceededError, match="has left"):
        routed_chain(small, large).invoke({"question": "hello there"})
    assert (small.calls, large.calls) == (0, 0)


def test_lambda_and_budget_per_request_through_the_config() -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o")
    chain = routed_chain(small, large)
    question = {"question": "integrate x squared please"}
    chain.invoke(question)
    chain.invoke(question, config={"configurable": {"lam": 1000.0}})  # cost dominates: the small model
    chain.with_config(configurable={"budget": 0.001}).invoke(question)  # only "small" fits B
    assert (small.calls, large.calls) == (2, 1)
    assert {"lam", "budget"} <= {spec.id for spec in chain.config_specs}


def test_unknown_price_is_refused_before_the_call_unless_zero_is_allowed() -> None:
    model = CountingChat(model="gemini-9-ultra-unlisted")
    with ledger_scope(), pytest.raises(UnknownPriceError, match="gemini-9-ultra-unlisted"):
        model.invoke("hi")
    assert model.calls == 0
    with ledger_scope(allow_unpriced=True) as ledger:
        model.invoke("hi")
    (entry,) = ledger.entries
    assert model.calls == 1 and entry.cost_usd == 0 and not entry.priced


def test_a_hand_attached_handler_is_not_counted_twice_and_its_pricing_wins() -> None:
    override = {"gpt-4o": Pricing(input_per_mtok=1.0, output_per_mtok=2.0)}
    model = CountingChat(model="gpt-4o")
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model.with_config(
        callbacks=[LedgerCallbackHandler(pricing=override)])
    with ledger_scope(budget=Budget(max_usd=1.0)) as ledger:
        chain.invoke({"q": "hi"})  # attached deep inside the chain: it takes the run over from the ambient one
        model.invoke("hi", config={"callbacks": [LedgerCallbackHandler(pricing=override)]})
        # a model only the hand-attached handler can price (attached at the top of the run)
        unlisted = CountingChat(model="my-finetune")
        unlisted.invoke("hi", config={"callbacks": [LedgerCallbackHandler(
            pricing={"my-finetune": Pricing(input_per_mtok=1.0, output_per_mtok=2.0)})]})
    assert len(ledger) == 3 and model.calls == 2 and unlisted.calls == 1
    assert ledger.totals()["cost_usd"] == pytest.approx(3 * (1000 * 1e-6 + 500 * 2e-6))
    assert_no_open_reservations(ledger.budget)


def test_errors_and_abandoned_streams_release_the_reservation() -> None:
    failing = CountingChat(model="gpt-4o", fail=True)
    with ledger_scope(budget=Budget(max_usd=1.0)) as ledger:
        with pytest.raises(RuntimeError, match="provider error"):
            failing.invoke("hi")
        assert_no_open_reservations(ledger.budget)
        streaming = CountingChat(model="gpt-4o", reply="one two three four")

        async def abandon() -> None:
            stream = streaming.astream("hi")
            await stream.__anext__()
            await stream.aclose()

        asyncio.run(abandon())
        assert_no_open_reservations(ledger.budget)
        iterator = streaming.stream("hi")  # a sync stream the consumer drops
        next(iterator)
        iterator.close()
        assert_no_open_reservations(ledger.budget)

        async def cancel() -> None:  # LangChain's agenerate sends no on_llm_error when its task is cancelled
            task = asyncio.ensure_future(streaming.ainvoke("hi"))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel())
        assert_no_open_reservations(ledger.budget)
    assert len(ledger) == 0 and ledger.budget.spent().usd == 0


def _exact_totals(ledger: CostLedger, model: CountingChat, calls: int) -> None:
    assert model.calls == calls and len(ledger) == calls
    totals = ledger.totals()
    assert (totals["input_tokens"], totals["output_tokens"]) == (calls * 1000, calls * 500)
    assert math.isclose(totals["cost_usd"], calls * MINI_CALL, rel_tol=1e-12)


def test_exact_totals_under_8_threads() -> None:
    model = CountingChat(model="gpt-4o-mini")
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    with ledger_scope(budget=Budget(max_usd=10.0)) as ledger:
        with LedgerThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: chain.invoke({"q": f"question {i}"}), range(160)))
        chain.batch([{"q": f"b{i}"} for i in range(40)], config={"max_concurrency": 8})
    _exact_totals(ledger, model, 200)
    assert math.isclose(ledger.budget.spent().usd, 200 * MINI_CALL, rel_tol=1e-9)
    assert_no_open_reservations(ledger.budget)


def test_exact_totals_under_200_asyncio_tasks() -> None:
    model = CountingChat(model="gpt-4o-mini")
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model

    async def go() -> None:
        await asyncio.gather(*(chain.ainvoke({"q": f"question {i}"}) for i in range(100)),
                             *(_drain(chain.astream({"q": f"s{i}"})) for i in range(100)))

    with ledger_scope(budget=Budget(max_usd=10.0)) as ledger:
        asyncio.run(go())
    _exact_totals(ledger, model, 200)
    assert_no_open_reservations(ledger.budget)


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize("mode", ["threads", "tasks"])
def test_a_budget_shared_by_concurrent_calls_is_never_exceeded(mode: str) -> None:
    # estimate >= actual here (the provider answers 100 of the 500 tokens allowed), so the budget is exact
    model = CountingChat(model="gpt-4o-mini", input_tokens=1, output_tokens=100, max_tokens=500)
    limit = 0.003
    refused: list[BaseException] = []

    def call(i: int, fn: Callable[..., Any] = model.invoke) -> None:
        try:
            fn(f"question {i}")
        except BudgetExceededError as e:
            refused.append(e)

    with ledger_scope(budget=Budget(max_usd=limit)) as ledger:
        if mode == "threads":
            with LedgerThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(call, range(200)))
        else:
            async def acall(i: int) -> None:
                try:
                    await model.ainvoke(f"question {i}")
                except BudgetExceededError as e:
                    refused.append(e)

            async def go() -> None:
                await asyncio.gather(*(acall(i) for i in range(200)))

            asyncio.run(go())
    per_call = 1 * 0.15e-6 + 100 * 0.60e-6
    assert model.calls + len(refused) == 200 and model.calls >= 1 and refused
    assert len(ledger) == model.calls
    assert math.isclose(ledger.totals()["cost_usd"], model.calls * per_call, rel_tol=1e-9)
    assert ledger.budget.spent().usd <= limit
    assert_no_open_reservations(ledger.budget)


class CountingEmbeddings:
    """A paid embeddings API stand-in (LangChain's deterministic fake) that counts its calls."""

    def __new__(cls) -> Any:
        from langchain_core.embeddings import DeterministicFakeEmbedding

        class Counting(DeterministicFakeEmbedding):
            calls: int = 0

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                self.calls += 1
                return super().embed_documents(texts)

            def embed_query(self, text: str) -> list[float]:
                self.calls += 1
                return super().embed_query(text)

        return Counting(size=16)


def test_embeddings_through_a_vector_store_are_metered_and_refused_before_the_call() -> None:
    from langchain_core.vectorstores import InMemoryVectorStore

    from rag_routing.integrations.langchain import MeteredEmbeddings

    inner = CountingEmbeddings()
    store = InMemoryVectorStore(MeteredEmbeddings(inner, model="text-embedding-3-small"))
    with ledger_scope(budget=Budget(max_usd=1.0)) as ledger:
        store.add_texts(["Paris is the capital of France.", "Lima is the capital of Peru."])
        hits = asyncio.run(store.asimilarity_search("capital of Peru", k=1))
    assert hits and inner.calls == 2
    assert [e.stage for e in ledger.entries] == ["embedding", "embedding"]
    assert ledger.entries[0].cost_usd == pytest.approx(ledger.entries[0].input_tokens * 0.02e-6)
    with ledger_scope(budget=Budget(max_usd=1e-9)), pytest.raises(BudgetExceededError):
        store.similarity_search("capital of France", k=1)
    with ledger_scope(), pytest.raises(UnknownPriceError):
        InMemoryVectorStore(MeteredEmbeddings(inner, model="my-embedder")).add_texts(["x"])
    assert inner.calls == 2  # neither refused call reached the provider


def test_stage_runnables_take_lambda_and_budget_per_request() -> None:
    from rag_routing.integrations.langchain import StageRunnable
    from rag_routing.stages import StageRouter

    stage = StageRouter({"small": lambda s: s.evolve(answer="S"), "large": lambda s: s.evolve(answer="L")},
                        router=small_large_router(), name="generator")
    node = StageRunnable(stage)
    question = "integrate x squared please"
    assert node.invoke(question).answer == "L"
    assert node.invoke(question, config={"configurable": {"lam": 1000.0}}).answer == "S"
    assert node.with_config(configurable={"budget": 0.001}).invoke(question).answer == "S"
    with ledger_scope(budget=Budget(max_usd=0.005)):  # what the ambient budget has left
        assert node.invoke(question).answer == "S"
    assert {"lam", "budget"} <= {spec.id for spec in node.config_specs}


def test_a_generator_stage_over_a_langchain_chat_model_is_metered_once_and_refused_before_the_call() -> None:
    from rag_routing.integrations.langchain import ChatModelLLM, StageRunnable
    from rag_routing.stages import GeneratorRouter, RAGState

    model = CountingChat(model="gpt-4o")
    generator = GeneratorRouter({"m": ChatModelLLM(model)})

    def state() -> RAGState:
        return RAGState(query="q", messages=[{"role": "user", "content": "Answer: q"}])

    with ledger_scope(budget=Budget(max_usd=1.0)) as ledger:
        generator.invoke(state())
        StageRunnable(generator).invoke(state())
    assert model.calls == 2 and [e.model for e in ledger.entries if e.stage == "generation"] == ["gpt-4o"] * 2
    with ledger_scope(budget=Budget(max_usd=0.004)) as ledger, pytest.raises(BudgetExceededError):
        generator.invoke(state())  # estimate: the prompt + 512 output tokens at $10/M > $0.004
    assert model.calls == 2 and ledger.budget.reserved().usd == 0


def test_a_refusal_reaches_the_caller_without_a_duplicate_warning(caplog: pytest.LogCaptureFixture) -> None:
    model = CountingChat(model="gpt-4o")
    with ledger_scope(budget=Budget(max_usd=0.0001)), pytest.raises(BudgetExceededError):
        model.invoke("hi")
    assert not [r for r in caplog.records if "BudgetExceededError" in r.getMessage()]
    with ledger_scope(), pytest.raises(RuntimeError, match="provider error"):
        CountingChat(model="gpt-4o", fail=True).invoke("hi")  # other errors are left to LangChain's logging


def test_a_router_node_given_a_ledger_meters_and_budgets_into_it() -> None:
    small, large = CountingChat(model="gpt-4o-mini"), CountingChat(model="gpt-4o")
    own = CostLedger(budget=Budget(max_usd=0.005))
    node = RouterRunnable(small_large_router(), {"small": small, "large": large}, ledger=own)
    node.invoke("integrate x squared please")  # no ledger_scope: the node's ledger, whose budget fits "small"
    asyncio.run(node.ainvoke("hello there"))
    assert (small.calls, large.calls) == (2, 0)
    generation = [e for e in own.entries if e.stage == "generation"]
    assert len(generation) == 2 and all(e.decision_id for e in generation)
    assert own.budget.spent().usd == pytest.approx(2 * MINI_CALL)
