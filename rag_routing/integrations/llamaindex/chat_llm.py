"""`LlamaIndexChatLLM`: a LlamaIndex LLM as an LLM of the generator stage (``GeneratorRouter``).

The generator stage's options call ``llm.generate(messages, max_new_tokens=..., temperature=...)`` with
``{"role", "content"}`` messages. ``LlamaIndexChatLLM`` sends them to any LlamaIndex ``LLM`` with ``chat`` /
``achat`` (so LlamaIndex's instrumentation sees the call), or, inside a stream (``RoutedRAG.stream``, a
streaming :class:`~rag_routing.integrations.llamaindex.query_engine.RoutedRAGQueryEngine`; see
:mod:`rag_routing.stages.streaming`), with ``stream_chat``, handing each token to the stream.

Cost and budget: building one installs the LlamaIndex ledger hooks
(:func:`~rag_routing.integrations.llamaindex.budget_gate.install`), so each call reserves its estimate on the
ambient budget before the provider runs (``BudgetExceededError`` / ``UnknownPriceError`` before the call) and is
recorded once — priced with ``pricing`` (or the price table), with the stage's decision id. The LLM's own
recording (``LocalLlamaIndexLLM``) is not repeated.

Example:
    >>> from llama_index.core.llms import MockLLM
    >>> from rag_routing.candidates import Pricing
    >>> from rag_routing.ledger import ledger_scope
    >>> from rag_routing.stages import GeneratorRouter
    >>> llm = LlamaIndexChatLLM(MockLLM(max_tokens=2), pricing=Pricing(input_per_mtok=1.0, output_per_mtok=2.0))
    >>> with ledger_scope() as ledger:
    ...     answer = GeneratorRouter({"mock": llm}).invoke("Capital of Peru?").answer
    >>> answer, ledger.entries[-1].model, ledger.entries[-1].output_tokens
    ('text text', 'MockLLM', 2)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, ChatResponse
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import LLM

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.integrations.llamaindex.budget_gate import call_options, install
from rag_routing.integrations.llamaindex.instrumentation import (
    LedgerEventHandler,
    mark_recorded,
    recorded_entry,
    usage_of,
)
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import GENERATION
from rag_routing.stages.streaming import current_stream

GENERATION_STAGE = GENERATION


@dataclass(frozen=True)
class LlamaIndexReply:
    """What :meth:`LlamaIndexChatLLM.generate` returns: the answer text and the LLM's last response."""

    text: str
    response: Any = None


def _model_name(llm: Any) -> str:
    metadata = getattr(llm, "metadata", None)
    name = getattr(metadata, "model_name", None)
    if isinstance(name, str) and name and name != "unknown":
        return name
    return type(llm).class_name() if callable(getattr(type(llm), "class_name", None)) else type(llm).__name__


def _instrumented() -> bool:
    """Whether a LedgerEventHandler listens on the root dispatcher (then it records every call, once)."""
    return any(isinstance(h, LedgerEventHandler) for h in get_dispatcher().event_handlers)


class LlamaIndexChatLLM:
    """A LlamaIndex LLM behind the ``generate(messages, ...)`` interface of the generator stage.

    Args:
        llm: any LlamaIndex ``LLM`` (``MockLLM``, ``LocalLlamaIndexLLM``, a provider's LLM).
        model_name: the name in traces and the ledger (default: ``llm.metadata.model_name``, else its class).
        pricing: the model's price when the price table does not know it.
        allow_unpriced: record an unknown model at an explicit $0 instead of raising ``UnknownPriceError``.
    """

    def __init__(self, llm: LLM, *, model_name: str | None = None, pricing: Pricing | None = None,
                 allow_unpriced: bool = False):
        if not callable(getattr(llm, "chat", None)):
            raise InvalidInputError(f"LlamaIndexChatLLM wraps a LlamaIndex LLM (with chat), got {type(llm).__name__}")
        if pricing is not None and not isinstance(pricing, Pricing):
            raise InvalidInputError(f"pricing must be a Pricing, got {type(pricing).__name__}")
        self.llm = llm
        self.model_name = model_name or _model_name(llm)
        self._named = model_name  # an explicit name also names the ledger entries
        self.pricing = pricing
        self.allow_unpriced = allow_unpriced
        install()

    @staticmethod
    def _messages(messages: Sequence[dict[str, str]] | str) -> list[ChatMessage]:
        if isinstance(messages, str):
            return [ChatMessage(role="user", content=messages)]
        return [ChatMessage(role=m["role"], content=m["content"]) for m in messages]

    def generate(self, messages: Sequence[dict[str, str]] | str, max_new_tokens: int | None = None,
                 temperature: float | None = None, **kwargs: Any) -> LlamaIndexReply:
        """One chat call (streamed to the active token sink, if any)."""
        chat, stream, started = self._messages(messages), current_stream(), time.perf_counter()
        streamed: list[str] = []
        with self._options():
            if stream is None:
                response: ChatResponse | None = self.llm.chat(chat)
            else:
                response = None
                responses = self.llm.stream_chat(chat)
                try:
                    for response in responses:
                        if response.delta:
                            stream.emit(response.delta)  # StreamAbandoned: closing bills what streamed
                            streamed.append(response.delta)
                finally:
                    close = getattr(responses, "close", None)
                    if callable(close):
                        close()
        return self._finish(chat, response, streamed, time.perf_counter() - started)

    def _options(self) -> Any:
        return call_options(pricing=self.pricing, allow_unpriced=self.allow_unpriced, model=self._named)

    async def agenerate(self, messages: Sequence[dict[str, str]] | str, max_new_tokens: int | None = None,
                        temperature: float | None = None, **kwargs: Any) -> LlamaIndexReply:
        """Async :meth:`generate` (``achat`` / ``astream_chat``)."""
        chat, stream, started = self._messages(messages), current_stream(), time.perf_counter()
        streamed: list[str] = []
        with self._options():
            if stream is None:
                response: ChatResponse | None = await self.llm.achat(chat)
            else:
                response = None
                responses = await self.llm.astream_chat(chat)
                try:
                    async for response in responses:
                        if response.delta:
                            stream.emit(response.delta)
                            streamed.append(response.delta)
                finally:
                    aclose = getattr(responses, "aclose", None)
                    if callable(aclose):
                        await aclose()
        return self._finish(chat, response, streamed, time.perf_counter() - started)

    def _finish(self, chat: list[ChatMessage], response: ChatResponse | None, streamed: list[str],
                seconds: float) -> LlamaIndexReply:
        # A stream's answer is its deltas (what the user saw); some LLMs' last response lags a token behind.
        text = "".join(streamed) if streamed else "" if response is None else str(response.message.content or "")
        ledger = current_ledger()
        if ledger is not None and not _instrumented() and (response is None or not recorded_entry(response)):
            tokens_in, tokens_out = usage_of(response) if response is not None else (None, None)
            entry = ledger.record_call(
                stage=GENERATION_STAGE, model=self.model_name, component=self.model_name, seconds=seconds,
                input_tokens=tokens_in, output_tokens=tokens_out,
                input_text="\n".join(str(m.content or "") for m in chat) if tokens_in is None else None,
                output_text=text if tokens_out is None else None, pricing=self.pricing,
                allow_unpriced=True if self.allow_unpriced else None, metadata={"source": "llama_index"})
            if response is not None:
                mark_recorded(response, entry.entry_id)
        return LlamaIndexReply(text, response)

    def __repr__(self) -> str:
        return f"LlamaIndexChatLLM({self.model_name!r})"


__all__ = ["LlamaIndexChatLLM", "LlamaIndexReply"]
