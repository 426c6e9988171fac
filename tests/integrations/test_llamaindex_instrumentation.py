"""LedgerEventHandler / instrument(): LlamaIndex LLM and embedding calls recorded in the cost ledger."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import ChatMessage, CompletionResponse  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.llms import CustomLLM, LLMMetadata, MockLLM  # noqa: E402
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402

from rag_routing.candidates import Pricing  # noqa: E402
from rag_routing.errors import UnknownPriceError  # noqa: E402
from rag_routing.integrations.llamaindex import LedgerEventHandler, instrument, uninstrument  # noqa: E402
from rag_routing.integrations.llamaindex.budget_gate import BudgetSpanHandler  # noqa: E402
from rag_routing.ledger import CostLedger, ledger_scope  # noqa: E402

PRICE = Pricing(input_per_mtok=1.0, output_per_mtok=2.0)


@pytest.fixture
def handler() -> Any:
    handler = instrument(pricing={"MockLLM": PRICE, "MockEmbedding": Pricing(input_per_mtok=0.02, output_per_mtok=0)})
    yield handler
    uninstrument()


class ReportingLLM(CustomLLM):
    """Reports usage in ``raw`` the OpenAI way, under a priced model name."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="Paris", raw={"model": "gpt-4o-mini-2024-07-18",
                                                     "usage": {"prompt_tokens": 1000, "completion_tokens": 500}})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        yield self.complete(prompt)


async def test_mock_llm_completion_chat_and_streams_are_recorded_once(handler: LedgerEventHandler) -> None:
    llm = MockLLM(max_tokens=3)
    with ledger_scope() as ledger:
        llm.complete("Who wrote Hamlet?")
        llm.chat([ChatMessage(role="user", content="Who wrote Hamlet?")])  # chat calls complete inside
        "".join(r.delta for r in llm.stream_complete("Who?"))
        await llm.acomplete("Who?")
        [r async for r in await llm.astream_chat([ChatMessage(role="user", content="Who?")])]
    entries = ledger.entries
    assert len(entries) == 5 and {e.stage for e in entries} == {"generation"}
    assert all(e.model == "MockLLM" and e.estimated and e.metadata["source"] == "llama_index" for e in entries)
    assert [e.output_tokens for e in entries[:2]] == [3, 3]
    assert entries[0].cost_usd == pytest.approx((entries[0].input_tokens * 1 + 3 * 2) / 1e6)
    assert all(e.seconds >= 0 for e in entries) and handler.errors == []


def test_reported_usage_is_used_and_priced_with_the_table(handler: LedgerEventHandler) -> None:
    with ledger_scope() as ledger:
        ReportingLLM().complete("Capital of France?")
    (entry,) = ledger.entries
    assert (entry.model, entry.input_tokens, entry.output_tokens, entry.estimated) == \
        ("gpt-4o-mini-2024-07-18", 1000, 500, False)
    assert entry.cost_usd == pytest.approx(0.00045)


async def test_mock_embedding_usage_is_recorded(handler: LedgerEventHandler) -> None:
    embed = MockEmbedding(embed_dim=8)
    with ledger_scope() as ledger:
        embed.get_query_embedding("what is the capital of peru")
        embed.get_text_embedding_batch(["Lima is the capital of Peru.", "Quito is in Ecuador."])
        await embed.aget_query_embedding("hello")
    entries = ledger.entries
    assert entries and {e.stage for e in entries} == {"embedding"} and {e.model for e in entries} == {"MockEmbedding"}
    assert entries[0].input_tokens == 6 and entries[0].output_tokens == 0 and entries[0].estimated
    assert sum(e.metadata["chunks"] for e in entries) == 4


def test_unknown_prices_are_refused_before_the_call_unless_opted_into_zero() -> None:
    instrument()  # no pricing for MockLLM
    try:
        with ledger_scope() as ledger:
            with pytest.raises(UnknownPriceError, match="MockLLM"):
                MockLLM(max_tokens=2).complete("hi")  # the budget gate refuses before the provider runs
        assert len(ledger) == 0
        quiet = instrument(allow_unpriced=True)
        with ledger_scope() as ledger:
            MockLLM(max_tokens=2).complete("hi")
    finally:
        uninstrument()
    (entry,) = ledger.entries
    assert not entry.priced and entry.cost_usd == 0.0 and quiet.errors == []


def test_a_handler_without_the_gate_flags_logs_and_raises_unknown_prices(caplog: pytest.LogCaptureFixture) -> None:
    root = get_dispatcher()
    saved = list(root.event_handlers), list(root.span_handlers)
    handler = LedgerEventHandler()  # attached by hand: recording only, no budget gate
    root.event_handlers = [h for h in saved[0] if not isinstance(h, LedgerEventHandler)] + [handler]
    root.span_handlers = [h for h in saved[1] if not isinstance(h, BudgetSpanHandler)]
    try:
        with ledger_scope() as ledger:
            MockLLM(max_tokens=2).complete("hi")  # LlamaIndex swallows handler errors: the call goes on
    finally:
        root.event_handlers, root.span_handlers = saved
    (entry,) = ledger.entries
    assert not entry.priced and entry.cost_usd == 0.0 and ledger.totals()["unpriced_calls"] == 1
    assert "no price known for model 'MockLLM'" in caplog.text
    with pytest.raises(UnknownPriceError, match="MockLLM"):
        handler.raise_errors()
    handler.raise_errors()  # forgotten once raised


def test_instrument_is_idempotent_and_explicit_ledgers_win() -> None:
    mine = CostLedger()
    try:
        first = instrument(pricing={"MockLLM": PRICE})
        assert instrument(pricing={"MockLLM": PRICE}) is first
        assert sum(isinstance(h, LedgerEventHandler) for h in get_dispatcher().event_handlers) == 1
        second = instrument(mine, pricing={"MockLLM": PRICE})
        assert second is not first and first not in get_dispatcher().event_handlers
        with ledger_scope() as ambient:
            MockLLM(max_tokens=1).complete("hi")
        assert len(mine) == 1 and len(ambient) == 0
    finally:
        assert uninstrument()
    # only the ambient default (ledger and prices from the scope) can be left
    assert all(h.ledger is None and not h.pricing for h in get_dispatcher().event_handlers
               if isinstance(h, LedgerEventHandler))
    MockLLM(max_tokens=1).complete("no handler, no ledger: nothing happens")


async def test_concurrent_calls_pair_their_own_start_and_end(handler: LedgerEventHandler) -> None:
    llm = MockLLM(max_tokens=2)
    with ledger_scope() as ledger:
        await asyncio.gather(*(llm.acomplete(f"question {i}") for i in range(6)))
    assert len(ledger) == 6 and handler._open == {}


def test_a_local_llm_that_records_itself_is_not_counted_twice(handler: LedgerEventHandler, tmp_path: Any) -> None:
    pytest.importorskip("torch")
    from rag_routing.integrations.llamaindex import LocalLlamaIndexLLM
    from rag_routing.llms.scripted import scripted_model

    llm = LocalLlamaIndexLLM(model_path=scripted_model("Lima", folder=str(tmp_path / "m")), max_tokens=8)
    with ledger_scope() as ledger:
        llm.complete("Capital of Peru?")
        llm.chat([ChatMessage(role="user", content="Capital of Peru?")])
        "".join(r.delta or "" for r in llm.stream_chat([ChatMessage(role="user", content="Capital of Peru?")]))
    assert len(ledger) == 3 and all(e.model == llm.model_name for e in ledger.entries)
