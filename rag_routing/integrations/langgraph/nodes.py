"""Routers and stage routers as LangGraph nodes and conditional edges, one cost ledger for the whole graph.

:class:`RouteNode` wraps any rag_routing ``Router`` (``route_one``) or ``StageRouter`` (``choose``):

* called as a **node** (``builder.add_node("route", node)``) it reads the query from the graph state, decides
  with the shared rule (per-request ``lam`` / ``budget`` from ``config["configurable"]``; B capped at what the
  ambient budget has left), records the decision in the ambient ledger (stage ``"routing"``) and writes it into
  the state under ``decision_key`` (a plain dict: candidate, decision id, reason, ... — checkpointer-friendly);
* :meth:`RouteNode.edge` is the **conditional edge**: a callable returning the next node's name from the
  decision kept in the state (``builder.add_conditional_edges("route", node.edge, node.path_map)``);
* :meth:`RouteNode.branch` wraps a branch node so that every ledger entry it records (its LangChain model
  calls included) carries the decision id of the route that chose it.

:func:`add_routed_branches` does all three in one call. One ledger for the whole graph: run the compiled graph
inside ``ledger_scope(ledger)``; every chat model call in any node is metered and budgeted there (the ambient
LangChain meter), LangGraph's worker threads and tasks inherit the scope.

Example:
    >>> from typing import Any, TypedDict
    >>> from langgraph.graph import END, START, StateGraph
    >>> from rag_routing.ledger import ledger_scope
    >>> from rag_routing.routers.baselines import BestSingleRouter
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> ds = RoutingDataset(["a", "b"], ["small", "large"], [[1, 1], [1, 1]], [[0.001, 0.01], [0.001, 0.01]])
    >>> class State(TypedDict, total=False):
    ...     question: str
    ...     answer: str
    ...     route: dict[str, Any]
    >>> builder = StateGraph(State)
    >>> node = add_routed_branches(builder, "route", BestSingleRouter(lam=1.0).fit(ds), {
    ...     "small": lambda s: {"answer": "small"}, "large": lambda s: {"answer": "large"}}, then=END)
    >>> _ = builder.add_edge(START, "route")
    >>> with ledger_scope() as ledger:
    ...     out = builder.compile().invoke({"question": "hi"})
    >>> out["answer"], out["route"]["candidate"], ledger.entries[0].stage
    ('small', 'small', 'routing')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.base import coerce_to_runnable
from langchain_core.runnables.config import ensure_config
from langchain_core.runnables.utils import coro_with_context

from rag_routing.errors import InvalidInputError, NotFittedError, UnknownCandidateError
from rag_routing.integrations.langchain.configurable import routing_from_config
from rag_routing.integrations.langchain.router_runnable import _ledger_context
from rag_routing.ledger.scope import current_ledger
from rag_routing.ledger.stage_names import ROUTING

_QUERY_KEYS = ("question", "query", "input")


class RouteNode:
    """A router (or stage router) as a LangGraph node plus its conditional edge (module docstring).

    Args:
        router: a rag_routing ``Router`` (``route_one``) or ``StageRouter`` (``choose``).
        query_key: the state key holding the query (default: ``question``, ``query`` or ``input``; the last
            message's text under ``messages``), or a function ``state -> str``.
        decision_key: the state key the decision is written to.
        nodes: ``{candidate: node name}`` when the next nodes are not named after the candidates.
        lam, budget: λ and per-query $ budget (``None``: the router's own; ``configurable`` wins per request).
        name: the node name used in ledger entries (default: the router's name).
    """

    def __init__(self, router: Any, *, query_key: str | Callable[[Mapping[str, Any]], str] | None = None,
                 decision_key: str = "route", nodes: Mapping[str, str] | None = None, lam: float | None = None,
                 budget: float | None = None, name: str | None = None):
        self._is_stage = callable(getattr(router, "choose", None)) and hasattr(router, "options")
        if not self._is_stage and not callable(getattr(router, "route_one", None)):
            raise InvalidInputError(f"RouteNode needs a rag_routing Router (route_one) or StageRouter (choose), "
                                    f"got {type(router).__name__}")
        if not isinstance(decision_key, str) or not decision_key:
            raise InvalidInputError(f"decision_key must be a non-empty string, got {decision_key!r}")
        self.router = router
        self.query_key = query_key
        self.decision_key = decision_key
        self.nodes = dict(nodes or {})
        self.lam, self.budget = lam, budget
        self.name = name or getattr(router, "name", None) or type(router).__name__

    # -- the node -----------------------------------------------------------------------------------------
    @property
    def candidates(self) -> list[str]:
        """The names the router can choose."""
        if self._is_stage:
            return [str(c) for c in self.router.options]
        return [str(c) for c in getattr(self.router, "candidates_", [])]

    @property
    def path_map(self) -> dict[str, str]:
        """``{candidate: next node}`` for ``add_conditional_edges`` (also what ``get_graph()`` draws)."""
        return {c: self.nodes.get(c, c) for c in self.candidates}

    def query_of(self, state: Mapping[str, Any]) -> str:
        """The text the router sees for ``state``."""
        if callable(self.query_key):
            value = self.query_key(state)
        elif isinstance(self.query_key, str):
            if self.query_key not in state:
                raise InvalidInputError(f"the graph state has no {self.query_key!r} key (keys: {sorted(state)})")
            value = state[self.query_key]
        else:
            keys = [k for k in _QUERY_KEYS if k in state]
            if keys:
                value = state[keys[0]]
            elif state.get("messages"):
                value = getattr(state["messages"][-1], "content", state["messages"][-1])
            else:
                raise InvalidInputError(f"cannot find the query in the graph state keys {sorted(state)}; pass "
                                        "query_key=... to RouteNode")
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"the query to route must be a non-empty string, got {value!r}")
        return value

    def decide(self, state: Mapping[str, Any], config: RunnableConfig | None = None) -> dict[str, Any]:
        """Route ``state``, record the decision in the ambient ledger and return it as a state dict."""
        query = self.query_of(state)
        started = time.perf_counter()
        with routing_from_config(ensure_config(config)):
            if self._is_stage:
                choice = self.router.choose(query)
                decision = choice.decision
                candidate, reason = choice.choice, choice.reason
            else:
                if not getattr(self.router, "is_fitted", True):
                    raise NotFittedError(f"the router of node {self.name!r} is not fitted; fit it before routing")
                decision = self.router.route_one(query, lam=self.lam, budget=self.budget)
                candidate, reason = decision.candidate, decision.reason
        seconds = time.perf_counter() - started
        if candidate not in self.path_map:
            raise UnknownCandidateError(f"router {self.name!r} chose {candidate!r}, which has no node "
                                        f"({sorted(self.path_map)})")
        decision_id = getattr(decision, "decision_id", None)
        ledger = current_ledger()
        if ledger is not None:
            ledger.record(ROUTING, f"router/{self.name}", seconds=seconds,
                          cost_usd=getattr(decision, "router_cost_usd", 0.0), decision_id=decision_id,
                          metadata={"choice": candidate, "node": self.name, "source": "langgraph"})
        return {"candidate": candidate, "node": self.path_map[candidate], "decision_id": decision_id,
                "reason": reason, "router": self.name,
                "budget": getattr(decision, "budget", None), "lam": getattr(decision, "lam", None)}

    def __call__(self, state: Mapping[str, Any], config: RunnableConfig) -> dict[str, Any]:
        """The node: ``{decision_key: decision}`` (a state update)."""
        return {self.decision_key: self.decide(state, config)}

    # -- the edge -----------------------------------------------------------------------------------------
    def edge(self, state: Mapping[str, Any]) -> str:
        """The conditional edge: the chosen candidate, read from the decision kept in the state; LangGraph maps
        it to the next node through :attr:`path_map` (``add_conditional_edges(name, node.edge, node.path_map)``)."""
        decision = state.get(self.decision_key)
        if not isinstance(decision, Mapping) or "candidate" not in decision:
            raise InvalidInputError(f"no routing decision under {self.decision_key!r} in the graph state; add "
                                    f"the RouteNode as a node before its edge")
        return str(decision["candidate"])

    def branch(self, node: Any) -> Runnable:
        """``node`` (a function or Runnable) run so that its ledger entries carry the route's decision id."""
        runnable = coerce_to_runnable(node)
        key = self.decision_key

        def child(state: Mapping[str, Any], config: RunnableConfig) -> tuple[str | None, RunnableConfig]:
            decision = state.get(key) if isinstance(state, Mapping) else None
            decision_id = decision.get("decision_id") if isinstance(decision, Mapping) else None
            config = ensure_config(config)
            config["metadata"] = {**config.get("metadata", {}), "rag_decision_id": decision_id,
                                  "rag_route": (decision or {}).get("candidate"), "rag_router": self.name}
            return decision_id, config

        def run(state: Mapping[str, Any], config: RunnableConfig) -> Any:
            decision_id, config = child(state, config)
            if decision_id is None:
                return runnable.invoke(state, config)
            return _ledger_context(decision_id).run(runnable.invoke, state, config)

        async def arun(state: Mapping[str, Any], config: RunnableConfig) -> Any:
            decision_id, config = child(state, config)
            if decision_id is None:
                return await runnable.ainvoke(state, config)
            return await coro_with_context(runnable.ainvoke(state, config), _ledger_context(decision_id))

        return RunnableLambda(run, afunc=arun, name=runnable.get_name())

    def __repr__(self) -> str:
        return f"RouteNode({self.name!r}, decision_key={self.decision_key!r}, candidates={self.candidates})"


def add_routed_branches(builder: Any, name: str, router: Any, branches: Mapping[str, Any], *,
                        then: str | None = None, **node_kwargs: Any) -> RouteNode:
    """Add ``router`` as node ``name``, one node per candidate (``branches[candidate]``, named after it) and
    the conditional edges between them; each branch goes on to ``then`` (e.g. ``END``) when given.

    Returns the :class:`RouteNode` (its ``edge`` / ``path_map`` for further wiring).
    """
    node = RouteNode(router, name=node_kwargs.pop("node_name", None), **node_kwargs)
    missing = [c for c in node.candidates if c not in branches]
    extra = [b for b in branches if b not in node.candidates]
    if missing or extra:
        raise UnknownCandidateError(f"router {node.name!r} and the branches disagree: candidates without a branch "
                                    f"{missing}, branches that are not candidates {extra}")
    builder.add_node(name, node)
    for candidate, branch in branches.items():
        target = node.path_map[candidate]
        builder.add_node(target, node.branch(branch))
        if then is not None:
            builder.add_edge(target, then)
    builder.add_conditional_edges(name, node.edge, node.path_map)
    return node


__all__ = ["RouteNode", "add_routed_branches"]
