"""LangGraph integration: routers and stage routers as graph nodes and conditional edges, one ledger per graph.

* :class:`RouteNode` — a router (or stage router) as a node that keeps its decision in the graph state, with
  ``edge`` (the conditional edge: the next node's name) and ``branch`` (a branch whose ledger entries carry the
  decision id).
* :func:`add_routed_branches` — the router node, one node per candidate and the conditional edges in one call.

Names load lazily (PEP 562): importing this package imports LangGraph / langchain-core only when a name is used.
"""

from __future__ import annotations

from rag_routing.lazy_exports import lazy_exports

_EXPORTS: dict[str, str] = {
    "RouteNode": "rag_routing.integrations.langgraph.nodes",
    "add_routed_branches": "rag_routing.integrations.langgraph.nodes",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
