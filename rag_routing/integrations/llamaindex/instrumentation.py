"""`LedgerEventHandler`: LlamaIndex LLM and embedding calls recorded in the rag_routing cost ledger.

LlamaIndex announces every LLM call (``LLMChatStartEvent`` / ``LLMChatEndEvent``, ``LLMCompletionStartEvent`` /
``LLMCompletionEndEvent``) and every embedding call (``EmbeddingStartEvent`` / ``EmbeddingEndEvent``) through its
instrumentation dispatcher. The handler pairs starts and ends by span (latency = start -> end), and records:

* LLM calls: tokens from the response's ``raw`` usage (``usage`` / ``usage_metadata``) or its
  ``additional_kwargs`` (``prompt_tokens`` / ``completion_tokens``), else counted with
  :func:`rag_routing.ledger.count_tokens` and marked ``estimated``; the model from the response or the start
  event's ``model_dict`` (``model_name``, else the LLM class name);
* embedding calls: the embedded chunks' tokens (counted, ``estimated``), model from the start event.

Prices come from the ledger's price table, or ``pricing={"MockLLM": Pricing(...)}``. You rarely attach the
handler yourself: inside ``ledger_scope`` the ambient hook installs a default one (ledger and prices from the
scope) together with the budget gate of :mod:`~rag_routing.integrations.llamaindex.budget_gate`, which reserves
each call's estimate and refuses over-budget or unpriced calls *before* the provider runs; the handler commits
the real usage to that reservation (and, for a stream abandoned mid-way, the tokens streamed so far).
:func:`instrument` replaces the default handler with one of your own (a fixed ledger, price overrides).

LlamaIndex's dispatcher swallows every exception a handler raises, so without the gate (a handler attached by
hand) an unknown price cannot stop the call: the entry is recorded at an explicit $0 with ``priced=False``, the
problem is logged at ERROR level and kept in :attr:`LedgerEventHandler.errors`;
:meth:`LedgerEventHandler.raise_errors` raises it as an :class:`~rag_routing.errors.UnknownPriceError`.

Calls are recorded once: wrappers nest LLM calls (``CustomLLM.chat`` calls ``complete``; ``astream_chat`` calls
``stream_chat``, which calls ``stream_complete``), and only the innermost call of such a nest is billed. Each
recorded response is marked ``additional_kwargs["ledger_entry_id"]``; a response already marked (e.g. by
``LocalLlamaIndexLLM``, which records its own calls) is skipped.

Example:
    >>> from llama_index.core.llms import MockLLM
    >>> from rag_routing.candidates import Pricing
    >>> from rag_routing.ledger import ledger_scope
    >>> handler = instrument(pricing={"MockLLM": Pricing(input_per_mtok=1.0, output_per_mtok=2.0)})
    >>> with ledger_scope() as ledger:
    ...     _ = MockLLM(max_tokens=4).complete("Who wrote Hamlet?")
    >>> e = ledger.entries[0]
    >>> e.stage, e.model, e.output_tokens, e.estimated
    ('generation', 'MockLLM', 4, True)
    >>> instrument() is handler, uninstrument()
    (True, True)
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
    SparseEmbeddingEndEvent,
)
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from pydantic import ConfigDict, Field, PrivateAttr

from rag_routing.candidates import Pricing
from rag_routing.errors import UnknownPriceError
from rag_routing.integrations.llamaindex.budget_gate import (
    SPANS,
    CallOptions,
    current_call_options,
    current_decision_id,
    detached,
    install,
    uninstall_gate,
)
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.pricing import default_table
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import EMBEDDING, GENERATION
from rag_routing.ledger.tokens import count_tokens_batch, parse_usage

logger = logging.getLogger(__name__)


def _either(ledger: CostLedger | None, fallback: CostLedger | None) -> CostLedger | None:
    # not ``ledger or fallback``: an empty CostLedger is falsy (it has __len__)
    return ledger if ledger is not None else fallback

#: Ledger stages of the calls this handler records.
GENERATION_STAGE, EMBEDDING_STAGE = GENERATION, EMBEDDING
_LLM_START = (LLMChatStartEvent, LLMCompletionStartEvent)
_LLM_END = (LLMChatEndEvent, LLMCompletionEndEvent)
_LLM_PROGRESS = (LLMChatInProgressEvent, LLMCompletionInProgressEvent)


@dataclass(eq=False)
class _Open:
    started: float
    ledger: CostLedger | None
    model: str | None
    prompt: str
    inner_recorded: bool = False  # a call nested in this one was recorded: this one only wraps it
    span: str | None = None
    decision_id: str | None = None
    options: CallOptions | None = None
    streamed: list[str] = field(default_factory=list)  # a stream's deltas so far (if it is abandoned)


#: LLM calls open in the current context, outermost first (immutable tuples: each task keeps its own).
_OPEN_LLM_CALLS: contextvars.ContextVar[tuple[_Open, ...]] = contextvars.ContextVar(
    "rag_routing_open_llamaindex_llm_calls", default=())


def _model_of(model_dict: Mapping[str, Any] | None) -> str | None:
    if not model_dict:
        return None
    name = model_dict.get("model_name") or model_dict.get("model")
    if isinstance(name, str) and name and name != "unknown":
        return name
    return str(model_dict.get("class_name") or "") or None


def _as_mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None) or getattr(value, "dict", None)
    if callable(dump):
        try:
            out = dump()
            return out if isinstance(out, Mapping) else {}
        except Exception:  # a provider object that cannot dump itself: no usage from it
            return {}
    return {}


def usage_of(response: Any) -> tuple[int | None, int | None]:
    """(input, output) tokens a LlamaIndex response reports, ``None`` where it reports nothing."""
    raw = _as_mapping(getattr(response, "raw", None))
    message = getattr(response, "message", None)
    for source in (raw.get("usage"), raw.get("usage_metadata"), getattr(response, "additional_kwargs", None),
                   getattr(message, "additional_kwargs", None), raw):
        found = parse_usage(_as_mapping(source) if source is not None else None)
        if found != (None, None):
            return found
    return None, None


def recorded_entry(response: Any) -> str | None:
    """The ledger entry id a response was marked with, if it was recorded already."""
    for owner in (response, getattr(response, "message", None)):
        extra = getattr(owner, "additional_kwargs", None)
        if isinstance(extra, Mapping) and extra.get("ledger_entry_id"):
            return str(extra["ledger_entry_id"])
    return None


def mark_recorded(response: Any, entry_id: str) -> None:
    """Mark ``response`` (and its message) as recorded under ``entry_id``."""
    for owner in (response, getattr(response, "message", None)):
        extra = getattr(owner, "additional_kwargs", None)
        if isinstance(extra, dict):
            extra["ledger_entry_id"] = entry_id


def _text_of(response: Any) -> str:
    message = getattr(response, "message", None)
    if message is not None:
        return str(getattr(message, "content", "") or "")
    return str(getattr(response, "text", "") or "")


class LedgerEventHandler(BaseEventHandler):
    """Record LlamaIndex LLM and embedding calls in a cost ledger (module docstring).

    Attributes:
        ledger: record here (default: the ambient ledger when the call starts; nothing without one).
        pricing: ``{model: Pricing}`` for models the price table does not know (or to override it).
        allow_unpriced: accept unknown models at $0 quietly (entries still marked ``priced=False``).
        llm_stage, embedding_stage: ledger stages of the two kinds of calls.
        errors: unknown-price problems seen so far (see :meth:`raise_errors`).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    ledger: CostLedger | None = None
    pricing: dict[str, Pricing] = Field(default_factory=dict)
    allow_unpriced: bool = False
    llm_stage: str = GENERATION_STAGE
    embedding_stage: str = EMBEDDING_STAGE
    errors: list[str] = Field(default_factory=list)
    _open: dict[tuple[str, str | None], list[_Open]] = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "LedgerEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, _LLM_START):
            messages = getattr(event, "messages", None) or []
            prompt = getattr(event, "prompt", None) or "\n".join(str(m.content or "") for m in messages)
            self._push("llm", event, _model_of(event.model_dict), prompt)
        elif isinstance(event, EmbeddingStartEvent):  # SparseEmbeddingStartEvent is a subclass
            self._push("embedding", event, _model_of(event.model_dict), "")
        elif isinstance(event, _LLM_PROGRESS):
            self._progress(event)
        elif isinstance(event, _LLM_END):
            self._end_llm(event)
        elif isinstance(event, (EmbeddingEndEvent, SparseEmbeddingEndEvent)):
            self._end_embedding(event)

    # -- pairing starts and ends ----------------------------------------------------------------------------
    def _push(self, kind: str, event: BaseEvent, model: str | None, prompt: str) -> None:
        opened = _Open(time.perf_counter(), _either(self.ledger, current_ledger()), model, prompt,
                       span=event.span_id, decision_id=current_decision_id(),
                       options=current_call_options() if kind == "llm" else None)  # LLM prices, not embeddings
        with self._lock:
            self._open.setdefault((kind, event.span_id), []).append(opened)
        if kind == "llm":
            _OPEN_LLM_CALLS.set((*_OPEN_LLM_CALLS.get(), opened))

    def _pop(self, kind: str, event: BaseEvent) -> _Open:
        with self._lock:
            stack = self._open.get((kind, event.span_id))
            if stack:
                opened = stack.pop()  # the innermost open call of this span ends first
                if not stack:
                    del self._open[(kind, event.span_id)]
                return opened
        return _Open(time.perf_counter(), _either(self.ledger, current_ledger()), None, "")

    # -- recording ----------------------------------------------------------------------------------------
    def open_call(self, span_id: str | None) -> _Open | None:
        """The innermost LLM call open under ``span_id`` (the budget gate reserves for it)."""
        with self._lock:
            stack = self._open.get(("llm", span_id))
            return stack[-1] if stack else None

    def _progress(self, event: BaseEvent) -> None:
        opened = self.open_call(event.span_id)
        response = getattr(event, "response", None)
        if opened is not None and response is not None:
            delta = getattr(response, "delta", None)
            if delta:
                opened.streamed.append(str(delta))

    def abandon_call(self, span_id: str | None) -> None:
        """A call failed, was refused or its stream was abandoned: commit what streamed, release the rest."""
        with self._lock:
            stack = self._open.get(("llm", span_id))
            opened = stack.pop() if stack else None
            if stack is not None and not stack:
                del self._open[("llm", span_id)]
        if opened is not None and opened in (calls := _OPEN_LLM_CALLS.get()):
            _OPEN_LLM_CALLS.set(tuple(c for c in calls if c is not opened))
        reservation = SPANS.finish(span_id)
        if reservation is None or reservation.state != "open":
            return
        text = "".join(opened.streamed) if opened is not None else ""
        ledger = opened.ledger if opened is not None else None
        if not text or ledger is None:
            reservation.release()
            return
        self._record(ledger, self.llm_stage, str(opened.model or "unknown"), time.perf_counter() - opened.started,
                     input_text=opened.prompt, output_text=text, estimated=True, opened=opened,
                     reservation=reservation, metadata={"finish_reason": "abandoned"})

    def _end_llm(self, event: BaseEvent) -> None:
        try:
            self._record_llm_end(event)
        finally:
            if (left := SPANS.finish(event.span_id)) is not None and left.state == "open":
                left.release()  # nothing was recorded against it (no ledger)

    def _record_llm_end(self, event: BaseEvent) -> None:
        opened = self._pop("llm", event)
        # Wrappers nest calls (chat -> complete, astream_chat -> stream_chat -> stream_complete): the innermost
        # call is billed, the calls around it are not billed again.
        open_calls = _OPEN_LLM_CALLS.get()
        enclosing = None
        if opened in open_calls:
            rest = tuple(c for c in open_calls if c is not opened)
            _OPEN_LLM_CALLS.set(rest)
            enclosing = rest[-1] if rest else None
        response = getattr(event, "response", None)
        ledger = _either(opened.ledger, current_ledger())
        if opened.inner_recorded or (response is not None and recorded_entry(response)):
            if enclosing is not None:
                enclosing.inner_recorded = True
            return
        if ledger is None:
            return
        if enclosing is not None:
            enclosing.inner_recorded = True
        raw = _as_mapping(getattr(response, "raw", None))
        extra = getattr(response, "additional_kwargs", None) or {}
        model = raw.get("model") or extra.get("model") or opened.model or "unknown"
        tokens_in, tokens_out = usage_of(response) if response is not None else (None, None)
        reservation = SPANS.reservation(event.span_id)
        entry = self._record(ledger, self.llm_stage, str(model), time.perf_counter() - opened.started,
                             input_tokens=tokens_in, output_tokens=tokens_out,
                             input_text=opened.prompt if tokens_in is None else None,
                             output_text=_text_of(response) if tokens_out is None else None,
                             estimated=tokens_in is None or tokens_out is None, event=event, opened=opened,
                             reservation=reservation if reservation is not None and reservation.state == "open"
                             else None)
        if response is not None:
            mark_recorded(response, entry.entry_id)

    def _end_embedding(self, event: BaseEvent) -> None:
        opened = self._pop("embedding", event)
        ledger = _either(opened.ledger, current_ledger())
        if ledger is None:
            return
        chunks = [str(c) for c in getattr(event, "chunks", [])]
        tokens = sum(count_tokens_batch(chunks)) if chunks else 0
        self._record(ledger, self.embedding_stage, opened.model or "unknown", time.perf_counter() - opened.started,
                     input_tokens=tokens, output_tokens=0, estimated=True, event=event, opened=opened,
                     metadata={"chunks": len(chunks)})

    def _price(self, ledger: CostLedger, model: str,
               options: CallOptions | None = None) -> tuple[Pricing | None, bool]:
        """(pricing override, allow_unpriced) for ``model``; logs and keeps an unknown price."""
        if options is not None and (options.pricing is not None or options.allow_unpriced):
            return options.pricing, True
        if detached(ledger):  # a stage's own ledger outside ledger_scope: no bill was asked for
            return self.pricing.get(model), True
        override = self.pricing.get(model) or self.pricing.get(model.strip().lower())
        if override is not None:
            return override, False
        table = ledger.prices if ledger.prices is not None else default_table()
        if table.find(model) is not None or self.allow_unpriced or ledger.allow_unpriced:
            return None, True
        problem = (f"no price known for model {model!r} (LlamaIndex call recorded at $0, priced=False); pass "
                   f"LedgerEventHandler(pricing={{{model!r}: Pricing(...)}}) or allow_unpriced=True")
        with self._lock:
            self.errors.append(problem)
        logger.error(problem)
        return None, True

    def _record(self, ledger: CostLedger, stage: str, model: str, seconds: float, *, event: BaseEvent | None = None,
                metadata: Mapping[str, Any] | None = None, opened: _Open | None = None, **counts: Any) -> Any:
        pricing, unpriced_ok = self._price(ledger, model, opened.options if opened is not None else None)
        decision = {"decision_id": opened.decision_id} if opened is not None and opened.decision_id else {}
        source = {"source": "llama_index", "event": event.class_name() if event is not None else "abandoned"}
        named = opened.options.model if opened is not None and opened.options is not None else None
        return ledger.record_call(stage=stage, model=model, component=named or model, seconds=seconds,
                                  pricing=pricing,
                                  allow_unpriced=unpriced_ok, metadata={**source, **(metadata or {})},
                                  **decision, **counts)

    def raise_errors(self) -> None:
        """Raise :class:`UnknownPriceError` if a call was recorded without a known price (then forget it)."""
        with self._lock:
            problems, self.errors = list(self.errors), []
        if problems:
            raise UnknownPriceError("; ".join(dict.fromkeys(problems)))


