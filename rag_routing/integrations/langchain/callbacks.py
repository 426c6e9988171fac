"""`LedgerCallbackHandler`: every LangChain chat model / LLM call priced into the rag_routing cost ledger.

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

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, get_buffer_string
from langchain_core.outputs import ChatGeneration, LLMResult

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError, UnknownPriceError
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import GENERATION
from rag_routing.ledger.tokens import parse_usage

#: Default ledger stage of an LLM call seen by the handler.
GENERATION_STAGE = GENERATION
_MODEL_KEYS = ("model_name", "model", "model_id", "deployment_name")


def _either(ledger: CostLedger | None, fallback: CostLedger | None) -> CostLedger | None:
    # not ``ledger or fallback``: an empty CostLedger is falsy (it has __len__)
    return ledger if ledger is not None else fallback


@dataclass
class _Call:
    started: float
    ledger: CostLedger | None
    model: str | None
    prompt: str
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def _usage(generation: ChatGeneration) -> Any:
    return getattr(generation.message, "usage_metadata", None)


def _first_model(*sources: Mapping[str, Any] | None) -> str | None:
    for source in sources:
        if not source:
            continue
        for key in _MODEL_KEYS:
            value = source.get(key)
            if isinstance(value, str) and value.strip():
                return value
    return None


class LedgerCallbackHandler(BaseCallbackHandler):
    """Record every LLM call of a LangChain run in a :class:`~rag_routing.ledger.CostLedger` (module docstring).

    Args:
        ledger: record here (default: the ambient ledger when the call starts; nothing is recorded without one).
        pricing: ``{model: Pricing}`` for models the price table does not know (or to override it).
        allow_unpriced: record unknown models at an explicit $0 (entries marked ``priced=False``) instead of
            raising :class:`~rag_routing.errors.UnknownPriceError`.
        stage: ledger stage when the run's metadata does not name one.
        component: ledger component (default: the model name).
        default_model: model name used when neither the response nor the run names one.
        model: bill every call as this model, whatever the response reports (e.g. a fine-tune priced as its
            base model).
        skip_recorded: skip calls whose message carries ``response_metadata["ledger_entry_id"]``.
    """

    run_inline = True  # keep the caller's context (its ambient ledger) and ordering, also under ainvoke
    raise_error = True  # an unknown price must reach the caller, not a log line

    def __init__(self, ledger: CostLedger | None = None, *, pricing: Mapping[str, Pricing] | None = None,
                 allow_unpriced: bool = False, stage: str = GENERATION_STAGE, component: str | None = None,
                 default_model: str | None = None, model: str | None = None, skip_recorded: bool = True):
        super().__init__()
        if ledger is not None and not isinstance(ledger, CostLedger):
            raise InvalidInputError(f"ledger must be a CostLedger or None, got {type(ledger).__name__}")
        if not isinstance(stage, str) or not stage:
            raise InvalidInputError(f"stage must be a non-empty string, got {stage!r}")
        self.pricing = self._check_pricing(pricing)
        self.ledger = ledger
        self.allow_unpriced = allow_unpriced
        self.stage = stage
        self.component = component
        self.default_model = default_model
        self.model = model
        self.skip_recorded = skip_recorded
        self._calls: dict[UUID, _Call] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _check_pricing(pricing: Mapping[str, Pricing] | None) -> dict[str, Pricing]:
        out: dict[str, Pricing] = {}
        for model, price in (pricing or {}).items():
            if not isinstance(price, Pricing):
                raise InvalidInputError(f"pricing[{model!r}] must be a Pricing, got {type(price).__name__}")
            out[model.strip().lower()] = price
        return out

    # -- run start ----------------------------------------------------------------------------------------
    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *, run_id: UUID,
                            parent_run_id: UUID | None = None, tags: list[str] | None = None,
                            metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        prompt = "\n".join(get_buffer_string(m) for m in messages)
        self._start(run_id, serialized, prompt, tags, metadata, kwargs)

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._start(run_id, serialized, "\n".join(prompts), tags, metadata, kwargs)

    def _start(self, run_id: UUID, serialized: dict[str, Any] | None, prompt: str, tags: list[str] | None,
               metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> None:
        metadata = dict(metadata or {})
        model = _first_model(kwargs.get("invocation_params"), (serialized or {}).get("kwargs"))
        model = model or metadata.get("ls_model_name") or None
        ledger = _either(self.ledger, current_ledger())
        call = _Call(time.perf_counter(), ledger, model, prompt, list(tags or []), metadata)
        with self._lock:
            self._calls[run_id] = call

    # -- run end ------------------------------------------------------------------------------------------
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._calls.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None,
                   tags: list[str] | None = None, **kwargs: Any) -> None:
        with self._lock:
            call = self._calls.pop(run_id, None)
        seconds = 0.0 if call is None else time.perf_counter() - call.started
        if call is None:  # the start was not seen (handler attached late): still record what we can
            call = _Call(time.perf_counter(), _either(self.ledger, current_ledger()), None, "", list(tags or []), {})
        ledger = _either(call.ledger, current_ledger())
        if ledger is None:
            return
        llm_output = response.llm_output or {}
        generations = [g for row in response.generations for g in row]
        reported = [g for g in generations if isinstance(g, ChatGeneration) and _usage(g)]
        if self.skip_recorded and any(self._already_recorded(g) for g in generations):
            return
        if reported:
            for generation in reported:
                meta = generation.message.response_metadata or {}
                model = _first_model(meta, llm_output) or call.model
                self._record(ledger, call, model, seconds, usage=_usage(generation))
                seconds = 0.0  # one call's latency, not one per generation
        else:
            usage = llm_output.get("token_usage") or llm_output.get("usage")
            meta = next((g.message.response_metadata for g in generations if isinstance(g, ChatGeneration)), {})
            model = _first_model(meta, llm_output) or call.model
            answer = "".join(g.text for g in generations)
            self._record(ledger, call, model, seconds, usage=usage, output_text=answer)

    @staticmethod
    def _already_recorded(generation: Any) -> bool:
        message = getattr(generation, "message", None)
        meta = getattr(message, "response_metadata", None) or {}
        info = generation.generation_info or {}
        return bool(meta.get("ledger_entry_id") or info.get("ledger_entry_id"))

    def _record(self, ledger: CostLedger, call: _Call, model: str | None, seconds: float, *, usage: Any,
                output_text: str | None = None) -> None:
        model = self.model or model or self.default_model
        if model is None:
            if not self.allow_unpriced:
                raise UnknownPriceError(
                    "LedgerCallbackHandler could not tell which model ran (no model name in response_metadata, "
                    "llm_output or the invocation params); pass default_model=... (and pricing=...) or "
                    "allow_unpriced=True")
            model = "unknown"
        tokens_in, tokens_out = parse_usage(usage)
        counted = tokens_in is None or tokens_out is None
        metadata: dict[str, Any] = {k: call.metadata[k] for k in ("rag_stage", "rag_choice", "rag_route")
                                    if k in call.metadata}
        metadata["source"] = "langchain"
        ledger.record_call(
            stage=self._stage_of(call), model=model, component=self.component or model, seconds=seconds,
            usage=usage, input_text=call.prompt if tokens_in is None else None,
            output_text=(output_text or "") if tokens_out is None else None,
            pricing=self.pricing.get(model.strip().lower()), allow_unpriced=True if self.allow_unpriced else None,
            decision_id=call.metadata.get("rag_decision_id"), metadata=metadata, estimated=counted)

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
        return (f"LedgerCallbackHandler(ledger={'ambient' if self.ledger is None else self.ledger.ledger_id!r}, "
                f"stage={self.stage!r}, allow_unpriced={self.allow_unpriced})")


def ledger_callbacks(ledger: CostLedger | None = None, **kwargs: Any) -> Sequence[LedgerCallbackHandler]:
    """``[LedgerCallbackHandler(ledger, **kwargs)]``, ready for ``config={"callbacks": ...}``."""
    return [LedgerCallbackHandler(ledger, **kwargs)]


__all__ = ["LedgerCallbackHandler", "ledger_callbacks", "GENERATION_STAGE"]
