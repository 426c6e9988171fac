"""Budgets that refuse a LlamaIndex LLM call *before* the provider runs, and metering with no ``instrument()``.

LlamaIndex's instrumentation dispatcher swallows every exception its event and span handlers raise, so a
handler there can record a call but never stop one. The LLM decorators (``llm_chat_callback``,
``llm_completion_callback``) also call the LLM's legacy ``callback_manager.on_event_start`` right before the
provider, and that call does propagate exceptions. So:

* :class:`BudgetSpanHandler` (a span handler on the root dispatcher) sees every LLM method span with its
  instance, attaches one :class:`BudgetCallbackHandler` to that LLM's ``callback_manager`` (once), and
  remembers which LLM span a nested one belongs to (``chat`` calling ``complete``, ``astream_chat`` calling
  ``stream_chat``): one reservation per outermost call;
* :class:`BudgetCallbackHandler.on_event_start` estimates the call — input tokens counted from the actual
  messages, output tokens from the call's ``max_tokens`` (else the LLM's, else :data:`DEFAULT_OUTPUT_TOKENS`)
  — prices it (an unknown price raises :class:`~rag_routing.errors.UnknownPriceError` unless
  ``allow_unpriced``) and reserves it on the ambient ledger's budget:
  :class:`~rag_routing.errors.BudgetExceededError` before the provider is called;
* the :class:`~rag_routing.integrations.llamaindex.instrumentation.LedgerEventHandler` commits the real usage to
  that reservation when the call ends; an error releases it; a stream the consumer abandons commits the tokens
  streamed so far and releases the rest.

:func:`install` attaches both handlers (idempotent). It is registered as the ``llama_index.core`` ambient hook,
so ``with ledger_scope(ledger):`` meters and budgets every LlamaIndex call once ``llama_index.core`` is
imported; calling ``instrument()`` as well replaces the recorder, never adds a second one.

Example:
    >>> from llama_index.core.llms import MockLLM
    >>> from rag_routing.candidates import Pricing
    >>> from rag_routing.errors import BudgetExceededError
    >>> from rag_routing.ledger import Budget, CostLedger, ledger_scope
    >>> install()
    >>> llm = MockLLM(max_tokens=4000)
    >>> with call_options(pricing=Pricing(input_per_mtok=1.0, output_per_mtok=2.0)):
    ...     with ledger_scope(CostLedger(budget=Budget(max_usd=0.001))) as ledger:
    ...         try:
    ...             _ = llm.complete("Who wrote Hamlet?")
    ...         except BudgetExceededError:
    ...             print("refused before the call")
    refused before the call
    >>> len(ledger), ledger.budget.reserved().usd
    (0, 0.0)
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.callbacks.base_handler import BaseCallbackHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from pydantic import PrivateAttr

from rag_routing.candidates import Pricing
from rag_routing.ledger.budget import Reservation
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.tokens import count_tokens
from rag_routing.stages.attribution import StageLedger, stage_ledger

#: Output tokens reserved for a call that names no ``max_tokens`` (nor does its LLM).
DEFAULT_OUTPUT_TOKENS = 256


@dataclass(frozen=True)
class CallOptions:
    """How calls made inside :func:`call_options` are priced and named (set by ``LlamaIndexChatLLM``)."""

    pricing: Pricing | None = None
    allow_unpriced: bool = False
    model: str | None = None  #: the component name of the ledger entries (the model is the LLM's own)


_CALL_OPTIONS: contextvars.ContextVar[CallOptions | None] = contextvars.ContextVar(
    "rag_routing_llamaindex_call_options", default=None)

#: The stage ledger of a routed engine's run, whose ``decision_id`` ``RoutingSelector`` fills in once it chose.
_DECISION: contextvars.ContextVar[StageLedger | None] = contextvars.ContextVar(
    "rag_routing_llamaindex_decision", default=None)


@contextmanager
def call_options(pricing: Pricing | None = None, allow_unpriced: bool = False,
                 model: str | None = None) -> Iterator[CallOptions]:
    """Price (and name) the LlamaIndex LLM calls made inside the block this way."""
    options = CallOptions(pricing, allow_unpriced, model)
    token = _CALL_OPTIONS.set(options)
    try:
        yield options
    finally:
        _CALL_OPTIONS.reset(token)


def current_call_options() -> CallOptions | None:
    return _CALL_OPTIONS.get()


@contextmanager
def decision_slot() -> Iterator[StageLedger]:
    """A view of the ambient ledger whose entries carry the decision id a selector fills in (:func:`fill_decision`)
    — every entry recorded inside the block: the recorder's, and those of LLMs that record themselves."""
    with stage_ledger(None) as collector:
        token = _DECISION.set(collector)
        try:
            yield collector
        finally:
            _DECISION.reset(token)


