"""Per-request λ and budget through ``RunnableConfig``, the way LangChain users set options.

``chain.invoke(x, config={"configurable": {"lam": 5.0, "budget": 0.002}})`` (or
``chain.with_config(configurable={...})``) reaches every rag_routing router deciding under the run: a
:class:`~rag_routing.integrations.langchain.RouterRunnable` or any stage / pipeline runnable reads the keys and
opens :func:`rag_routing.decision.request_routing` around its decision. The nodes declare the keys in
``config_specs``, so ``chain.config_schema()`` lists them.

Example:
    >>> with routing_from_config({"configurable": {"lam": 2.0}}):
    ...     from rag_routing.decision import decide
    ...     decide([[0.7, 0.9]], [[0.001, 0.03]], ["small", "large"]).pop().lam
    2.0
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables.utils import ConfigurableFieldSpec

from rag_routing.decision import request_routing

LAM_KEY = "lam"
BUDGET_KEY = "budget"


def routing_options(config: Mapping[str, Any] | None) -> tuple[float | None, float | None]:
    """``(lam, budget)`` from ``config["configurable"]`` (``None`` where not given)."""
    configurable = (config or {}).get("configurable") or {}
    return configurable.get(LAM_KEY), configurable.get(BUDGET_KEY)


@contextmanager
def routing_from_config(config: Mapping[str, Any] | None) -> Iterator[None]:
    """Routers deciding inside the block use the config's per-request λ and budget (validated)."""
    lam, budget = routing_options(config)
    if lam is None and budget is None:
        yield
        return
    with request_routing(lam=lam, budget=budget):
        yield


def routing_config_specs() -> list[ConfigurableFieldSpec]:
    """The ``configurable`` keys rag_routing nodes read."""
    return [
        ConfigurableFieldSpec(id=LAM_KEY, annotation=float | None, name="λ",
                              description="cost weight of the routing rule argmax S - λC for this request",
                              default=None),
        ConfigurableFieldSpec(id=BUDGET_KEY, annotation=float | None, name="budget",
                              description="per-query budget B in US $ for this request (C <= B)", default=None),
    ]


__all__ = ["routing_options", "routing_from_config", "routing_config_specs", "LAM_KEY", "BUDGET_KEY"]
