"""`PromptRouter`: an LLM reads the candidates' descriptions and picks one through validated structured output.

Shen et al. (2023), HuggingGPT, and Ning et al. (2024): the router LLM is given the candidates' names and
descriptions and the query, and answers ``{"choice": "<name>", "reason": "..."}``. Estimates nothing
numerically: the LLM's judgement of which description fits the query is the decision.

Every reply is validated (pydantic): code fences and text around the JSON are tolerated; an unknown name, a
number (unless ``allow_index=True``, then ``index_base``-based and range-checked) or an unreadable reply never
becomes a route. It takes the declared ``fallback`` (``decision.fallback`` is True and the reason quotes the
reply) or raises :class:`~rag_routing.errors.NoRouteError` — unlike LlamaIndex's LLM selector, which turns an
unparsable or 0-based answer into index -1 and silently routes to the last engine. The routing call is recorded
in the ambient ledger (``stage="routing"``, the decision's id) and its cost is ``RoutingDecision.router_cost_usd``.

Example (a scripted model stands in for a paid API; a LocalLLM or any LangChain chat model works the same):
    >>> from rag_routing.candidates import Pricing
    >>> router = PromptRouter(lambda prompt: '```json\\n{"choice": "coder", "reason": "a Python question"}\\n```',
    ...                       [("chat", "small talk and general questions"), ("coder", "writes and fixes code")],
    ...                       model="router-llm", pricing=Pricing(input_per_mtok=0.0, output_per_mtok=0.0))
    >>> d = router.route("Why does my Python loop never end?")
    >>> d.candidate, d.fallback
    ('coder', False)
    >>> PromptRouter(lambda p: '{"choice": "gpt-5"}', [("chat", "..."), ("coder", "...")], fallback="chat",
    ...              model="router-llm", allow_unpriced=True).route("hi").reason
    "router reply rejected (unknown candidate 'gpt-5'); fell back to 'chat'"
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from rag_routing.candidates import Candidate
from rag_routing.decision import RoutingDecision
from rag_routing.errors import BudgetExceededError, InvalidInputError, NoRouteError, UnknownCandidateError
from rag_routing.ledger.stage_names import ROUTING
from rag_routing.ledger.tokens import count_tokens
from rag_routing.routers.base import validate_queries
from rag_routing.routers.judges.llm_client import LLMClient

SYSTEM = ("You are a router. Choose the one candidate best suited to answer the user's query, from this list "
          "(name: description):\n{listing}\n\nReply with JSON only, no other text: "
          '{{"choice": "<exact candidate name>", "reason": "<one short sentence>"}}')
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class RouteChoice(BaseModel):
    """The structured reply: ``choice`` (a name, or a number when indices are allowed) and a ``reason``."""

    model_config = ConfigDict(extra="ignore")

    choice: StrictStr | StrictInt | None = None  # strict: true / 1.5 are not silently read as an index
    index: StrictInt | None = None
    reason: str = ""


class PromptRouter:
    """LLM-as-router over described candidates, with validated output (see module docstring).

    Args:
        llm: the routing model (LocalLLM, a LangChain chat model, or a callable prompt -> text).
        candidates: :class:`~rag_routing.candidates.Candidate` objects (their ``description``), ``(name,
            description)`` pairs, or a mapping name -> description.
        fallback: candidate name taken when the reply is invalid (or the routing call is refused by the
            budget); ``None`` raises :class:`NoRouteError`.
        allow_index: accept a numeric choice (``index_base``-based, default 1) as well as names.
        max_tokens, temperature: how the router LLM is called.
        expected_output_tokens: output length assumed for the candidates' cost estimates in the decision.
        client_options: ``model=``, ``pricing=``, ``allow_unpriced=`` for the ledger (see ``LLMClient``).
    """

    name = "prompt"

    def __init__(self, llm: Any, candidates: Sequence[Candidate | tuple[str, str]] | Mapping[str, str], *,
                 fallback: str | None = None, allow_index: bool = False, index_base: int = 1, max_tokens: int = 96,
                 temperature: float = 0.0, system_prompt: str = SYSTEM, expected_output_tokens: int = 256,
                 **client_options: Any):
        items = list(candidates.items()) if isinstance(candidates, Mapping) else list(candidates)
        self.candidates = [c if isinstance(c, Candidate) else Candidate(name=str(c[0]), description=str(c[1]))
                           for c in items]
        self.names = [c.name for c in self.candidates]
        if not self.names or len(set(self.names)) != len(self.names):
            raise InvalidInputError(f"PromptRouter needs candidates with unique names, got {self.names}")
        if fallback is not None and fallback not in self.names:
            raise UnknownCandidateError(f"fallback {fallback!r} is not a candidate; candidates: {self.names}")
        self.fallback, self.allow_index, self.index_base = fallback, allow_index, int(index_base)
        self.max_tokens, self.temperature = max_tokens, temperature
        self.system_prompt, self.expected_output_tokens = system_prompt, expected_output_tokens
        self.client = LLMClient(llm, stage=ROUTING, component="prompt_router", **client_options)

    def __repr__(self) -> str:
        return f"PromptRouter({self.names}, fallback={self.fallback!r}, model={self.client.model!r})"

    def messages(self, query: str) -> list[dict[str, str]]:
        """The routing prompt for ``query``."""
        listing = "\n".join(f"{i + self.index_base}. {c.name}: {c.description or '(no description)'}"
                            if self.allow_index else f"- {c.name}: {c.description or '(no description)'}"
                            for i, c in enumerate(self.candidates))
        return [{"role": "system", "content": self.system_prompt.format(listing=listing)},
                {"role": "user", "content": query}]

    # -- validation -----------------------------------------------------------------------------------------
    def parse(self, text: str) -> tuple[str, str]:
        """(candidate name, reason) from a reply; :class:`InvalidInputError` saying what is wrong with it."""
        obj = _first_json_object(text)
        if obj is None:
            bare = text.strip().strip("`'\".").strip()
            match = self._by_name(bare)
            if match is not None:
                return match, ""
            raise InvalidInputError("the reply holds no JSON object and is not a candidate name")
        try:
            reply = RouteChoice.model_validate(obj)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise InvalidInputError(f"the JSON does not match {{'choice', 'reason'}} ({problem})") from None
        value = reply.choice if reply.choice is not None else reply.index
        if value is None:
            raise InvalidInputError("the JSON has no 'choice'")
        if isinstance(value, str) and not (self.allow_index and value.strip().isdigit()):
            match = self._by_name(value)
            if match is None:
                raise InvalidInputError(f"unknown candidate {value!r}")
            return match, reply.reason
        if not self.allow_index:
            raise InvalidInputError(f"a numeric choice ({value!r}) is not accepted; reply with a candidate name")
        position = int(value) - self.index_base
        if not 0 <= position < len(self.names):
            raise InvalidInputError(f"index {value!r} is out of range {self.index_base}.."
                                    f"{len(self.names) - 1 + self.index_base}")
        return self.names[position], reply.reason

    def _by_name(self, value: str) -> str | None:
        if value in self.names:
            return value
        folded = {n.strip().casefold(): n for n in self.names}
        return folded.get(value.strip().casefold())

    # -- routing --------------------------------------------------------------------------------------------
    def route(self, query: str) -> RoutingDecision:
        """Ask the router LLM for ``query``; a validated :class:`RoutingDecision` (or the declared fallback)."""
        query = validate_queries(query)[0]
        decision_id = uuid.uuid4().hex
        try:
            reply = self.client.complete(self.messages(query), max_tokens=self.max_tokens,
                                         temperature=self.temperature, decision_id=decision_id)
        except BudgetExceededError as exc:
            return self._fallback_decision(query, decision_id, f"the routing call was refused ({exc})", "", 0.0)
        return self._decide(query, decision_id, reply.text, reply.cost_usd)

    async def aroute(self, query: str) -> RoutingDecision:
        """:meth:`route` with an async model call."""
        query = validate_queries(query)[0]
        decision_id = uuid.uuid4().hex
        try:
            reply = await self.client.acomplete(self.messages(query), max_tokens=self.max_tokens,
                                                temperature=self.temperature, decision_id=decision_id)
        except BudgetExceededError as exc:
            return self._fallback_decision(query, decision_id, f"the routing call was refused ({exc})", "", 0.0)
        return self._decide(query, decision_id, reply.text, reply.cost_usd)

    def route_batch(self, queries: Sequence[str]) -> list[RoutingDecision]:
        """:meth:`route` for each query."""
        return [self.route(q) for q in validate_queries(queries)]

    def _decide(self, query: str, decision_id: str, text: str, cost: float) -> RoutingDecision:
        try:
            name, reason = self.parse(text)
        except InvalidInputError as exc:
            return self._fallback_decision(query, decision_id, f"router reply rejected ({exc})", text, cost)
        return self._decision(query, decision_id, name, f"the router LLM chose {name!r}: {reason}".strip(": "),
                              text, cost, fallback=False)

    def _fallback_decision(self, query: str, decision_id: str, why: str, text: str, cost: float) -> RoutingDecision:
        if self.fallback is None:
            raise NoRouteError(f"{why}; reply: {text[:200]!r}. Declare PromptRouter(fallback=<name>) to route such "
                               "queries to a default candidate")
        return self._decision(query, decision_id, self.fallback, f"{why}; fell back to {self.fallback!r}", text, cost,
                              fallback=True)

    def _decision(self, query: str, decision_id: str, name: str, reason: str, text: str, cost: float, *,
                  fallback: bool) -> RoutingDecision:
        tokens = count_tokens(query)
        costs = {c.name: c.pricing.cost(tokens, self.expected_output_tokens) for c in self.candidates
                 if c.pricing is not None}
        return RoutingDecision(candidate=name, index=self.names.index(name),
                               quality={n: float(n == name) for n in self.names}, cost=costs, lam=0.0, budget=None,
                               reason=reason, router=self.name, router_cost_usd=cost, fallback=fallback,
                               decision_id=decision_id, metadata={"reply": text[:500]})


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (inside a code fence first), or ``None``."""
    decoder = json.JSONDecoder()
    for source in [*_FENCE.findall(text), text]:
        for start in (i for i, ch in enumerate(source) if ch == "{"):
            try:
                value, _ = decoder.raw_decode(source, start)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


__all__ = ["PromptRouter", "RouteChoice"]
