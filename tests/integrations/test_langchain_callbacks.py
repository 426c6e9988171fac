"""LedgerCallbackHandler: chat model usage priced into the ambient (or an explicit) cost ledger."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import CallbackManagerForLLMRun  # noqa: E402
from langchain_core.language_models import BaseChatModel, FakeListChatModel, GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, ChatResult  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.errors import UnknownPriceError  # noqa: E402
from rag_routing.integrations.langchain import LedgerCallbackHandler  # noqa: E402
from rag_routing.ledger import CostLedger, ledger_scope  # noqa: E402

USAGE = {"input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500}


def chat(model: str = "gpt-4o-mini", text: str = "Paris", n: int = 10, **metadata: Any) -> GenericFakeChatModel:
    message = AIMessage(text, usage_metadata=USAGE, response_metadata={"model_name": model, **metadata})
    return GenericFakeChatModel(messages=iter([message] * n))


class OldProvider(BaseChatModel):
    """Reports usage the pre-usage_metadata way: ``llm_output["token_usage"]`` and ``model_name``; slow."""

    delay: float = 0.0

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        time.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=AIMessage("ok"))],
                          llm_output={"token_usage": {"prompt_tokens": 200, "completion_tokens": 100},
                                      "model_name": "gpt-4o"})

    @property
    def _llm_type(self) -> str:
        return "old-provider"


def test_usage_metadata_is_priced_into_the_ambient_ledger() -> None:
    with ledger_scope() as ledger:
        chat().invoke("Capital of France?", config={"callbacks": [LedgerCallbackHandler()]})
    (entry,) = ledger.entries
    assert (entry.stage, entry.model) == ("generation", "gpt-4o-mini")
    assert (entry.input_tokens, entry.output_tokens) == (1000, 500)
    assert entry.cost_usd == pytest.approx(1000 * 0.15 / 1e6 + 500 * 0.6 / 1e6)
    assert not entry.estimated and entry.priced and entry.metadata["source"] == "langchain"


async def test_async_calls_see_the_ambient_ledger() -> None:
    handler = LedgerCallbackHandler()
    with ledger_scope() as ledger:
        await chat().ainvoke("hi", config={"callbacks": [handler]})
        await asyncio.gather(*(chat().ainvoke(f"q{i}", config={"callbacks": [handler]}) for i in range(5)))
        [c async for c in chat().astream("hi", config={"callbacks": [LedgerCallbackHandler(default_model="gpt-4o")]})]
    assert len(ledger) == 7 and handler.open_runs == 0
    assert ledger.entries[-1].model == "gpt-4o" and ledger.entries[-1].estimated  # streamed: counted tokens


async def test_a_handler_that_runs_in_langchains_executor_still_finds_the_ledger() -> None:
    class Executor(LedgerCallbackHandler):
        run_inline = False  # LangChain runs sync handlers of async calls in a thread pool

    with ledger_scope() as ledger:
        await chat().ainvoke("hi", config={"callbacks": [Executor()]})
    assert len(ledger) == 1


def test_older_providers_report_llm_output_token_usage_and_latency_is_measured() -> None:
    with ledger_scope() as ledger:
        OldProvider(delay=0.05).invoke("hi", config={"callbacks": [LedgerCallbackHandler()]})
    (entry,) = ledger.entries
    assert (entry.model, entry.input_tokens, entry.output_tokens, entry.estimated) == ("gpt-4o", 200, 100, False)
    assert entry.seconds >= 0.05


def test_unknown_prices_raise_unless_overridden_or_allowed() -> None:
    with ledger_scope() as ledger:
        with pytest.raises(UnknownPriceError, match="my-llm"):
            chat("my-llm").invoke("hi", config={"callbacks": [LedgerCallbackHandler()]})
        price = Pricing(input_per_mtok=2.0, output_per_mtok=4.0)
        chat("my-llm").invoke("hi", config={"callbacks": [LedgerCallbackHandler(pricing={"my-llm": price})]})
        chat("my-llm").invoke("hi", config={"callbacks": [LedgerCallbackHandler(allow_unpriced=True)]})
    priced, unpriced = ledger.entries
    assert priced.cost_usd == pytest.approx(1000 * 2 / 1e6 + 500 * 4 / 1e6) and priced.priced
    assert unpriced.cost_usd == 0.0 and not unpriced.priced
    with pytest.raises(UnknownPriceError, match="which model ran"):  # no name anywhere: never a silent $0
        with ledger_scope():
            FakeListChatModel(responses=["x"]).invoke("hi", config={"callbacks": [LedgerCallbackHandler()]})


def test_without_usage_tokens_are_counted_and_marked_estimated() -> None:
    handler = LedgerCallbackHandler(default_model="gpt-4o")
    with ledger_scope() as ledger:
        FakeListChatModel(responses=["The answer is Paris."]).invoke("What is the capital of France?",
                                                                      config={"callbacks": [handler]})
    (entry,) = ledger.entries
    assert entry.estimated and entry.input_tokens > 5 and entry.output_tokens == 5 and entry.cost_usd > 0


def test_stage_comes_from_metadata_or_tags_and_rag_fields_are_kept() -> None:
    handler = LedgerCallbackHandler(stage="llm")
    with ledger_scope() as ledger:
        chat().invoke("a", config={"callbacks": [handler]})
        chat().invoke("b", config={"callbacks": [handler], "metadata": {"ledger_stage": "judge", "rag_stage": "gen",
                                                                         "rag_decision_id": "d-1"}})
        chat().invoke("c", config={"callbacks": [handler], "tags": ["ledger_stage:rerank"]})
    assert [e.stage for e in ledger.entries] == ["llm", "judge", "rerank"]
    assert ledger.entries[1].decision_id == "d-1" and ledger.entries[1].metadata["rag_stage"] == "gen"


def test_calls_the_model_recorded_itself_are_not_counted_twice() -> None:
    with ledger_scope() as ledger:
        chat(ledger_entry_id="abc:1").invoke("hi", config={"callbacks": [LedgerCallbackHandler()]})
    assert len(ledger) == 0


def test_explicit_ledger_and_no_ledger() -> None:
    mine = CostLedger()
    with ledger_scope() as ambient:
        chat().invoke("hi", config={"callbacks": [LedgerCallbackHandler(mine)]})
    # the hand-attached handler records into its ledger; the scope's ledger still meters the run (once)
    assert len(mine) == 1 and len(ambient) == 1
    handler = LedgerCallbackHandler()
    chat().invoke("hi", config={"callbacks": [handler]})  # no ledger anywhere: nothing to do, no error
    assert handler.open_runs == 0


def test_concurrent_batch_keeps_one_start_time_per_run() -> None:
    handler = LedgerCallbackHandler()
    model = OldProvider(delay=0.02)
    with ledger_scope() as ledger:
        model.batch([f"q{i}" for i in range(8)], config={"callbacks": [handler], "max_concurrency": 8})
        RunnableLambda(lambda x: model.invoke(x)).batch(["a", "b"], config={"callbacks": [handler]})
    assert len(ledger) == 10 and handler.open_runs == 0
    assert all(0.02 <= e.seconds < 1.0 for e in ledger.entries)