def instrument(ledger: CostLedger | None = None, **kwargs: Any) -> LedgerEventHandler:
    """Attach a :class:`LedgerEventHandler` to LlamaIndex's root dispatcher, once.

    Called again with the same arguments (or none), it returns the attached handler; with other arguments it
    replaces it. ``kwargs`` are the handler's fields (``pricing``, ``allow_unpriced``, ...).
    """
    root = get_dispatcher()
    existing = next((h for h in root.event_handlers if isinstance(h, LedgerEventHandler)), None)
    if existing is not None:
        same = existing.ledger is ledger and all(getattr(existing, k) == v for k, v in kwargs.items())
        if same:
            return existing
        root.event_handlers.remove(existing)
    handler = LedgerEventHandler(ledger=ledger, **kwargs)
    root.add_event_handler(handler)
    install()  # the budget gate: refusals before the call
    return handler


def uninstrument() -> bool:
    """Detach the :class:`LedgerEventHandler` (and budget gate); ``True`` if one was attached.

    Once a ``ledger_scope`` installed the ambient hooks, they come back as they were (a default recorder that
    meters into the ambient ledger only), so no explicit handler stays behind.
    """
    from rag_routing.ledger import ambient_hooks

    root = get_dispatcher()
    handlers = [h for h in root.event_handlers if isinstance(h, LedgerEventHandler)]
    for handler in handlers:
        root.event_handlers.remove(handler)
    uninstall_gate()
    if ambient_hooks.is_installed("llama_index.core"):
        install()
    return bool(handlers)


__all__ = ["LedgerEventHandler", "instrument", "uninstrument", "usage_of", "recorded_entry", "mark_recorded",
           "GENERATION_STAGE", "EMBEDDING_STAGE"]