def fill_decision(decision_id: str | None) -> None:
    """Stamp what the enclosing :func:`decision_slot` records from now on with ``decision_id`` (no-op outside)."""
    collector = _DECISION.get()
    if collector is not None:
        collector.decision_id = decision_id


def current_decision_id() -> str | None:
    collector = _DECISION.get()
    return None if collector is None else collector.decision_id


class _Spans:
    """Which outermost LLM span each LLM span belongs to, and the reservation held for each outermost span."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.root_of: dict[str, str] = {}
        self.members: dict[str, list[str]] = {}
        self.reservations: dict[str, Reservation] = {}
        self.exited: set[str] = set()  # outermost spans that returned a stream still holding a reservation

    def enter(self, span_id: str, parent_id: str | None) -> None:
        with self.lock:
            root = self.root_of.get(parent_id, span_id) if parent_id is not None else span_id
            self.root_of[span_id] = root
            self.members.setdefault(root, []).append(span_id)

    def root(self, span_id: str | None) -> str | None:
        if span_id is None:
            return None
        with self.lock:
            return self.root_of.get(span_id)

    def reservation(self, span_id: str | None) -> Reservation | None:
        with self.lock:
            root = self.root_of.get(span_id) if span_id is not None else None
            return self.reservations.get(root) if root is not None else None

    def hold(self, root: str, reservation: Reservation) -> bool:
        with self.lock:
            if root in self.reservations:
                return False
            self.reservations[root] = reservation
            return True

    def finish(self, span_id: str | None) -> Reservation | None:
        """Forget the nest of ``span_id`` once its outermost call is over; returns the nest's reservation.

        ``None`` (nothing forgotten) while an enclosing LLM call of the same nest is still running.
        """
        with self.lock:
            root = self.root_of.get(span_id) if span_id is not None else None
            if root is None or (root != span_id and root not in self.exited):
                return None
            self.exited.discard(root)
            for member in self.members.pop(root, []):
                self.root_of.pop(member, None)
            return self.reservations.pop(root, None)

    def exit(self, span_id: str) -> None:
        """The outermost call ``span_id`` returned: forget it, or, if a stream still holds its reservation,
        remember that whichever call of the nest ends the stream ends the nest."""
        with self.lock:
            if self.root_of.get(span_id) != span_id:
                return
            reservation = self.reservations.get(span_id)
            if reservation is not None and reservation.state == "open":
                self.exited.add(span_id)
                return
        self.finish(span_id)


SPANS = _Spans()


def detached(ledger: CostLedger) -> bool:
    """A stage's own ledger outside any ``ledger_scope``: it keeps the trace's costs, nobody asked for a bill."""
    return isinstance(ledger, StageLedger) and ledger.root is None


def _priced(ledger: CostLedger, model: str, recorder: Any) -> tuple[Pricing | None, bool]:
    """(pricing, allow_unpriced) for a call of ``model``: call options, then the recorder's overrides."""
    if detached(ledger):
        return None, True
    options = _CALL_OPTIONS.get()
    if options is not None and (options.pricing is not None or options.allow_unpriced):
        return options.pricing, options.allow_unpriced or ledger.allow_unpriced
    pricing = getattr(recorder, "pricing", {}) or {}
    override = pricing.get(model) or pricing.get(model.strip().lower())
    return override, bool(getattr(recorder, "allow_unpriced", False)) or ledger.allow_unpriced


def _output_tokens(payload: Mapping[str, Any]) -> int:
    for source in (payload.get(EventPayload.ADDITIONAL_KWARGS) or {}, payload.get(EventPayload.SERIALIZED) or {}):
        for key in ("max_tokens", "max_new_tokens", "max_output_tokens", "num_output"):
            value = source.get(key) if isinstance(source, Mapping) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return DEFAULT_OUTPUT_TOKENS


