"""`LedgerCallbackHandler`: every LangChain chat model / LLM call budgeted and priced into the cost ledger.

**No handler to attach.** Inside ``ledger_scope(ledger)`` every LangChain chat model / LLM run already has one
(installed through LangChain's ``register_configure_hook``, see
:mod:`~rag_routing.integrations.langchain.ambient`). Attach one by hand only to send calls to another ledger
or to pass ``pricing=`` / ``default_model=`` / ``allow_unpriced=``: a hand-attached handler replaces the
ambient one for the runs it sees (one entry per run and ledger, never two). A handler attached to the model
itself deep inside a chain sees the run after the ambient one, which prices it first: give a model the price
table does not know to the ledger (``CostLedger(prices=PriceTable.default().with_overrides({...}))``) too.

**Before the call** (``on_chat_model_start`` / ``on_llm_start``) the handler estimates the call (input tokens
counted from the actual messages, output tokens from ``max_tokens`` or
:data:`~rag_routing.integrations.langchain.call_estimate.DEFAULT_MAX_OUTPUT_TOKENS`, see
:mod:`~rag_routing.integrations.langchain.call_estimate`), prices it (an unknown price raises
:class:`~rag_routing.errors.UnknownPriceError` here unless the ledger or handler allows $0) and reserves it on
the ledger's budget: :class:`~rag_routing.errors.BudgetExceededError` is raised before the provider is called,
on invoke, batch, stream and their async forms alike. The end of the run commits the real usage; an error or
cancellation releases the reservation.

Attach it to any chat model (``model.with_config(callbacks=[handler])``) or to a whole chain
(``chain.invoke(x, config={"callbacks": [handler]})``); on each ``on_llm_end`` it reads the tokens the provider
reported (``AIMessage.usage_metadata``, else ``llm_output["token_usage"]`` for older providers, else it counts
the prompt and answer text and marks the entry ``estimated``), finds the model name (``response_metadata``
``model_name`` / ``model``, ``llm_output``, the invocation params or ``ls_model_name`` captured at
``on_chat_model_start``), prices it with the ledger's price table and records one entry with the call's latency
(start -> end, kept per ``run_id``).

* An unknown model raises :class:`~rag_routing.errors.UnknownPriceError` (``raise_error = True``, so LangChain
  does not swallow it) unless ``allow_unpriced=True`` or ``pricing={"my-model": Pricing(...)}`` names it:
  never a silent $0.
* The ledger is the explicit ``ledger=`` or the ambient one (``ledger_scope()``), captured when the call
  *starts* (so it is the right one even if LangChain runs the end callback elsewhere); the handler runs inline
  (``run_inline = True``), also under ``ainvoke``.
* The ledger ``stage`` is ``metadata["ledger_stage"]`` (or a ``ledger_stage:<name>`` tag) of the run, else the
  handler's ``stage`` (default ``"generation"``); the RAG stage (``metadata["rag_stage"]``, set by
  :class:`~rag_routing.integrations.langchain.runnables.StageRunnable`) and the decision id
  (``metadata["rag_decision_id"]``) go into the entry.
* Calls the model already recorded itself (``response_metadata["ledger_entry_id"]``, as ``LocalChatModel``
  does) are skipped, so nothing is counted twice.

Example:
    >>> from langchain_core.language_models import GenericFakeChatModel
    >>> from langchain_core.messages import AIMessage
    >>> from rag_routing.ledger import ledger_scope
    >>> reply = AIMessage("Paris", usage_metadata={"input_tokens": 1000, "output_tokens": 500, "total_tokens": 1500},
    ...                   response_metadata={"model_name": "gpt-4o-mini"})
    >>> model = GenericFakeChatModel(messages=iter([reply]))
    >>> with ledger_scope() as ledger:
    ...     _ = model.invoke("Capital of France?", config={"callbacks": [LedgerCallbackHandler()]})
    >>> e = ledger.entries[0]
    >>> e.stage, e.model, e.input_tokens, round(e.cost_usd, 6), e.estimated
    ('generation', 'gpt-4o-mini', 1000, 0.00045, False)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError, UnknownPriceError
from rag_routing.integrations.langchain.call_estimate import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    first_model,
    model_name,
    output_tokens,
    prompt_text,
)
from rag_routing.ledger.budget import Reservation
from rag_routing.ledger.guard import is_metered, root_ledger_id
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.pricing import default_table, price_with_source
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import GENERATION
from rag_routing.ledger.tokens import count_tokens, parse_usage

#: Run metadata copied into the ledger entry.
_ENTRY_METADATA = ("rag_stage", "rag_choice", "rag_route")
#: Default ledger stage of an LLM call seen by the handler.
GENERATION_STAGE = GENERATION
#: Invocation-param flag of models that record their own calls (``LocalChatModel``): no reservation, no entry.
SELF_RECORDING_FLAG = "ledger_records_itself"

# Which handler meters a run for a ledger: (run id, root ledger id) -> handler. A hand-attached handler takes a
# run over from the ambient one (the ambient handler was added higher up the chain, so it sees the start first).
_CLAIMS: dict[tuple[UUID, str], LedgerCallbackHandler] = {}
_CLAIMS_LOCK = threading.Lock()


def _either(ledger: CostLedger | None, fallback: CostLedger | None) -> CostLedger | None:
    # not ``ledger or fallback``: an empty CostLedger is falsy (it has __len__)
    return ledger if ledger is not None else fallback


class _Call:
    """One model run being metered (a plain slotted class: one is built per call)."""

    __slots__ = ("started", "ledger", "model", "inputs", "key", "tags", "metadata", "reservation", "task",
                 "tokens_in")

    def __init__(self, started: float, ledger: CostLedger, model: str | None, inputs: tuple[Any, Any],
                 key: tuple[UUID, str], tags: list[str], metadata: dict[str, Any]):
        self.started = started
        self.ledger = ledger
        self.model = model
        self.inputs = inputs  # (chat messages, completion prompts): the text is built only when counted
        self.key = key
        self.tags = tags
        self.metadata = metadata
        self.reservation: Reservation | None = None
        self.task: asyncio.Task[Any] | None = None  # the asyncio task that started it (its end releases a leftover)
        self.tokens_in: int | None = None  # the prompt's tokens, once counted for the estimate (counted once)

    @property
    def prompt(self) -> str:
        return prompt_text(*self.inputs)


def _current_task() -> asyncio.Task[Any] | None:
    loop = asyncio._get_running_loop()  # None outside a running loop: no RuntimeError raised and caught per call
    return None if loop is None else asyncio.current_task(loop)


def _usage(generation: ChatGeneration) -> Any:
    return getattr(generation.message, "usage_metadata", None)


class LedgerCallbackHandler(BaseCallbackHandler):
    """Budget and record every LLM call of a LangChain run in a :class:`~rag_routing.ledger.CostLedger`.

    Args:
        ledger: record here (default: the ambient ledger when the call starts; nothing is recorded without one).
        pricing: ``{model: Pricing}`` for models the price table does not know (or to override it).
        allow_unpriced: record unknown models at an explicit $0 (entries marked ``priced=False``) instead of
            raising :class:`~rag_routing.errors.UnknownPriceError`.
        stage: ledger stage when the run's metadata does not name one.
        component: ledger component (default: the model name).
        default_model: model name used when neither the run nor the response names one.
        model: bill every call as this model, whatever the response reports (e.g. a fine-tune priced as its
            base model).
        skip_recorded: skip calls whose message carries ``response_metadata["ledger_entry_id"]``.
        default_max_tokens: output tokens reserved for a call that states no ``max_tokens``.
    """

    run_inline = True  # keep the caller's context (its ambient ledger) and ordering, also under ainvoke
    raise_error = True  # a refusal or an unknown price must reach the caller (and stop the call), not a log line
    ambient = False  # True only for the handler the ledger scope installs (a hand-attached one takes over)

    def __init__(self, ledger: CostLedger | None = None, *, pricing: Mapping[str, Pricing] | None = None,
                 allow_unpriced: bool = False, stage: str = GENERATION_STAGE, component: str | None = None,
                 default_model: str | None = None, model: str | None = None, skip_recorded: bool = True,
                 default_max_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS):
        super().__init__()
        if ledger is not None and not isinstance(ledger, CostLedger):
            raise InvalidInputError(f"ledger must be a CostLedger or None, got {type(ledger).__name__}")
        if not isinstance(stage, str) or not stage:
            raise InvalidInputError(f"stage must be a non-empty string, got {stage!r}")
        if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int) or default_max_tokens < 0:
            raise InvalidInputError(f"default_max_tokens must be an integer >= 0, got {default_max_tokens!r}")
        self.pricing = self._check_pricing(pricing)
        self.ledger = ledger
        self.allow_unpriced = allow_unpriced
        self.stage = stage
        self.component = component
        self.default_model = default_model
        self.model = model
        self.skip_recorded = skip_recorded
        self.default_max_tokens = default_max_tokens
        self._calls: dict[UUID, _Call] = {}
        self._task_runs: dict[asyncio.Task[Any], set[UUID]] = {}
        self._lock = threading.Lock()

    # Only model runs matter: LangChain skips this handler for every other event (cheaper chains). Plain class
    # attributes, not properties: LangChain reads one per handler and event.
    ignore_chain = True
    ignore_retriever = True
    ignore_agent = True
    ignore_retry = True
    ignore_custom_event = True
    ignore_llm = False
    ignore_chat_model = False

    @staticmethod
    def _check_pricing(pricing: Mapping[str, Pricing] | None) -> dict[str, Pricing]:
        out: dict[str, Pricing] = {}
        for model, price in (pricing or {}).items():
            if not isinstance(price, Pricing):
                raise InvalidInputError(f"pricing[{model!r}] must be a Pricing, got {type(price).__name__}")
            out[model.strip().lower()] = price
        return out

    # -- run start: price, reserve (or refuse) ------------------------------------------------------------
    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID,
                            parent_run_id: UUID | None = None, tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._start(run_id, serialized, messages, None, tags, metadata, kwargs)

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._start(run_id, serialized, None, prompts, tags, metadata, kwargs)

    def _start(self, run_id: UUID, serialized: dict[str, Any] | None, messages: Any, prompts: Any,
               tags: list[str] | None, metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> None:
        params = kwargs.get("invocation_params") or {}
        if params.get(SELF_RECORDING_FLAG):
            return
        ledger = _either(self.ledger, current_ledger())
        if ledger is None or is_metered(ledger):  # no ledger, or the caller's guard records this call
            return
        key = (run_id, root_ledger_id(ledger))
        with _CLAIMS_LOCK:
            holder = _CLAIMS.get(key)
            if holder is not None and holder is not self and (self.ambient or not holder.ambient):
                return  # another handler meters this run for this ledger
            _CLAIMS[key] = self
        if holder is not None and holder is not self:
            holder._forget(run_id)
        metadata = dict(metadata) if metadata else {}
        model = self.model or model_name(params, serialized, metadata) or self.default_model
        call = _Call(time.perf_counter(), ledger, model, (messages, prompts), key, list(tags) if tags else [], metadata)
        try:
            call.reservation = self._reserve(call, params)
        except BaseException:
            self._unclaim(key)
            raise
        call.task = _current_task()
        with self._lock:
            self._calls[run_id] = call
            if call.task is not None:
                runs = self._task_runs.get(call.task)
                if runs is None:
                    runs = self._task_runs[call.task] = set()
                    call.task.add_done_callback(self._task_done)
                runs.add(run_id)
        call.started = time.perf_counter()

    def _reserve(self, call: _Call, params: Mapping[str, Any]) -> Reservation | None:
        """Price the call now (unknown price: raise before it runs) and reserve it on the ledger's budget."""
        ledger = call.ledger
        unpriced_ok = self.allow_unpriced or ledger.allow_unpriced
        if call.model is None and not unpriced_ok:
            if ledger.budget is None:
                return None  # nothing to reserve: the response's model name is priced at the end
            raise UnknownPriceError(
                "cannot tell which model this LangChain run calls before it runs (no model name in its invocation "
                "params or ls_model_name), so its cost cannot be checked against the budget; pass "
                "LedgerCallbackHandler(default_model=..., pricing=...) or allow_unpriced=True")
        pricing = self.pricing.get(call.model.strip().lower()) if call.model else None
        if ledger.budget is None:  # still priced now, so that an unknown price fails before the call
            price_with_source(call.model, pricing, ledger.prices if ledger.prices is not None else default_table(),
                              unpriced_ok)
            return None
        call.tokens_in = tokens_in = count_tokens(call.prompt, call.model)
        return ledger.reserve_call(call.model, tokens_in, output_tokens(params, self.default_max_tokens),
                                   pricing=pricing, allow_unpriced=True if unpriced_ok else None,
                                   label=f"{self._stage_of(call)}/{call.model}")

    # -- run end: commit or release -------------------------------------------------------------------------
    def _pop(self, run_id: UUID) -> _Call | None:
        with self._lock:
            call = self._calls.pop(run_id, None)
            if call is not None and call.task is not None:
                self._task_runs.get(call.task, set()).discard(run_id)
        if call is not None:
            self._unclaim(call.key)
        return call

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A cancelled ``ainvoke`` ends its task without ``on_llm_error``: release what its runs still hold.

        Only on cancellation: a task that ends normally may have started a run that goes on in another task
        (an ``astream`` stepped one ``__anext__`` per task), and errors reach ``on_llm_error`` anyway.
        """
        with self._lock:
            leftover = self._task_runs.pop(task, set())
        if not task.cancelled():
            return
        for run_id in leftover:
            call = self._pop(run_id)
            if call is not None and call.reservation is not None:
                call.reservation.release()

    def _unclaim(self, key: tuple[UUID, str]) -> None:
        with _CLAIMS_LOCK:
            if _CLAIMS.get(key) is self:
                del _CLAIMS[key]

    def _forget(self, run_id: UUID) -> None:
        """Give a run up to another handler: release what was reserved for it."""
        call = self._pop(run_id)  # the claim is the other handler's by now: _pop leaves it
        if call is not None and call.reservation is not None:
            call.reservation.release()

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        call = self._pop(run_id)
        if call is not None and call.reservation is not None:
            call.reservation.release()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None,
                   tags: list[str] | None = None, **kwargs: Any) -> None:
        call = self._pop(run_id)
        if call is None:  # not ours: no ledger when it started, another handler meters it, or self-recorded
            return
        try:
            self._finish(call, response)
        finally:
            if call.reservation is not None:
                call.reservation.release()  # a no-op once the entry committed it

    def _finish(self, call: _Call, response: LLMResult) -> None:
        seconds = time.perf_counter() - call.started
        llm_output = response.llm_output or {}
        rows = response.generations
        generations = rows[0] if len(rows) == 1 else [g for row in rows for g in row]
        if self.skip_recorded and any(self._already_recorded(g) for g in generations):
            return
        reported = [g for g in generations if isinstance(g, ChatGeneration) and _usage(g)]
        if reported:
            for generation in reported:
                meta = generation.message.response_metadata or {}
                model = first_model(meta, llm_output) or call.model
                self._record(call, model, seconds, usage=_usage(generation))
                seconds = 0.0  # one call's latency, not one per generation
        else:
            usage = llm_output.get("token_usage") or llm_output.get("usage")
            meta = next((g.message.response_metadata for g in generations if isinstance(g, ChatGeneration)), {})
            model = first_model(meta, llm_output) or call.model
            answer = "".join(g.text for g in generations)
            self._record(call, model, seconds, usage=usage, output_text=answer)

    @staticmethod
    def _already_recorded(generation: Any) -> bool:
        message = getattr(generation, "message", None)
        meta = getattr(message, "response_metadata", None) or {}
        info = generation.generation_info or {}
        return bool(meta.get("ledger_entry_id") or info.get("ledger_entry_id"))

    def _record(self, call: _Call, model: str | None, seconds: float, *, usage: Any,
                output_text: str | None = None) -> None:
        model = self.model or model or self.default_model
        unpriced_ok = self.allow_unpriced or call.ledger.allow_unpriced
        if model is None:
            # A nameless model (a test double, a custom Runnable) met by the ambient meter of a ledger without a
            # budget is kept as an explicit unpriced entry (priced=False); with a budget it was refused at start.
            lenient = self.ambient and call.ledger.budget is None
            unpriced_ok = unpriced_ok or lenient
            if not unpriced_ok:
                raise UnknownPriceError(
                    "LedgerCallbackHandler could not tell which model ran (no model name in response_metadata, "
                    "llm_output or the invocation params); pass default_model=... (and pricing=...) or "
                    "allow_unpriced=True")
            model = "unknown"
        tokens_in, tokens_out = parse_usage(usage)
        counted = tokens_in is None or tokens_out is None
        if tokens_in is None and call.tokens_in is not None and model == call.model:
            tokens_in = call.tokens_in  # counted before the call for the estimate: not counted twice
        meta = call.metadata
        metadata: dict[str, Any] = {k: meta[k] for k in _ENTRY_METADATA if k in meta} if meta else {}
        metadata["source"] = "langchain"
        reservation = call.reservation if call.reservation is not None and call.reservation.state == "open" else None
        call.ledger.record_call(
            stage=self._stage_of(call), model=model, component=self.component or model, seconds=seconds,
            input_tokens=tokens_in, output_tokens=tokens_out,
            input_text=call.prompt if tokens_in is None else None,
            output_text=(output_text or "") if tokens_out is None else None,
            pricing=self.pricing.get(model.strip().lower()) if self.pricing else None,
            allow_unpriced=True if unpriced_ok else None,
            decision_id=meta.get("rag_decision_id"), metadata=metadata, estimated=counted,
            reservation=reservation)

    def _stage_of(self, call: _Call) -> str:
        stage = call.metadata.get("ledger_stage")
        if isinstance(stage, str) and stage:
            return stage
        for tag in call.tags:
            if tag.startswith("ledger_stage:") and len(tag) > len("ledger_stage:"):
                return tag.split(":", 1)[1]
        return self.stage

    @property
    def open_runs(self) -> int:
        """Calls started and not yet ended (for tests and leak checks)."""
        return len(self._calls)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(ledger={'ambient' if self.ledger is None else self.ledger.ledger_id!r}, "
                f"stage={self.stage!r}, allow_unpriced={self.allow_unpriced})")


def ledger_callbacks(ledger: CostLedger | None = None, **kwargs: Any) -> Sequence[LedgerCallbackHandler]:
    """``[LedgerCallbackHandler(ledger, **kwargs)]``, ready for ``config={"callbacks": ...}``."""
    return [LedgerCallbackHandler(ledger, **kwargs)]


__all__ = ["LedgerCallbackHandler", "ledger_callbacks", "GENERATION_STAGE", "SELF_RECORDING_FLAG"]
