"""`RoutingSelector`: any rag_routing Router as a LlamaIndex selector (``RouterQueryEngine``, ``RouterRetriever``).

LlamaIndex routers ask a *selector* which of their tools (query engines, retrievers) should handle a query.
``RoutingSelector`` answers with a rag_routing Router and the shared rule ``argmax S - λC`` s.t. ``C <= B``:

* tools map to router candidates by ``ToolMetadata.name`` (or by an explicit ``choice_names`` list, one
  candidate per tool index, or a ``{tool name: candidate}`` mapping);
* the mapping must be exact: a tool that is not a router candidate, a candidate with no tool, an unnamed tool
  or a duplicate is an :class:`~rag_routing.errors.UnknownCandidateError` (LlamaIndex's LLM selector turns a
  bad answer into index -1 and silently runs the *last* engine; this one never misroutes);
* each selection is recorded in the ambient cost ledger (stage ``"routing"``: the router's time and own cost,
  with the decision id) and dispatched as a
  :class:`~rag_routing.integrations.llamaindex.events.RoutingDecisionEvent`;
* ``aselect`` routes in a worker thread (the router embeds the query), keeping the event loop free.

:func:`router_query_engine` / :func:`router_retriever` build ``RouterQueryEngine`` / ``RouterRetriever`` with
this selector (LlamaIndex otherwise resolves ``Settings.llm``, i.e. OpenAI, at construction, although only
multi-selections use it). Inside them every LLM / embedding call of the chosen engine or retriever is recorded
with the selection's decision id (the ledger's ``breakdown("decision_id")`` bills each route).

Example:
    >>> import numpy as np
    >>> from llama_index.core.tools import ToolMetadata
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.similarity import KNNRouter
    >>> ds = RoutingDataset(["integrate x squared", "solve the integral of sin x", "hello there", "hi, how are you"],
    ...                     ["small", "large"], [[0, 1], [0, 1], [1, 1], [1, 1]], np.tile([0.001, 0.02], (4, 1)))
    >>> selector = RoutingSelector(KNNRouter(k=1, prior=0.0, featurizer="tfidf", lam=10.0).fit(ds))
    >>> tools = [ToolMetadata(name="small", description="cheap model"),
    ...          ToolMetadata(name="large", description="strong model")]
    >>> selector.select(tools, "integrate x cubed").ind, selector.select(tools, "hello, how are you?").ind
    (1, 0)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.base.base_selector import BaseSelector, SelectorResult, SingleSelection
from llama_index.core.prompts.mixin import PromptDictType
from llama_index.core.schema import QueryBundle
from llama_index.core.tools.types import ToolMetadata

from rag_routing.errors import InvalidInputError, NotFittedError, UnknownCandidateError
from rag_routing.integrations.llamaindex.budget_gate import decision_slot, fill_decision, install
from rag_routing.integrations.llamaindex.events import emit_decision
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import ROUTING

#: Ledger stage of a router's own decision.
ROUTING_STAGE = ROUTING


class RoutingSelector(BaseSelector):
    """A LlamaIndex ``BaseSelector`` that routes with a rag_routing Router (module docstring).

    Args:
        router: a fitted rag_routing Router whose candidates name the tools.
        choice_names: candidate name per tool index (a list), or ``{tool name: candidate}``; default: the
            tools' own names.
        lam, budget: passed to the router (``None``: the router's own).
    """

    def __init__(self, router: Any, *, choice_names: Sequence[str] | Mapping[str, str] | None = None,
                 lam: float | None = None, budget: float | None = None):
        if not callable(getattr(router, "route_one", None)):
            raise InvalidInputError(f"router must be a rag_routing Router (with route_one), got "
                                    f"{type(router).__name__}")
        if isinstance(choice_names, str) or not (choice_names is None or isinstance(choice_names, (Sequence, Mapping))):
            raise InvalidInputError("choice_names must be a list of candidate names or a {tool name: candidate} dict")
        self.router = router
        self.choice_names = (dict(choice_names) if isinstance(choice_names, Mapping)
                             else list(choice_names) if choice_names is not None else None)
        self.lam, self.budget = lam, budget
        self._checked: tuple[tuple[str | None, ...], tuple[str, ...]] | None = None

    # -- PromptMixin (a selector without prompts) ----------------------------------------------------------
    def _get_prompts(self) -> dict[str, Any]:
        return {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        """Nothing to update: this selector has no prompt."""

    # -- mapping tools to candidates ------------------------------------------------------------------------
    @property
    def candidates(self) -> list[str]:
        if not getattr(self.router, "is_fitted", True):
            raise NotFittedError(f"the router {getattr(self.router, 'name', type(self.router).__name__)!r} of "
                                 "RoutingSelector is not fitted; fit it before selecting")
        return [str(c) for c in getattr(self.router, "candidates_", [])]

    def candidate_names(self, choices: Sequence[ToolMetadata]) -> list[str]:
        """The router candidate of each tool, checked both ways (see module docstring)."""
        tool_names = tuple(getattr(c, "name", None) for c in choices)
        candidates = self.candidates
        if self._checked == (tool_names, tuple(candidates)):
            return self._names_for(choices)
        names = self._names_for(choices)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        unknown = [n for n in names if n not in candidates]
        missing = [c for c in candidates if c not in names]
        if duplicates or unknown or missing:
            raise UnknownCandidateError(
                f"tools {names} and router candidates {candidates} do not match: not candidates {unknown}, "
                f"candidates without a tool {missing}, duplicates {duplicates}. Name the tools after the "
                "candidates or pass choice_names=[...] / {tool name: candidate}")
        self._checked = (tool_names, tuple(candidates))
        return names

    def _names_for(self, choices: Sequence[ToolMetadata]) -> list[str]:
        if isinstance(self.choice_names, list):
            if len(self.choice_names) != len(choices):
                raise UnknownCandidateError(f"choice_names has {len(self.choice_names)} names for {len(choices)} "
                                            f"tools; give one candidate per tool, in tool order")
            return list(self.choice_names)
        names = []
        for i, choice in enumerate(choices):
            name = getattr(choice, "name", None)
            if not name:
                raise UnknownCandidateError(f"tool {i} has no name ({getattr(choice, 'description', '')[:60]!r}); "
                                            "name it after a router candidate or pass choice_names")
            if isinstance(self.choice_names, dict):
                if name not in self.choice_names:
                    raise UnknownCandidateError(f"tool {name!r} is not in choice_names {sorted(self.choice_names)}")
                name = self.choice_names[name]
            names.append(str(name))
        return names

    # -- selecting --------------------------------------------------------------------------------------------
    def route(self, query: str) -> Any:
        """Route ``query`` and record the decision in the ambient ledger; returns the RoutingDecision."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(f"RoutingSelector needs a non-empty query string, got {query!r}")
        started = time.perf_counter()
        decision = self.router.route_one(query, lam=self.lam, budget=self.budget)
        seconds = time.perf_counter() - started
        ledger = current_ledger()
        if ledger is not None:
            router_name = getattr(self.router, "name", type(self.router).__name__)
            ledger.record(ROUTING_STAGE, f"router/{router_name}", seconds=seconds, cost_usd=decision.router_cost_usd,
                          decision_id=decision.decision_id,
                          metadata={"choice": decision.candidate, "node": "RoutingSelector"})
        return decision

    def _select(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        names = self.candidate_names(choices)
        decision = self.route(query.query_str)
        if decision.candidate not in names:  # defensive: candidate_names checked the mapping both ways
            raise UnknownCandidateError(f"router chose {decision.candidate!r}, which no tool maps to ({names})")
        index = names.index(decision.candidate)
        fill_decision(decision.decision_id)  # the chosen engine's calls carry this decision id
        emit_decision(stage=ROUTING_STAGE, choice=decision.candidate, reason=decision.reason,
                      query=query.query_str, decision_id=decision.decision_id, router=decision.router,
                      choice_index=index, decision=decision.to_dict())
        return SelectorResult(selections=[SingleSelection(index=index, reason=decision.reason)])

    async def _aselect(self, choices: Sequence[ToolMetadata], query: QueryBundle) -> SelectorResult:
        return await asyncio.to_thread(self._select, choices, query)

    def __repr__(self) -> str:
        return f"RoutingSelector({self.router!r})"


def _placeholder_llm(llm: Any) -> Any:
    # RouterQueryEngine / RouterRetriever resolve Settings.llm (OpenAI by default) when built, but use it only
    # to summarise multi-selections, which RoutingSelector never makes: a MockLLM avoids needing a key.
    if llm is not None:
        return llm
    from llama_index.core.llms import MockLLM

    return MockLLM()


def router_query_engine(router: Any, query_engine_tools: Sequence[Any], *, llm: Any = None,
                        **selector_kwargs: Any) -> Any:
    """``RouterQueryEngine(selector=RoutingSelector(router, ...), query_engine_tools=...)`` without an LLM key;
    the chosen engine's calls carry the decision id."""
    from llama_index.core.query_engine import RouterQueryEngine

    class DecisionRouterQueryEngine(RouterQueryEngine):
        def _query(self, query_bundle: QueryBundle) -> Any:
            with decision_slot():
                return super()._query(query_bundle)

        async def _aquery(self, query_bundle: QueryBundle) -> Any:
            with decision_slot():
                return await super()._aquery(query_bundle)

    install()
    return DecisionRouterQueryEngine(selector=RoutingSelector(router, **selector_kwargs),
                                     query_engine_tools=list(query_engine_tools), llm=_placeholder_llm(llm))


def router_retriever(router: Any, retriever_tools: Sequence[Any], *, llm: Any = None, **selector_kwargs: Any) -> Any:
    """``RouterRetriever(selector=RoutingSelector(router, ...), retriever_tools=...)`` without an LLM key;
    the chosen retriever's embedding calls carry the decision id."""
    from llama_index.core.retrievers import RouterRetriever

    class DecisionRouterRetriever(RouterRetriever):
        def _retrieve(self, query_bundle: QueryBundle) -> Any:
            with decision_slot():
                return super()._retrieve(query_bundle)

        async def _aretrieve(self, query_bundle: QueryBundle) -> Any:
            with decision_slot():
                return await super()._aretrieve(query_bundle)

    install()
    return DecisionRouterRetriever(selector=RoutingSelector(router, **selector_kwargs),
                                   retriever_tools=list(retriever_tools), llm=_placeholder_llm(llm))


__all__ = ["RoutingSelector", "router_query_engine", "router_retriever", "ROUTING_STAGE"]
