"""`RoutingDecisionEvent`: a routing decision as a LlamaIndex instrumentation event.

:class:`~rag_routing.integrations.llamaindex.selector.RoutingSelector` dispatches one per selection and
:class:`~rag_routing.integrations.llamaindex.query_engine.RoutedRAGQueryEngine` one per stage of the pipeline's
trace, through the ``rag_routing.integrations.llamaindex`` dispatcher (propagating to the root dispatcher), so
any event handler (Arize Phoenix, Langfuse, a custom ``BaseEventHandler``) sees what was chosen, why and at
what predicted quality and cost.

Example:
    >>> from llama_index.core.instrumentation import get_dispatcher
    >>> from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    >>> class Seen(BaseEventHandler):
    ...     events: list = []
    ...     def handle(self, event, **kwargs):
    ...         if isinstance(event, RoutingDecisionEvent):
    ...             self.events.append((event.stage, event.choice))
    >>> seen = Seen()
    >>> get_dispatcher().add_event_handler(seen)
    >>> _ = emit_decision(stage="generator", choice="small", reason="cheapest that suffices", query="2+2?")
    >>> seen.events
    [('generator', 'small')]
    >>> get_dispatcher().event_handlers.remove(seen)
"""

from __future__ import annotations

from typing import Any

import llama_index.core.instrumentation as instrument
from llama_index.core.instrumentation.events import BaseEvent

dispatcher = instrument.get_dispatcher("rag_routing.integrations.llamaindex")


class RoutingDecisionEvent(BaseEvent):
    """A router chose ``choice`` for ``query`` at ``stage``.

    Attributes:
        stage: ``"routing"`` for a selector, else the RAG stage (``"retriever"``, ``"generator"``, ...).
        choice: the chosen candidate / option.
        reason: the router's sentence.
        query: the routed text.
        decision_id: id shared with the cost ledger's entries.
        router: the router's short name (``None`` for a fixed option).
        choice_index: the index of the chosen tool (selectors only).
        decision: the full :class:`~rag_routing.decision.RoutingDecision` as a dict (predicted quality and cost
            per candidate, λ, budget), if a router decided.
        cost_usd: what the stage's choice cost according to the ledger (pipeline events only).
    """

    stage: str
    choice: str
    reason: str
    query: str = ""
    decision_id: str | None = None
    router: str | None = None
    choice_index: int | None = None
    decision: dict[str, Any] | None = None
    cost_usd: float | None = None

    @classmethod
    def class_name(cls) -> str:
        return "RoutingDecisionEvent"


def emit_decision(**fields: Any) -> RoutingDecisionEvent:
    """Build a :class:`RoutingDecisionEvent` from ``fields`` and dispatch it; returns it."""
    event = RoutingDecisionEvent(**fields)
    dispatcher.event(event)
    return event


__all__ = ["RoutingDecisionEvent", "emit_decision", "dispatcher"]
