"""Generator stage: which LLM answers (survey §4: LLM routing proper), with its price in the trace.

An option of :class:`GeneratorRouter` is an LLM: an object with ``generate(messages, max_new_tokens=...,
temperature=...)`` returning a :class:`~rag_routing.llms.generation.Generation` (or anything with ``.text``, or a
str) — :class:`~rag_routing.llms.local.LocalLLM` is one — or a plain callable ``messages -> str``. Each is
wrapped in an :class:`LLMOption`, which reads ``state.messages`` (or builds direct ones), generates
deterministically, and writes ``state.answer``. The LLM records its own call in the ambient ledger (LocalLLM
does, at $0); a plain callable is recorded here from counted tokens under its ``model``/``pricing``.

Budgets refuse before the call: every call reserves its estimate on the ambient ledger's budget first (input
tokens counted from the actual messages, output tokens = the call's ``max_new_tokens``) and raises
:class:`~rag_routing.errors.BudgetExceededError` before the LLM runs; the real usage is committed after.

Streaming: inside a stream (:mod:`rag_routing.stages.streaming`, e.g. ``RoutedRAG.stream``) an LLM with
``stream_chunks`` (LocalLLM, PricedLLM) sends each piece to the stream as it is generated.

:class:`PricedLLM` runs one model but bills it as another, named model: the offline demo prices the local
SmolLM2-135M as ``gpt-4o`` to show an honest bill comparison without a key. Its ledger entries and trace say
so (``metadata["hypothetical_price"] = True``, ``metadata["actual_model"]``).

Example:
    >>> from rag_routing.stages.state import RAGState
    >>> stage = GeneratorRouter({"echo": lambda messages: "Lima"}, pricing={"echo": None})
    >>> stage.invoke(RAGState(query="Capital of Peru?")).answer
    'Lima'
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping
from typing import Any

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.ledger.pricing import ZERO_PRICE, default_table
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import GENERATION
from rag_routing.ledger.tokens import count_tokens
from rag_routing.stages.adapters import adapt_llm
from rag_routing.stages.base import StageChoice, StageRouter
from rag_routing.stages.prompt import DIRECT, extract_answer
from rag_routing.stages.state import RAGState
from rag_routing.stages.streaming import StreamControl, current_stream

GENERATION_STAGE = GENERATION


def _text_of(result: Any) -> str:
    if isinstance(result, str):
        return result
    text = getattr(result, "text", None)
    if isinstance(text, str):
        return text
    content = getattr(result, "content", None)  # a chat message
    if isinstance(content, str):
        return content
    raise InvalidInputError(f"the LLM returned {type(result).__name__}; expected a str or an object with .text")


def call_llm(llm: Any, messages: list[dict[str, str]], max_new_tokens: int, *, model: str | None = None,
             component: str = "llm", pricing: Pricing | None = None) -> str:
    """The text of one greedy call of ``llm``.

    An object with ``generate`` records itself in the ambient ledger (LocalLLM does); a plain callable
    ``messages -> str`` is recorded here, tokens counted with tiktoken, priced with ``pricing`` (``None``: an
    explicit $0, as a local call).
    """
    if callable(getattr(llm, "generate", None)):
        return _text_of(llm.generate(messages, max_new_tokens=max_new_tokens, temperature=0.0))
    ledger = current_ledger()
    if ledger is None:
        return _text_of(llm(messages))
    with ledger.guard(stage=GENERATION_STAGE, model=model or component, component=component,
                      input_text=_prompt_text(messages), est_output_tokens=max_new_tokens,
                      pricing=pricing or ZERO_PRICE, metadata={"local": pricing is None}) as call:
        raw = _text_of(llm(messages))
        call.record(output_text=raw)
    return raw


def _prompt_text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    return "\n".join(str(m["content"]) if isinstance(m, Mapping) else str(m[1]) for m in messages)


class PricedLLM:
    """Run ``llm`` but record each call priced as the model ``price_as`` (a hypothetical bill).

    Args:
        llm: the model that really runs (e.g. :class:`~rag_routing.llms.local.LocalLLM`). If it has a
            ``record_to_ledger`` attribute, a shallow copy with recording switched off is used, so the call is
            recorded once, here.
        price_as: a model of the price table (e.g. ``"gpt-4o"``), or pass ``pricing``.
        name: the model name shown in traces (default ``"<actual> priced as <price_as>"``).
        pricing: explicit prices (overrides the table look-up of ``price_as``).
    """

    def __init__(self, llm: Any, price_as: str, *, name: str | None = None, pricing: Pricing | None = None):
        if not callable(getattr(llm, "generate", None)):
            raise InvalidInputError("PricedLLM wraps an object with generate(messages, ...)")
        self.llm = llm
        if hasattr(llm, "record_to_ledger"):
            self.llm = copy.copy(llm)
            self.llm.record_to_ledger = False
        self.price_as = price_as
        info = default_table().find(price_as)
        if pricing is None and info is None:
            raise InvalidInputError(f"no price known for {price_as!r}; pass pricing=Pricing(...)")
        self.pricing = pricing or info.pricing  # type: ignore[union-attr]
        self.actual_model = str(getattr(llm, "model_name", type(llm).__name__))
        self.model_name = name or f"{self.actual_model} priced as {price_as}"

    def _reserve(self, ledger: Any, messages: Any, kwargs: dict[str, Any]) -> tuple[Any, int]:
        """Reserve the call's estimate (BudgetExceededError before the model runs); (reservation, input tokens)."""
        out = kwargs.get("max_new_tokens") or getattr(self.llm, "max_new_tokens", None) or 256
        tokens_in = count_tokens(_prompt_text(messages), self.price_as)
        estimate = ledger.estimate_call(self.price_as, tokens_in, int(out), pricing=self.pricing)
        return ledger.reserve(*estimate.amounts().as_tuple(), label=f"{GENERATION_STAGE}/{self.price_as}"), tokens_in

    def _record(self, ledger: Any, reservation: Any, input_tokens: int, output_tokens: int, seconds: float, *,
                estimated: bool = False, finish_reason: str | None = None) -> Any:
        metadata = {"hypothetical_price": True, "actual_model": self.actual_model, "price_as": self.price_as}
        if finish_reason is not None:
            metadata["finish_reason"] = finish_reason
        return ledger.record_call(  # the model ran, so its size is known now (energy)
            stage=GENERATION_STAGE, model=self.price_as, component=self.model_name, input_tokens=input_tokens,
            output_tokens=output_tokens, seconds=seconds, pricing=self.pricing,
            params_billion=getattr(self.llm, "params_billion", None), metadata=metadata, estimated=estimated,
            reservation=reservation)

    def generate(self, messages: Any, **kwargs: Any) -> Any:
        """One call: the estimate is reserved first (BudgetExceededError before the model runs)."""
        ledger = current_ledger()
        if ledger is None:
            return self.llm.generate(messages, **kwargs)
        reservation, _ = self._reserve(ledger, messages, kwargs)
        try:
            generation = self.llm.generate(messages, **kwargs)
        except BaseException:
            reservation.release()
            raise
        self._record(ledger, reservation, generation.input_tokens, generation.output_tokens, generation.seconds)
        return generation

    def stream_chunks(self, messages: Any, **kwargs: Any) -> Any:
        """Stream the wrapped LLM's pieces (it needs ``stream_chunks``); reserved now, recorded at the end (or
        with the tokens produced so far when the stream is closed early)."""
        ledger = current_ledger()
        if ledger is None:
            return self.llm.stream_chunks(messages, **kwargs)
        reservation, tokens_in = self._reserve(ledger, messages, kwargs)
        try:
            chunks = self.llm.stream_chunks(messages, **kwargs)
        except BaseException:
            reservation.release()
            raise
        return self._billed_chunks(chunks, ledger, reservation, tokens_in)

    def _billed_chunks(self, chunks: Any, ledger: Any, reservation: Any, tokens_in: int) -> Any:
        produced, started = 0, time.perf_counter()
        try:
            for chunk in chunks:
                produced += len(getattr(chunk, "tokens", ()) or ())
                final = getattr(chunk, "final", None)
                if final is not None:
                    self._record(ledger, reservation, final.input_tokens, final.output_tokens, final.seconds)
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()
            if reservation.state == "open":  # abandoned or failed: bill what ran, release the rest
                if produced:
                    self._record(ledger, reservation, tokens_in, produced, time.perf_counter() - started,
                                 estimated=True, finish_reason="cancelled")
                else:
                    reservation.release()

    async def agenerate(self, messages: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(self.generate, messages, **kwargs)

    def __repr__(self) -> str:
        return f"PricedLLM({self.actual_model!r} priced as {self.price_as!r})"


def stream_text(llm: Any, messages: list[dict[str, str]], max_new_tokens: int, control: StreamControl) -> str:
    """Generate with ``llm.stream_chunks``, handing each piece to ``control``; returns the full text."""
    chunks = llm.stream_chunks(messages, max_new_tokens=max_new_tokens, temperature=0.0)
    pieces: list[str] = []
    final = None
    try:
        for chunk in chunks:
            control.emit(chunk.text)  # StreamAbandoned once the consumer left: the finally records what ran
            pieces.append(chunk.text)
            final = chunk.final if chunk.final is not None else final
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            close()
    return final.text if final is not None else "".join(pieces)


class LLMOption:
    """An LLM as a generator-stage option: ``state.messages`` in, ``state.answer`` out.

    Args:
        llm: an object with ``generate(messages, max_new_tokens=, temperature=)`` or a callable
            ``messages -> str``.
        name: the option name.
        max_new_tokens: default answer budget (``state.metadata["max_new_tokens"]`` overrides it).
        model: model id for traces and, for plain callables, the ledger (default: ``llm.model_name``).
        pricing: for plain callables (which record nothing themselves): price of their counted tokens;
            ``None`` records them at an explicit $0 as a local call.
    """

    def __init__(self, llm: Any, name: str, *, max_new_tokens: int = 32, model: str | None = None,
                 pricing: Pricing | None = None):
        llm = adapt_llm(llm)  # a LangChain chat model / LlamaIndex LLM gets its generate() adapter
        if not (callable(getattr(llm, "generate", None)) or callable(llm)):
            raise InvalidInputError(f"generator option {name!r} must have generate(messages, ...) or be callable")
        self.llm, self.name = llm, name
        self.max_new_tokens = int(max_new_tokens)
        self.model = model or str(getattr(llm, "model_name", name))
        self.pricing = pricing
        self.records_itself = callable(getattr(llm, "generate", None))

    def price_info(self) -> dict[str, Any]:
        """Model name and $/1M tokens for the trace."""
        pricing = getattr(self.llm, "pricing", None) or self.pricing
        if pricing is None and isinstance(getattr(self.llm, "model_name", None), str):
            info = default_table().find(self.llm.model_name)
            pricing = info.pricing if info is not None else None
        out: dict[str, Any] = {"model": self.model}
        if pricing is not None:
            out["usd_per_mtok_in"], out["usd_per_mtok_out"] = pricing.input_per_mtok, pricing.output_per_mtok
        if isinstance(self.llm, PricedLLM):
            out.update(hypothetical_price=True, actual_model=self.llm.actual_model, price_as=self.llm.price_as)
        return out

    def _messages(self, state: RAGState) -> list[dict[str, str]]:
        return state.messages or DIRECT.messages(state)

    def _budget(self, state: RAGState) -> int:
        return int(state.metadata.get("max_new_tokens") or self.max_new_tokens)

    def _finish(self, state: RAGState, messages: list[dict[str, str]], raw: str) -> RAGState:
        answer = extract_answer(raw, state.metadata.get("answer_prefix"))
        return state.evolve(messages=messages, answer=answer,
                            metadata={**state.metadata, "raw_answer": raw, "generator_model": self.model})

    def invoke(self, state: RAGState) -> RAGState:
        messages = self._messages(state)
        control = current_stream()
        if control is not None and callable(getattr(self.llm, "stream_chunks", None)):
            return self._finish(state, messages, stream_text(self.llm, messages, self._budget(state), control))
        raw = call_llm(self.llm, messages, self._budget(state), model=self.model, component=self.name,
                       pricing=self.pricing)
        return self._finish(state, messages, raw)

    async def ainvoke(self, state: RAGState) -> RAGState:
        agenerate = getattr(self.llm, "agenerate", None)
        if self.records_itself and callable(agenerate) and current_stream() is None:
            messages = self._messages(state)
            raw = _text_of(await agenerate(messages, max_new_tokens=self._budget(state), temperature=0.0))
            return self._finish(state, messages, raw)
        return await asyncio.to_thread(self.invoke, state)

    def __repr__(self) -> str:
        return f"LLMOption({self.name!r}, model={self.model!r})"


class GeneratorRouter(StageRouter):
    """Chooses the LLM that answers (the trace step names the model and its price).

    Args:
        llms: ``{name: LLM}`` (objects with ``generate`` or callables ``messages -> str``, LangChain chat models
            and LlamaIndex LLMs; an :class:`LLMOption` is used as is).
        router: any Router over those names (e.g. fitted with :meth:`fit_from_outcomes` on per-query
            correctness and per-query $), or ``None`` for ``default``.
        max_new_tokens: default answer budget (the prompt stage may raise it, e.g. for chain-of-thought).
        pricing: ``{name: Pricing or None}`` for plain callables (see :class:`LLMOption`).
        default, lam, budget, name: see :class:`~rag_routing.stages.base.StageRouter`.
    """

    stage = "generator"

    def __init__(self, llms: Mapping[str, Any], *, router: Any = None, default: str | None = None,
                 lam: float | None = None, budget: float | None = None, max_new_tokens: int = 32,
                 pricing: Mapping[str, Pricing | None] | None = None, name: str | None = None):
        if not isinstance(llms, Mapping) or not llms:
            raise InvalidInputError("GeneratorRouter needs a non-empty mapping {name: llm}")
        pricing = dict(pricing or {})
        options = {key: llm if isinstance(llm, LLMOption) else
                   LLMOption(llm, key, max_new_tokens=max_new_tokens, pricing=pricing.get(key))
                   for key, llm in llms.items()}
        super().__init__(options, router=router, default=default, lam=lam, budget=budget, name=name)

    def _run(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        result, reported, extra = super()._run(choice, state)
        return result, reported, {**extra, **self.options[choice.choice].price_info()}  # type: ignore[union-attr]

    async def _arun(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        result, reported, extra = await super()._arun(choice, state)
        return result, reported, {**extra, **self.options[choice.choice].price_info()}  # type: ignore[union-attr]

    @property
    def models(self) -> dict[str, str]:
        """``{option: model id}``."""
        return {key: option.model for key, option in self.options.items()}  # type: ignore[union-attr]


def as_generator(llm: Any, name: str | None = None, **kwargs: Any) -> GeneratorRouter:
    """A one-option generator stage around ``llm`` (a :class:`GeneratorRouter` is returned as is)."""
    if isinstance(llm, GeneratorRouter):
        return llm
    llm = adapt_llm(llm)
    key = name or str(getattr(llm, "model_name", "llm"))
    return GeneratorRouter({key: llm}, **kwargs)


__all__ = ["GeneratorRouter", "LLMOption", "PricedLLM", "as_generator", "call_llm", "GENERATION_STAGE"]
