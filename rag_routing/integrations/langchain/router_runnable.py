"""`RouterRunnable`: any rag_routing Router as a LangChain branch (``prompt | RouterRunnable(...) | parser``).

The router reads the query from the input (a string, a dict key, the last human message of a chat prompt,
``RAGState.query``), picks a candidate with the shared rule ``argmax S - λC`` s.t. ``C <= B``, and the input
goes, unchanged, to the Runnable of that name as a child run tagged ``route:<name>`` (its metadata gains
``rag_route``, ``rag_router`` and ``rag_decision_id``). Like ``RunnableBranch``: one traced run per call,
config patched for the child, ``stream`` / ``astream`` yield the chosen Runnable's own chunks.

The decision is recorded in the ambient cost ledger (stage ``"routing"``: the router's time and own cost,
with the decision id), dispatched as the custom event ``rag_routing_decision``, and every ledger entry the
chosen Runnable records (e.g. through ``LedgerCallbackHandler``) carries the same decision id.

A router candidate without a Runnable, or a Runnable that is not a candidate, is an
:class:`~rag_routing.errors.UnknownCandidateError` when the node is built (or at the first call, for a router
fitted later): never a silent misroute. Without ``runnables`` the node returns the
:class:`~rag_routing.decision.RoutingDecision` itself.

Per request, ``config={"configurable": {"lam": ..., "budget": ...}}`` sets λ and the $ budget B (see
:mod:`~rag_routing.integrations.langchain.configurable`); inside a ``ledger_scope`` with a budget, B is at most
what that budget has left, so the router picks the best candidate it can still pay for (the reason says so).

Example:
    >>> import numpy as np
    >>> from langchain_core.language_models import FakeListChatModel
    >>> from langchain_core.output_parsers import StrOutputParser
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.similarity import KNNRouter
    >>> queries = ["integrate x squared", "solve the integral of sin x", "hello there", "hi, how are you"]
    >>> ds = RoutingDataset(queries, ["small", "large"], [[0, 1], [0, 1], [1, 1], [1, 1]],
    ...                     np.tile([0.001, 0.02], (4, 1)))
    >>> router = KNNRouter(k=1, prior=0.0, featurizer="tfidf", lam=10.0).fit(ds)
    >>> node = RouterRunnable(router, {"small": FakeListChatModel(responses=["small says hi"]),
    ...                               "large": FakeListChatModel(responses=["large integrates"])})
    >>> chain = node | StrOutputParser()
    >>> chain.invoke("integrate x squared please"), chain.invoke("hello, how are you?")
    ('large integrates', 'small says hi')
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.base import coerce_to_runnable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)
from langchain_core.runnables.utils import ConfigurableFieldSpec, coro_with_context

from rag_routing.errors import InvalidInputError, NotFittedError, UnknownCandidateError
from rag_routing.integrations.langchain.configurable import routing_config_specs, routing_from_config
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.scope import current_ledger, run_in_ledger_context
from rag_routing.ledger.stage_names import ROUTING
from rag_routing.stages.state import RAGState

#: Ledger stage of a router's own decision.
ROUTING_STAGE = ROUTING
DECISION_EVENT = "rag_routing_decision"
_QUERY_KEYS = ("query", "question", "input")


def _message_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") if isinstance(part, Mapping) else str(part) for part in content)


def _last_human(messages: list[BaseMessage]) -> str:
    humans = [m for m in messages if m.type == "human"] or list(messages)
    if not humans:
        raise InvalidInputError("cannot route an empty list of messages")
    return _message_text(humans[-1])


class DecisionLedger(CostLedger):
    """Forwards every entry to ``parent`` (the ambient ledger, possibly a stage's view of it), stamping
    ``decision_id`` on entries recorded without one; keeps nothing itself."""

    def __init__(self, parent: CostLedger, decision_id: str):
        super().__init__(budget=parent.budget, prices=parent.prices, energy=parent.energy,
                         principal=parent.principal, allow_unpriced=parent.allow_unpriced)
        self.parent, self.decision_id = parent, decision_id

    def record(self, stage: str, component: str | None = None, model: str | None = None, *,
               decision_id: str | None = None, **kwargs: Any) -> Any:
        return self.parent.record(stage, component, model, decision_id=decision_id or self.decision_id, **kwargs)

    def add_entry(self, entry: Any, *, reservation: Any = None) -> Any:
        return self.parent.add_entry(entry, reservation=reservation)


def _ledger_context(decision_id: str, ledger: CostLedger | None = None) -> contextvars.Context:
    """A copy of the current context whose ambient ledger (``ledger``, else the current one) stamps
    ``decision_id`` on new entries."""
    parent = ledger if ledger is not None else current_ledger()
    if parent is None:
        return contextvars.copy_context()
    return run_in_ledger_context(contextvars.copy_context, ledger=DecisionLedger(parent, decision_id))


class RouterRunnable(Runnable[Any, Any]):
    """A rag_routing Router choosing which Runnable handles each input (module docstring).

    Args:
        router: any rag_routing Router (``route_one(query, lam, budget)``), fitted on candidate names; default
            ``None``: an unfitted ``auto`` router (:class:`~rag_routing.routers.auto.AutoRouter`), fitted with
            :meth:`fit`.
        runnables: ``{candidate: Runnable}`` (callables are wrapped as ``RunnableLambda``); ``None``: return the
            decision.
        input_key: the dict key holding the query (default: ``query``, ``question`` or ``input``).
        query: a function ``input -> str`` overriding how the query is read.
        lam, budget: passed to the router (``None``: the router's own).
        name: the run name (default ``"RouterRunnable[<router>]"``).
        ledger: record the decision and meter (and budget) the chosen Runnable's model calls in this ledger
            (default: the ambient one, ``ledger_scope``).
    """

    def __init__(self, router: Any = None, runnables: Mapping[str, Any] | None = None, *,
                 input_key: str | None = None, query: Callable[[Any], str] | None = None, lam: float | None = None,
                 budget: float | None = None, name: str | None = None, ledger: CostLedger | None = None):
        if router is None:
            from rag_routing.routers.auto import AutoRouter

            router = AutoRouter()
        if not callable(getattr(router, "route_one", None)):
            raise InvalidInputError(f"router must be a rag_routing Router (with route_one), got "
                                    f"{type(router).__name__}")
        if runnables is not None and (not isinstance(runnables, Mapping) or not runnables):
            raise InvalidInputError("runnables must be a non-empty mapping {candidate: Runnable} or None")
        self.router = router
        self.runnables: dict[str, Runnable] = {str(k): coerce_to_runnable(v) for k, v in (runnables or {}).items()}
        self.input_key = input_key
        self.query_fn = query
        self.lam, self.budget = lam, budget
        if ledger is not None and not isinstance(ledger, CostLedger):
            raise InvalidInputError(f"ledger must be a CostLedger or None, got {type(ledger).__name__}")
        self.ledger = ledger
        self.name = name or f"RouterRunnable[{getattr(router, 'name', type(router).__name__)}]"
        self.check_candidates()

    def fit(self, dataset: Any) -> RouterRunnable:
        """Fit the router on ``dataset`` (a RoutingDataset over the runnables' names); returns ``self``."""
        self.router.fit(dataset)
        self.check_candidates()
        return self

    # -- checks -------------------------------------------------------------------------------------------
    def check_candidates(self) -> None:
        """Raise :class:`UnknownCandidateError` unless the fitted router's candidates are the runnables' names."""
        if not self.runnables or not getattr(self.router, "is_fitted", True):
            return
        candidates = [str(c) for c in getattr(self.router, "candidates_", [])]
        if not candidates:
            return
        no_runnable = [c for c in candidates if c not in self.runnables]
        not_candidate = [n for n in self.runnables if n not in candidates]
        if no_runnable or not_candidate:
            raise UnknownCandidateError(
                f"router {getattr(self.router, 'name', type(self.router).__name__)!r} and the runnables disagree: "
                f"candidates without a runnable {no_runnable}, runnables that are not candidates {not_candidate}; "
                f"router candidates: {candidates}. Name the runnables after the candidates (or refit the router)")

    # -- routing ------------------------------------------------------------------------------------------
    def query_of(self, input: Any) -> str:
        """The text the router sees for ``input``."""
        if self.query_fn is not None:
            value = self.query_fn(input)
        elif isinstance(input, str):
            value = input
        elif isinstance(input, RAGState):
            value = input.query
        elif isinstance(input, ChatPromptValue):
            value = _last_human(list(input.messages))
        elif isinstance(input, PromptValue):
            value = input.to_string()
        elif isinstance(input, BaseMessage):
            value = _message_text(input)
        elif isinstance(input, list) and input and all(isinstance(m, BaseMessage) for m in input):
            value = _last_human(input)
        elif isinstance(input, (list, tuple)) and input:
            # What a chat model accepts: ("human", "...") tuples, {"role": "user", ...} dicts, strings.
            try:
                messages = convert_to_messages(list(input))
            except (ValueError, TypeError, NotImplementedError) as exc:
                raise InvalidInputError(f"cannot read chat messages from the input ({exc}); pass a string, "
                                        "messages, or query=lambda x: ...") from exc
            value = _last_human(messages)
        elif isinstance(input, Mapping):
            keys = [self.input_key] if self.input_key else [k for k in _QUERY_KEYS if k in input]
            if not keys or keys[0] not in input:
                raise InvalidInputError(f"cannot find the query in keys {sorted(map(str, input))}; pass "
                                        f"input_key=... or query=lambda x: ... to RouterRunnable")
            value = input[keys[0]]
        else:
            raise InvalidInputError(f"cannot read a query from {type(input).__name__}; pass query=lambda x: ...")
        if not isinstance(value, str) or not value.strip():
            raise InvalidInputError(f"the query to route must be a non-empty string, got {value!r}")
        return value

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """``lam`` and ``budget``: per-request λ and $ budget (``config={"configurable": {...}}``)."""
        return routing_config_specs()

    def route(self, input: Any, config: RunnableConfig | None = None) -> Any:
        """Route ``input`` and record the decision in the ambient ledger; returns the RoutingDecision.

        λ and the budget: ``config["configurable"]`` (per request), else the node's, else the router's; B is
        capped at what the ambient ledger's budget has left.
        """
        if self.ledger is not None:  # the node's own ledger: its budget is what the router may spend
            return run_in_ledger_context(self._route_with, input, config, ledger=self.ledger)
        return self._route_with(input, config)

    def _route_with(self, input: Any, config: RunnableConfig | None) -> Any:
        with routing_from_config(config):
            return self._route(input)

    def _route(self, input: Any) -> Any:
        query = self.query_of(input)
        if not getattr(self.router, "is_fitted", True):
            raise NotFittedError(f"the router of {self.get_name()!r} is not fitted; fit it before routing")
        self.check_candidates()
        started = time.perf_counter()
        decision = self.router.route_one(query, lam=self.lam, budget=self.budget)
        seconds = time.perf_counter() - started
        if self.runnables and decision.candidate not in self.runnables:  # defensive: never run something else
            raise UnknownCandidateError(f"router chose {decision.candidate!r}, which has no runnable "
                                        f"({list(self.runnables)})")
        ledger = current_ledger()
        if ledger is not None:
            router_name = getattr(self.router, "name", type(self.router).__name__)
            ledger.record(ROUTING_STAGE, f"router/{router_name}", seconds=seconds,
                          cost_usd=decision.router_cost_usd, decision_id=decision.decision_id,
                          metadata={"choice": decision.candidate, "node": self.get_name()})
        return decision

    def _child(self, config: RunnableConfig, run_manager: Any, decision: Any) -> RunnableConfig:
        child = patch_config(config, callbacks=run_manager.get_child(tag=f"route:{decision.candidate}"))
        child["metadata"] = {**child.get("metadata", {}), "rag_route": decision.candidate,
                             "rag_router": decision.router, "rag_decision_id": decision.decision_id}
        return child

    @staticmethod
    def _event(decision: Any) -> dict[str, Any]:
        return {"stage": ROUTING_STAGE, "choice": decision.candidate, "reason": decision.reason,
                "decision_id": decision.decision_id, "decision": decision.to_dict()}

    def _start(self, input: Any, config: RunnableConfig | None) -> tuple[RunnableConfig, Any]:
        config = ensure_config(config)
        run_manager = get_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None))
        return config, run_manager

    async def _astart(self, input: Any, config: RunnableConfig | None) -> tuple[RunnableConfig, Any]:
        config = ensure_config(config)
        run_manager = await get_async_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None))
        return config, run_manager

    # -- invoke -------------------------------------------------------------------------------------------
    def _batch_queries(self, inputs: list[Any]) -> list[Any]:
        out = []
        for item in inputs:
            try:
                out.append(self.query_of(item))
            except InvalidInputError:
                pass  # that item's own invoke reports it
        return out

    def batch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False,
              **kwargs: Any) -> list[Any]:
        """:meth:`invoke` per input, the router's featurizer embedding all the queries in one call first."""
        from rag_routing.feature_prefetch import prefetched_features

        with prefetched_features(self.router, self._batch_queries(list(inputs))):
            return super().batch(list(inputs), config, return_exceptions=return_exceptions, **kwargs)

    async def abatch(self, inputs: list[Any], config: Any = None, *, return_exceptions: bool = False,
                     **kwargs: Any) -> list[Any]:
        """Async :meth:`batch`: one embedding call (in a thread) for all the queries, then :meth:`ainvoke` each."""
        from rag_routing.feature_prefetch import compute_memo, using_memo

        memo = await asyncio.to_thread(compute_memo, self.router, self._batch_queries(list(inputs)))
        with using_memo(memo):
            return await super().abatch(list(inputs), config, return_exceptions=return_exceptions, **kwargs)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Route, then invoke the chosen Runnable (tag ``route:<name>``) and return its output."""
        config, run_manager = self._start(input, config)
        try:
            decision = self.route(input, config)
            run_manager.get_child().on_custom_event(DECISION_EVENT, self._event(decision), run_id=run_manager.run_id)
            if not self.runnables:
                output = decision
            else:
                runnable = self.runnables[decision.candidate]
                output = _ledger_context(decision.decision_id, self.ledger).run(
                    runnable.invoke, input, self._child(config, run_manager, decision), **kwargs)
        except BaseException as e:
            run_manager.on_chain_error(e)
            raise
        run_manager.on_chain_end(output)
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke` (the router runs in a thread: it embeds the query)."""
        config, run_manager = await self._astart(input, config)
        try:
            decision = await asyncio.to_thread(self.route, input, config)
            await run_manager.get_child().on_custom_event(DECISION_EVENT, self._event(decision),
                                                          run_id=run_manager.run_id)
            if not self.runnables:
                output = decision
            else:
                runnable = self.runnables[decision.candidate]
                child = self._child(config, run_manager, decision)
                output = await coro_with_context(runnable.ainvoke(input, child, **kwargs),
                                                 _ledger_context(decision.decision_id, self.ledger))
        except BaseException as e:
            await run_manager.on_chain_error(e)
            raise
        await run_manager.on_chain_end(output)
        return output

    # -- streaming ----------------------------------------------------------------------------------------
    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        """Route, then yield the chosen Runnable's own stream."""
        config, run_manager = self._start(input, config)
        final: Any = None
        try:
            decision = self.route(input, config)
            run_manager.get_child().on_custom_event(DECISION_EVENT, self._event(decision), run_id=run_manager.run_id)
            if not self.runnables:
                final = decision
                yield decision
            else:
                context = _ledger_context(decision.decision_id, self.ledger)
                iterator = context.run(self.runnables[decision.candidate].stream, input,
                                       self._child(config, run_manager, decision), **kwargs)
                while True:
                    try:
                        chunk = context.run(next, iterator)
                    except StopIteration:
                        break
                    yield chunk
                    final = _add(final, chunk)
        except BaseException as e:
            run_manager.on_chain_error(e)
            raise
        run_manager.on_chain_end(final)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        """Async :meth:`stream`."""
        config, run_manager = await self._astart(input, config)
        final: Any = None
        try:
            decision = await asyncio.to_thread(self.route, input, config)
            await run_manager.get_child().on_custom_event(DECISION_EVENT, self._event(decision),
                                                          run_id=run_manager.run_id)
            if not self.runnables:
                final = decision
                yield decision
            else:
                context = _ledger_context(decision.decision_id, self.ledger)
                iterator = self.runnables[decision.candidate].astream(
                    input, self._child(config, run_manager, decision), **kwargs)
                while True:
                    try:
                        chunk = await coro_with_context(_anext(iterator), context)
                    except StopAsyncIteration:
                        break
                    yield chunk
                    final = _add(final, chunk)
        except BaseException as e:
            await run_manager.on_chain_error(e)
            raise
        await run_manager.on_chain_end(final)

    def get_graph(self, config: RunnableConfig | None = None) -> Any:
        """The node and its branches: input -> router -> one conditional edge per candidate (labelled with its
        name) into that Runnable's own graph -> output; so ``chain.get_graph()`` draws the routes."""
        from langchain_core.runnables.graph import Graph

        if not self.runnables:
            return super().get_graph(config)
        graph = Graph()
        input_node = graph.add_node(self.get_input_schema(config))
        router_node = graph.add_node(self, metadata={"rag_router": getattr(self.router, "name", None)})
        output_node = graph.add_node(self.get_output_schema(config))
        graph.add_edge(input_node, router_node)
        for name, runnable in self.runnables.items():
            branch = runnable.get_graph(config)
            branch.trim_first_node()
            branch.trim_last_node()
            if not branch:
                graph.add_edge(router_node, output_node, data=name, conditional=True)
                continue
            first, last = graph.extend(branch, prefix=name)
            if first is None or last is None:
                raise InvalidInputError(f"the Runnable of candidate {name!r} has no first or last graph node")
            graph.add_edge(router_node, first, data=name, conditional=True)
            graph.add_edge(last, output_node)
        return graph

    def __repr__(self) -> str:
        return f"RouterRunnable({self.router!r}, runnables={list(self.runnables)})"


async def _anext(iterator: AsyncIterator[Any]) -> Any:
    return await iterator.__anext__()


def _add(total: Any, chunk: Any) -> Any:
    if total is None:
        return chunk
    try:
        return total + chunk
    except TypeError:
        return chunk


__all__ = ["RouterRunnable", "DecisionLedger", "ROUTING_STAGE"]


# LangChain is imported by now: make the ambient meter active (also before the first ledger_scope).
from rag_routing.ledger import ambient_hooks as _ambient_hooks  # noqa: E402

_ambient_hooks.activate()