class BudgetCallbackHandler(BaseCallbackHandler):
    """Reserves each outermost LLM call's estimate before the provider runs (module docstring)."""

    def __init__(self) -> None:
        super().__init__(event_starts_to_ignore=[], event_ends_to_ignore=[])
        self._span_of: dict[str, str | None] = {}  # legacy event id -> LLM span (a stream ends elsewhere)
        self._lock = threading.Lock()

    def on_event_start(self, event_type: CBEventType, payload: dict[str, Any] | None = None, event_id: str = "",
                       parent_id: str = "", **kwargs: Any) -> str:
        if event_type != CBEventType.LLM:
            return event_id
        span = active_span_id.get()
        with self._lock:
            self._span_of[event_id] = span
        root = SPANS.root(span)
        recorder = _recorder()
        opened = recorder.open_call(span) if recorder is not None else None
        if (root is None or opened is None or opened.ledger is None or SPANS.reservation(span) is not None
                or _records_itself(payload)):
            return event_id  # no ledger, nothing recording, nested in a reserved call, or an LLM that reserves
        ledger, model = opened.ledger, opened.model or "unknown"
        try:
            pricing, unpriced_ok = _priced(ledger, model, recorder)
            # Priced first: an unknown price raises UnknownPriceError before anything is reserved or run.
            reservation = ledger.reserve_call(model, count_tokens(opened.prompt, model),
                                              _output_tokens(payload or {}), pricing=pricing,
                                              allow_unpriced=unpriced_ok, label=f"generation/{model}")
        except BaseException:
            with self._lock:
                self._span_of.pop(event_id, None)
            recorder.abandon_call(span)  # the call never runs: forget it
            raise
        if not SPANS.hold(root, reservation):
            reservation.release()
        return event_id

    def on_event_end(self, event_type: CBEventType, payload: dict[str, Any] | None = None, event_id: str = "",
                     **kwargs: Any) -> None:
        if event_type != CBEventType.LLM:
            return
        with self._lock:
            span = self._span_of.pop(event_id, None)
        if not payload or EventPayload.EXCEPTION not in payload:
            return
        recorder = _recorder()
        if recorder is not None:
            recorder.abandon_call(span)  # failed or abandoned: commit what streamed, release the rest
        elif (reservation := SPANS.finish(span)) is not None:
            reservation.release()

    def start_trace(self, trace_id: str | None = None) -> None:
        """Traces are the recorder's business."""

    def end_trace(self, trace_id: str | None = None, trace_map: dict[str, list[str]] | None = None) -> None:
        """Traces are the recorder's business."""


def _records_itself(payload: Mapping[str, Any] | None) -> bool:
    """An LLM that records (and reserves) its own calls, e.g. ``LocalLlamaIndexLLM(record_to_ledger=True)``."""
    serialized = (payload or {}).get(EventPayload.SERIALIZED) or {}
    return isinstance(serialized, Mapping) and serialized.get("record_to_ledger") is True


def _recorder() -> Any:
    from rag_routing.integrations.llamaindex.instrumentation import LedgerEventHandler

    return next((h for h in get_dispatcher().event_handlers if isinstance(h, LedgerEventHandler)), None)


_GATE = BudgetCallbackHandler()


class BudgetSpanHandler(BaseSpanHandler[Any]):
    """Attaches the budget gate to every LLM it sees and tracks nested LLM spans (module docstring)."""

    _attach_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "BudgetSpanHandler"

    def new_span(self, id_: str, bound_args: Any, instance: Any | None = None, parent_span_id: str | None = None,
                 tags: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if isinstance(instance, BaseLLM):
            manager = getattr(instance, "callback_manager", None)
            if not isinstance(manager, CallbackManager):
                manager = instance.callback_manager = CallbackManager([])
            if _GATE not in manager.handlers:
                with self._attach_lock:
                    if _GATE not in manager.handlers:
                        manager.add_handler(_GATE)
            SPANS.enter(id_, parent_span_id)
        return None  # nothing to keep per span

    def prepare_to_exit_span(self, id_: str, bound_args: Any, instance: Any | None = None, result: Any = None,
                             **kwargs: Any) -> None:
        SPANS.exit(id_)  # a returned stream keeps its open reservation until it ends
        return None

    def prepare_to_drop_span(self, id_: str, bound_args: Any, instance: Any | None = None,
                             err: BaseException | None = None, **kwargs: Any) -> None:
        if (reservation := SPANS.finish(id_)) is not None:  # raised before any call event ended it
            reservation.release()
        return None


def install() -> None:
    """Meter and budget every LlamaIndex LLM / embedding call into the ambient ledger (idempotent)."""
    from rag_routing.integrations.llamaindex.instrumentation import LedgerEventHandler

    root = get_dispatcher()
    with _INSTALL_LOCK:
        if not any(isinstance(h, LedgerEventHandler) for h in root.event_handlers):
            root.add_event_handler(LedgerEventHandler())
        if not any(isinstance(h, BudgetSpanHandler) for h in root.span_handlers):
            root.add_span_handler(BudgetSpanHandler())


def uninstall_gate() -> bool:
    """Detach the span handler (``uninstrument`` calls it); ``True`` if one was attached."""
    root = get_dispatcher()
    handlers = [h for h in root.span_handlers if isinstance(h, BudgetSpanHandler)]
    for handler in handlers:
        root.span_handlers.remove(handler)
    return bool(handlers)


_INSTALL_LOCK = threading.Lock()

__all__ = ["install", "uninstall_gate", "BudgetSpanHandler", "BudgetCallbackHandler", "call_options", "CallOptions",
           "current_call_options", "decision_slot", "fill_decision", "current_decision_id", "DEFAULT_OUTPUT_TOKENS",
           "SPANS", "detached"]
