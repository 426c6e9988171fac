"""One way to call any LLM from a judge, a cascade or an LLM-as-router, with its cost in the ledger.

:class:`LLMClient` wraps three kinds of model behind one ``complete`` / ``acomplete``:

* our framework-free :class:`~rag_routing.llms.local.LocalLLM` (``generate`` / ``agenerate``);
* any LangChain chat model, duck-typed: an object with ``invoke(messages, **options)`` (and ``ainvoke``) that
  returns a message with ``.content``, ``.response_metadata`` and ``.usage_metadata`` (LangChain is never
  imported here);
* a plain callable ``fn(prompt: str) -> str | message | Generation`` (sync or ``async def``).

Every call is normalised to a :class:`Completion` (text, tokens, token log-probabilities, top log-probabilities,
usage) and goes through the ambient ledger (:func:`~rag_routing.ledger.scope.current_ledger`): its estimate
(prompt tokens + ``max_tokens``) is *reserved first* — :class:`~rag_routing.errors.BudgetExceededError` before
the model runs — then the real usage is recorded with the given ``stage``, ``component`` and ``decision_id``
(default: the one of an enclosing :func:`decision_scope`).
A model that records itself (``response_metadata["ledger_entry_id"]``, as ``LocalChatModel`` does) is not
recorded twice. Without an ambient ledger the cost is still computed (a private ledger prices it).

Log-probabilities are read from OpenAI's shape (``response_metadata["logprobs"]["content"]``), the shape
``ChatOpenAI(...).bind(logprobs=True)`` and our ``LocalChatModel`` return.

Example:
    >>> from rag_routing.candidates import Pricing
    >>> from rag_routing.ledger import ledger_scope
    >>> client = LLMClient(lambda prompt: "Paris", model="echo", pricing=Pricing(input_per_mtok=1.0,
    ...                    output_per_mtok=2.0), component="demo")
    >>> with ledger_scope() as ledger:
    ...     done = client.complete("Capital of France?", max_tokens=4)
    >>> done.text, ledger.entries[0].stage, ledger.entries[0].component
    ('Paris', 'judge', 'demo')
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.ledger.guard import metered_call
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.tokens import count_tokens, parse_usage

Messages = Sequence[Mapping[str, str]]
_LC_ROLES = {"system": "system", "user": "human", "assistant": "ai"}
_DECISION: contextvars.ContextVar[str | None] = contextvars.ContextVar("rag_routing_decision_id", default=None)


@contextmanager
def decision_scope(decision_id: str | None) -> Iterator[None]:
    """Calls made inside the block (a cascade's judges, say) are recorded with this ``decision_id``."""
    token = _DECISION.set(decision_id)
    try:
        yield
    finally:
        _DECISION.reset(token)


def current_decision_id() -> str | None:
    """The decision id of the enclosing :func:`decision_scope`, if any."""
    return _DECISION.get()


@dataclass(frozen=True)
class Completion:
    """A model's reply, whatever produced it.

    Attributes:
        text: the reply text.
        tokens, token_logprobs: the generated tokens and their log-probabilities (empty when not returned).
        top_logprobs: per token, the most likely alternatives ``(token, logprob)``, most likely first.
        input_tokens, output_tokens: usage as reported (``None`` when unknown).
        model: the model name.
        seconds: wall-clock seconds of the call.
        cost_usd: what the ledger charged for it (0.0 when it was not called through a client).
        ledger_entry_id: the ledger entry of the call, if recorded.
    """

    text: str
    tokens: tuple[str, ...] = ()
    token_logprobs: tuple[float, ...] = ()
    top_logprobs: tuple[tuple[tuple[str, float], ...], ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    model: str | None = None
    seconds: float = 0.0
    cost_usd: float = 0.0
    ledger_entry_id: str | None = None

    @property
    def has_logprobs(self) -> bool:
        return len(self.token_logprobs) > 0

    def token_spans(self) -> list[tuple[int, int]]:
        """Character span of each token in ``"".join(tokens)`` (usually ``text``)."""
        spans, start = [], 0
        for token in self.tokens:
            spans.append((start, start + len(token)))
            start += len(token)
        return spans


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # LangChain content blocks
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content
                       if isinstance(b, (str, Mapping)))
    return str(content)


def _openai_logprobs(payload: Any) -> tuple[tuple[str, ...], tuple[float, ...],
                                            tuple[tuple[tuple[str, float], ...], ...]]:
    content = payload.get("content") if isinstance(payload, Mapping) else payload
    if not content:
        return (), (), ()
    tokens, logprobs, tops = [], [], []
    for item in content:
        get = item.get if isinstance(item, Mapping) else lambda k, d=None, i=item: getattr(i, k, d)
        tokens.append(str(get("token")))
        logprobs.append(float(get("logprob")))
        alternatives = get("top_logprobs") or []
        tops.append(tuple((str(a["token"] if isinstance(a, Mapping) else a.token),
                           float(a["logprob"] if isinstance(a, Mapping) else a.logprob)) for a in alternatives))
    return tuple(tokens), tuple(logprobs), tuple(tops) if any(tops) else ()


def as_completion(reply: Any, *, model: str | None = None) -> Completion:
    """Normalise a model's reply: a :class:`Completion`, a ``Generation``, a LangChain message, an OpenAI
    chat-completion dict, or a plain string."""
    if isinstance(reply, Completion):
        return reply
    if isinstance(reply, str):
        return Completion(text=reply, model=model)
    if hasattr(reply, "token_logprobs") and hasattr(reply, "text"):  # rag_routing.llms.Generation
        tops = tuple(tuple((str(t), float(lp)) for t, lp in row) for row in (reply.top_logprobs or []))
        return Completion(text=reply.text, tokens=tuple(reply.tokens), token_logprobs=tuple(reply.token_logprobs),
                          top_logprobs=tops, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens,
                          model=getattr(reply, "model", None) or model, seconds=float(getattr(reply, "seconds", 0.0)),
                          ledger_entry_id=getattr(reply, "ledger_entry_id", None))
    if hasattr(reply, "content") and hasattr(reply, "response_metadata"):  # LangChain AIMessage (duck-typed)
        meta = reply.response_metadata or {}
        tokens, logprobs, tops = _openai_logprobs(meta.get("logprobs"))
        usage_in, usage_out = parse_usage(getattr(reply, "usage_metadata", None) or meta.get("token_usage")
                                          or meta.get("usage"))
        return Completion(text=_message_text(reply.content), tokens=tokens, token_logprobs=logprobs,
                          top_logprobs=tops, input_tokens=usage_in, output_tokens=usage_out,
                          model=meta.get("model_name") or meta.get("model") or model,
                          ledger_entry_id=meta.get("ledger_entry_id"))
    if isinstance(reply, Mapping) and "choices" in reply:  # an OpenAI chat completion as a dict
        choice = reply["choices"][0]
        tokens, logprobs, tops = _openai_logprobs(choice.get("logprobs"))
        usage_in, usage_out = parse_usage(reply.get("usage"))
        return Completion(text=_message_text(choice["message"]["content"]), tokens=tokens, token_logprobs=logprobs,
                          top_logprobs=tops, input_tokens=usage_in, output_tokens=usage_out,
                          model=reply.get("model") or model)
    raise InvalidInputError(f"cannot read a model reply of type {type(reply).__name__}; return a str, a "
                            "LangChain message, a rag_routing Generation or an OpenAI chat-completion dict")


def normalize_prompt(prompt: str | Messages) -> list[dict[str, str]]:
    """``prompt`` as ``[{"role", "content"}]`` with roles system / user / assistant."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError("the prompt is empty")
        return [{"role": "user", "content": prompt}]
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    if not messages or any(m["role"] not in _LC_ROLES for m in messages):
        raise InvalidInputError(f"messages need roles among {sorted(_LC_ROLES)}; got {[m['role'] for m in messages]}")
    return messages


def prompt_text(messages: Messages) -> str:
    """The messages as one string (for plain callables and token estimates)."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages)


class LLMClient:
    """Call a LocalLLM, a LangChain chat model or a callable; reserve, then record its cost (see module doc).

    Args:
        llm: the model (see module docstring).
        model: name for prices and the ledger (default: the model's ``model_name`` / ``model`` attribute).
        pricing: explicit prices; default: the ledger's price table (an unknown model is an error unless
            ``allow_unpriced=True``). A LocalLLM is priced at an explicit $0.
        stage, component: how the calls appear in the ledger (e.g. ``"judge"``, the judge's name).
        pass_options: pass ``max_tokens``, ``temperature``, ``seed``, ``logprobs``, ``top_logprobs`` and
            ``stop`` to ``invoke``; set False for chat models that reject them (their own bound settings apply).
    """

    def __init__(self, llm: Any, *, model: str | None = None, pricing: Pricing | None = None,
                 allow_unpriced: bool | None = None, params_billion: float | None = None, stage: str = "judge",
                 component: str | None = None, pass_options: bool = True):
        if isinstance(llm, LLMClient):  # re-wrapping keeps what the given client knew unless overridden
            pricing = pricing or (llm.pricing if model is None else None)  # a new model name: its own price
            model = model or llm.model
            allow_unpriced = llm.allow_unpriced if allow_unpriced is None else allow_unpriced
            params_billion = params_billion if params_billion is not None else llm.params_billion
            pass_options = pass_options and llm.pass_options
            llm = llm.llm
        self.llm = llm
        self.kind = _kind(llm)
        self.model = model or _model_name(llm)
        self.pricing = pricing
        self.allow_unpriced = allow_unpriced
        self.params_billion = params_billion
        self.stage, self.component, self.pass_options = stage, component, pass_options
        if self.kind == "local":
            from rag_routing.ledger.pricing import ZERO_PRICE

            self.pricing = pricing or ZERO_PRICE
            self._local = copy.copy(llm)
            self._local.record_to_ledger = False  # recorded here, with this client's stage and decision id

    def __repr__(self) -> str:
        return f"LLMClient({self.kind}, model={self.model!r}, stage={self.stage!r})"

    def with_component(self, stage: str | None = None, component: str | None = None) -> LLMClient:
        """A copy recording under another stage / component."""
        clone = copy.copy(self)
        clone.stage, clone.component = stage or self.stage, component or self.component
        return clone

    # -- the call ---------------------------------------------------------------------------------------------
    def complete(self, prompt: str | Messages, *, max_tokens: int = 64, temperature: float | None = None,
                 seed: int | None = None, logprobs: bool = False, top_logprobs: int = 0,
                 stop: Sequence[str] | None = None, decision_id: str | None = None,
                 stage: str | None = None, component: str | None = None) -> Completion:
        """One call; :class:`~rag_routing.errors.BudgetExceededError` before it runs if it cannot be afforded."""
        messages = normalize_prompt(prompt)
        ledger, reservation, started = self._reserve(messages, max_tokens, stage, component)
        options = _options(max_tokens, temperature, seed, logprobs, top_logprobs, stop)
        try:
            if self.kind == "local":
                reply = self._local.generate(messages, **_local_options(options))
            elif self.kind == "chat":
                with metered_call(ledger):  # recorded here: LangChain's ambient meter skips this run
                    reply = self.llm.invoke(_lc_messages(messages), **(options if self.pass_options else {}))
            else:
                reply = self.llm(prompt_text(messages))
                if inspect.isawaitable(reply):
                    if inspect.iscoroutine(reply):
                        reply.close()  # never awaited: close it rather than leak a warning
                    raise InvalidInputError("this callable is async: use acomplete() (or the async API)")
        except BaseException:
            reservation.release()
            raise
        return self._record(ledger, reservation, reply, messages, started, decision_id, stage, component)

    async def acomplete(self, prompt: str | Messages, *, max_tokens: int = 64, temperature: float | None = None,
                        seed: int | None = None, logprobs: bool = False, top_logprobs: int = 0,
                        stop: Sequence[str] | None = None, decision_id: str | None = None,
                        stage: str | None = None, component: str | None = None) -> Completion:
        """:meth:`complete` without blocking the event loop (``ainvoke`` / ``agenerate`` / ``async def``)."""
        messages = normalize_prompt(prompt)
        ledger, reservation, started = self._reserve(messages, max_tokens, stage, component)
        options = _options(max_tokens, temperature, seed, logprobs, top_logprobs, stop)
        try:
            if self.kind == "local":
                reply = await self._local.agenerate(messages, **_local_options(options))
            elif self.kind == "chat":
                kwargs = options if self.pass_options else {}
                with metered_call(ledger):  # recorded here: LangChain's ambient meter skips this run
                    if hasattr(self.llm, "ainvoke"):
                        reply = await self.llm.ainvoke(_lc_messages(messages), **kwargs)
                    else:
                        reply = await asyncio.to_thread(self.llm.invoke, _lc_messages(messages), **kwargs)
            else:
                reply = self.llm(prompt_text(messages))
                if inspect.isawaitable(reply):
                    reply = await reply
        except BaseException:
            reservation.release()
            raise
        return self._record(ledger, reservation, reply, messages, started, decision_id, stage, component)

    # -- ledger -----------------------------------------------------------------------------------------------
    def estimate_usd(self, prompt: str | Messages, max_tokens: int = 64) -> float:
        """Expected US $ of a call (prompt tokens counted, ``max_tokens`` output): what is reserved."""
        text = prompt_text(normalize_prompt(prompt))
        ledger = _ambient()
        return ledger.estimate_call(self.model, count_tokens(text, self.model), max_tokens, pricing=self.pricing,
                                    params_billion=self.params_billion, allow_unpriced=self.allow_unpriced).cost_usd

    def _reserve(self, messages: list[dict[str, str]], max_tokens: int, stage: str | None,
                 component: str | None) -> tuple[CostLedger, Any, float]:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidInputError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
        ledger = _ambient()
        estimate = ledger.estimate_call(self.model, count_tokens(prompt_text(messages), self.model), max_tokens,
                                        pricing=self.pricing, params_billion=self.params_billion,
                                        allow_unpriced=self.allow_unpriced)
        label = f"{stage or self.stage}/{component or self.component or self.model}"
        return ledger, ledger.reserve(*estimate.amounts().as_tuple(), label=label), time.perf_counter()

    def _record(self, ledger: CostLedger, reservation: Any, reply: Any, messages: list[dict[str, str]],
                started: float, decision_id: str | None, stage: str | None, component: str | None) -> Completion:
        seconds = time.perf_counter() - started
        try:
            done = as_completion(reply, model=self.model)
        except BaseException:
            reservation.commit()  # the call ran: charge its estimate rather than nothing
            raise
        if done.ledger_entry_id is not None:  # the model recorded itself (e.g. LocalChatModel)
            reservation.release()
            cost = next((e.cost_usd for e in reversed(ledger.entries) if e.entry_id == done.ledger_entry_id), 0.0)
            return replace(done, seconds=seconds, cost_usd=cost)
        usage = None
        if done.input_tokens is not None and done.output_tokens is not None:
            usage = {"input_tokens": done.input_tokens, "output_tokens": done.output_tokens}
        params = self.params_billion
        if params is None and self.kind == "local":
            params = self._local.params_billion
        entry = ledger.record_call(
            stage=stage or self.stage, model=self.model, component=component or self.component, usage=usage,
            input_text=prompt_text(messages), output_text=done.text, seconds=seconds, pricing=self.pricing,
            params_billion=params, decision_id=decision_id or _DECISION.get(), allow_unpriced=self.allow_unpriced,
            metadata={"client": self.kind}, reservation=reservation)
        return replace(done, seconds=seconds, cost_usd=entry.cost_usd, ledger_entry_id=entry.entry_id,
                       model=done.model or self.model)


def _ambient() -> CostLedger:
    ledger = current_ledger()  # not `or`: an empty ledger is falsy (it has a length)
    return ledger if ledger is not None else CostLedger()


def _kind(llm: Any) -> str:
    from rag_routing.llms.local import LocalLLM

    if isinstance(llm, LocalLLM):
        return "local"
    if hasattr(llm, "invoke"):
        return "chat"
    if callable(llm):
        return "callable"
    raise InvalidInputError(f"{type(llm).__name__} is not a model: pass a LocalLLM, a LangChain chat model "
                            "(an object with invoke()) or a callable prompt -> text")


def _model_name(llm: Any) -> str:
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(llm, attribute, None)
        if isinstance(value, str) and value:
            return value
    return getattr(llm, "__name__", type(llm).__name__)


def _options(max_tokens: int, temperature: float | None, seed: int | None, logprobs: bool, top_logprobs: int,
             stop: Sequence[str] | None) -> dict[str, Any]:
    if temperature is not None and (not math.isfinite(temperature) or temperature < 0):
        raise InvalidInputError(f"temperature must be >= 0, got {temperature!r}")
    options: dict[str, Any] = {"max_tokens": max_tokens}
    if temperature is not None:
        options["temperature"] = temperature
    if seed is not None:
        options["seed"] = seed
    if logprobs:
        options["logprobs"] = True
        options["top_logprobs"] = top_logprobs
    if stop:
        options["stop"] = list(stop)
    return options


def _local_options(options: dict[str, Any]) -> dict[str, Any]:
    local = dict(options)
    local["max_new_tokens"] = local.pop("max_tokens")
    local.setdefault("logprobs", False)
    return local


def _lc_messages(messages: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(_LC_ROLES[m["role"]], m["content"]) for m in messages]


__all__ = ["LLMClient", "Completion", "as_completion", "normalize_prompt", "prompt_text", "decision_scope",
           "current_decision_id"]
