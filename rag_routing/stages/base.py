"""`StageRouter`: one RAG stage choosing among its options with any :class:`~rag_routing.routers.base.Router`.

An *option* is what a stage can run: a callable ``RAGState -> RAGState``, or an object with ``invoke`` (and
optionally ``ainvoke``), e.g. another stage or a LangChain runnable that maps states. A stage

1. **chooses** (:meth:`StageRouter.choose`): with a fitted ``router`` whose candidates are option names, the
   shared rule ``argmax S - λC`` s.t. ``C <= B`` picks one for the query; without a router, ``default``;
2. **runs** the chosen option inside a per-stage view of the ambient cost ledger, so every entry the option
   records (retrieval, LLM calls, the router's own time) is stamped with the step's ``decision_id``;
3. **appends** a :class:`~rag_routing.stages.state.TraceStep`: what it chose, why, and what it cost.

``invoke``, ``ainvoke``, ``batch`` and ``abatch`` give the same answers; ``ainvoke`` is truly async (options
with ``ainvoke`` are awaited, synchronous ones run in ``asyncio.to_thread``, which copies the context so the
ambient ledger follows). A router candidate that is not an option is an
:class:`~rag_routing.errors.UnknownCandidateError` when the stage is built, never a silent misroute.

Subclasses (the five RAG stages) build their options from components and may override :meth:`_run` /
:meth:`_arun` (e.g. Self-Route runs one option, then escalates to another).

Example:
    >>> stage = StageRouter({"upper": lambda s: s.evolve(answer=s.query.upper()),
    ...                      "lower": lambda s: s.evolve(answer=s.query.lower())}, default="upper", name="case")
    >>> out = stage.invoke("Hello")
    >>> out.answer, out.trace[0].stage, out.trace[0].choice
    ('HELLO', 'case', 'upper')
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Union, runtime_checkable

from rag_routing.errors import InvalidInputError, NotFittedError, UnknownCandidateError
from rag_routing.ledger.stage_names import ROUTING
from rag_routing.stages.attribution import stage_ledger
from rag_routing.stages.batching import Batchable
from rag_routing.stages.state import RAGState, TraceStep

#: Ledger stage of a router's own decision (its features and scoring time).
ROUTING_STAGE = ROUTING


@runtime_checkable
class Invokable(Protocol):
    """An option object: ``invoke(state) -> state`` (``ainvoke`` is optional)."""

    def invoke(self, state: RAGState) -> RAGState: ...


Option = Union[Callable[[RAGState], RAGState], Invokable]
StateInput = Union[RAGState, str, Mapping[str, Any]]


@dataclass(frozen=True)
class StageChoice:
    """What :meth:`StageRouter.choose` returns: the option name, the router's decision (if any) and why."""

    choice: str
    decision: Any  # RoutingDecision | None
    reason: str
    #: Work done while choosing that the chosen option may reuse (e.g. a retrieval probe's documents).
    prepared: Any = None
    #: Seconds of the choice already recorded in the ledger by other entries (e.g. the probe's retrieval), so
    #: the router's own entry does not count them twice.
    recorded_seconds: float = 0.0

    def __iter__(self):  # ``choice, decision, reason = stage.choose(state)``
        return iter((self.choice, self.decision, self.reason))


def _check_option(name: str, option: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"option names must be non-empty strings, got {name!r}")
    if not (callable(option) or callable(getattr(option, "invoke", None))
            or callable(getattr(option, "ainvoke", None))):
        raise InvalidInputError(f"option {name!r} is a {type(option).__name__}; options must be callables "
                                "RAGState -> RAGState or objects with invoke/ainvoke")


def _checked_result(result: Any, stage: str, choice: str) -> RAGState:
    if not isinstance(result, RAGState):
        raise InvalidInputError(f"option {choice!r} of stage {stage!r} returned {type(result).__name__}; "
                                "options must return a RAGState (use state.evolve(...))")
    return result


def run_option(option: Any, state: RAGState) -> RAGState:
    """Run an option synchronously (``invoke``, a plain callable, or an async-only option via asyncio.run)."""
    invoke = getattr(option, "invoke", None)
    if callable(invoke):
        return invoke(state)
    if callable(option) and not inspect.iscoroutinefunction(option):
        result = option(state)
        if inspect.isawaitable(result):
            return _run_coroutine(result)
        return result
    ainvoke = getattr(option, "ainvoke", None) or option
    return _run_coroutine(ainvoke(state))


async def arun_option(option: Any, state: RAGState) -> RAGState:
    """Run an option asynchronously: await ``ainvoke`` / a coroutine function, else ``asyncio.to_thread``."""
    ainvoke = getattr(option, "ainvoke", None)
    if callable(ainvoke):
        return await ainvoke(state)
    if inspect.iscoroutinefunction(option):
        return await option(state)
    result = await asyncio.to_thread(run_option, option, state)
    return result


def _run_coroutine(coro: Awaitable[Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    if inspect.iscoroutine(coro):
        coro.close()
    raise InvalidInputError("this option is async-only and an event loop is running; call ainvoke() instead")


class StageRouter(Batchable):
    """A RAG stage that chooses among named options (see module docstring).

    Args:
        options: ``{name: option}``; an option is a callable ``RAGState -> RAGState`` or has ``invoke``.
        router: a :class:`~rag_routing.routers.base.Router` whose candidates are option names. It may be
            fitted later (e.g. ``fit_from_outcomes``); its candidates are checked whenever it is set.
        default: the option taken when there is no router (default: the first option).
        lam: λ passed to the router (``None``: the router's own).
        budget: per-query budget in US $ passed to the router (``None``: the router's own).
        name: the stage name in traces (default: the class's ``stage``).
    """

    stage: ClassVar[str] = "stage"

    def __init__(self, options: Mapping[str, Option], *, router: Any = None, default: str | None = None,
                 lam: float | None = None, budget: float | None = None, name: str | None = None):
        if not isinstance(options, Mapping) or not options:
            raise InvalidInputError(f"{type(self).__name__} needs a non-empty mapping of options")
        for option_name, option in options.items():
            _check_option(option_name, option)
        self.options: dict[str, Option] = dict(options)
        self.name = name or self.stage
        if default is not None and default not in self.options:
            raise UnknownCandidateError(f"default {default!r} is not an option of stage {self.name!r}; "
                                        f"options: {list(self.options)}")
        self.default = default if default is not None else next(iter(self.options))
        if lam is not None and (not isinstance(lam, (int, float)) or lam < 0):
            raise InvalidInputError(f"lam must be a number >= 0 or None, got {lam!r}")
        self.lam = lam
        self.budget = budget
        self.router = router

    # -- the router ---------------------------------------------------------------------------------------
    @property
    def router(self) -> Any:
        return self._router

    @router.setter
    def router(self, router: Any) -> None:
        if router is not None and not callable(getattr(router, "route_one", None)):
            raise InvalidInputError(
                f"router must be a rag_routing Router (with route_one), got {type(router).__name__}")
        self._router = router
        self.check_router()

    def check_router(self) -> None:
        """Raise :class:`UnknownCandidateError` if the (fitted) router can pick a name that is not an option."""
        router = self._router
        if router is None or not getattr(router, "is_fitted", True):
            return
        candidates = list(getattr(router, "candidates_", []))
        unknown = [c for c in candidates if c not in self.options]
        if unknown:
            raise UnknownCandidateError(
                f"router {getattr(router, 'name', type(router).__name__)!r} of stage {self.name!r} has candidates "
                f"{unknown} that are not options; options: {list(self.options)}. Rename the options or refit "
                "the router on option names")

    # -- training -----------------------------------------------------------------------------------------
    def default_router(self) -> Any:
        """The router :meth:`fit` uses when given none (RouteLLM's direct classifier over MiniLM embeddings)."""
        from rag_routing.stages.fitting import default_stage_router

        return default_stage_router()

    def fit(self, dataset: Any, router: Any = None) -> StageRouter:
        """Fit ``router`` (default: :meth:`default_router`) on a RoutingDataset over option names; use it."""
        from rag_routing.evaluation.dataset import RoutingDataset

        if not isinstance(dataset, RoutingDataset):
            raise InvalidInputError(f"fit expects a RoutingDataset, got {type(dataset).__name__}")
        unknown = [c for c in dataset.candidates if c not in self.options]
        if unknown:
            raise UnknownCandidateError(f"dataset candidates {unknown} are not options of stage {self.name!r}; "
                                        f"options: {list(self.options)}")
        fitted = (router if router is not None else self.default_router()).fit(dataset)
        self.router = fitted
        return self

    def fit_from_outcomes(self, queries: Sequence[str], outcomes: Mapping[str, Sequence[float]],
                          costs: Mapping[str, Any] | None = None, *, router: Any = None) -> StageRouter:
        """Fit on measured outcomes: ``{option: [outcome per query]}`` and ``{option: $ or [$ per query]}``.

        Only options with outcomes become router candidates (the others are never chosen)."""
        from rag_routing.stages.fitting import outcomes_dataset

        unknown = sorted(set(outcomes) - set(self.options))
        if unknown:
            raise UnknownCandidateError(f"outcomes for {unknown}, which are not options {list(self.options)}")
        measured = [o for o in self.options if o in outcomes]
        costs = None if costs is None else {o: c for o, c in costs.items() if o in outcomes or o not in self.options}
        return self.fit(outcomes_dataset(queries, outcomes, costs, measured), router)

    def fit_from_labels(self, queries: Sequence[str], labels: Sequence[str], *,
                        costs: Mapping[str, Any] | None = None, router: Any = None) -> StageRouter:
        """Fit on one right option per query (one-hot outcomes), e.g. labels a person wrote."""
        from rag_routing.stages.fitting import labels_dataset

        return self.fit(labels_dataset(queries, labels, list(self.options), costs=costs), router)

    # -- choosing -----------------------------------------------------------------------------------------
    def choose(self, state: StateInput) -> StageChoice:
        """The option to run for ``state``: ``(choice, decision or None, reason)``."""
        state = RAGState.coerce(state)
        if self._router is None:
            return StageChoice(self.default, None, f"fixed option {self.default!r} (no router)")
        return self._route(self.routing_query(state))

    def _check_router_ready(self) -> None:
        if not getattr(self._router, "is_fitted", True):
            raise NotFittedError(f"the router of stage {self.name!r} is not fitted; fit it (e.g. "
                                 f"{type(self).__name__}.fit_from_outcomes) or pass router=None")
        self.check_router()  # a refit may have changed the candidates

    def _route(self, routing_input: Any) -> StageChoice:
        """The router's choice for one query's text, or for one row of features (a ``(1, d)`` array)."""
        self._check_router_ready()
        if isinstance(routing_input, str):
            decision = self._router.route_one(routing_input, lam=self.lam, budget=self.budget)
        else:
            decision = self._router.route(routing_input, lam=self.lam, budget=self.budget)[0]
        if decision.candidate not in self.options:  # defensive: never run something else silently
            raise UnknownCandidateError(f"router chose {decision.candidate!r}, not an option of stage "
                                        f"{self.name!r} ({list(self.options)})")
        return StageChoice(decision.candidate, decision, decision.reason)

    def routing_query(self, state: RAGState) -> str:
        """The text the router sees (the query; subclasses may add context)."""
        return state.query

    def _batch_memo(self, states: list[Any]) -> Any:
        """The router's featurizer embeds every state's routing query in one call (``batch`` / ``abatch``)."""
        from rag_routing.feature_prefetch import compute_memo
        from rag_routing.errors import RagRoutingError

        if self._router is None or not getattr(self._router, "is_fitted", True):
            return None
        texts = []
        for state in states:
            try:
                texts.append(self.routing_query(RAGState.coerce(state)))
            except RagRoutingError:
                pass  # that state's own invoke reports it
        return compute_memo(self._router, texts)

    # -- running ------------------------------------------------------------------------------------------
    def _run(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        """Run the chosen option; returns (new state, the choice to report, step metadata)."""
        result = _checked_result(run_option(self.options[choice.choice], state), self.name, choice.choice)
        return result, choice.choice, {}

    async def _arun(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        result = _checked_result(await arun_option(self.options[choice.choice], state), self.name, choice.choice)
        return result, choice.choice, {}

    def invoke(self, state: StateInput) -> RAGState:
        """Choose, run the option, and return the new state with this stage's trace step."""
        state = RAGState.coerce(state)
        step_id, started = uuid.uuid4().hex, time.perf_counter()
        with stage_ledger(step_id) as collector:
            choice = self._choose_recorded(state, step_id, collector)
            result, reported, extra = self._run(choice, state)
        return self._with_step(state, result, choice, reported, extra, collector, step_id, started)

    async def ainvoke(self, state: StateInput) -> RAGState:
        """Async :meth:`invoke` (same answer)."""
        state = RAGState.coerce(state)
        step_id, started = uuid.uuid4().hex, time.perf_counter()
        with stage_ledger(step_id) as collector:
            if self._router is None:
                choice = self._choose_recorded(state, step_id, collector)
            else:  # routers embed the query (CPU): keep the event loop free
                choice = await asyncio.to_thread(self._choose_recorded, state, step_id, collector)
            result, reported, extra = await self._arun(choice, state)
        return self._with_step(state, result, choice, reported, extra, collector, step_id, started)

    def __call__(self, state: StateInput) -> RAGState:
        return self.invoke(state)

    # -- internals ----------------------------------------------------------------------------------------
    def _choose_recorded(self, state: RAGState, step_id: str, collector: Any) -> StageChoice:
        started = time.perf_counter()
        choice = self.choose(state)
        if choice.decision is not None:
            choice.decision.decision_id = step_id  # one id for the step, the decision and its entries
            router = self._router
            seconds = max(0.0, time.perf_counter() - started - choice.recorded_seconds)
            collector.record(ROUTING_STAGE, f"{self.name}/{getattr(router, 'name', type(router).__name__)}",
                             seconds=seconds, cost_usd=choice.decision.router_cost_usd,
                             metadata={"rag_stage": self.name, "choice": choice.choice})
        return choice

    def _with_step(self, before: RAGState, after: RAGState, choice: StageChoice, reported: str,
                   extra: Mapping[str, Any], collector: Any, step_id: str, started: float) -> RAGState:
        reason = extra.get("reason", choice.reason)
        metadata = {k: v for k, v in extra.items() if k != "reason"}
        step = TraceStep.from_entries(self.name, reported, reason, collector.collected, decision=choice.decision,
                                      decision_id=step_id, wall_seconds=time.perf_counter() - started,
                                      metadata=metadata)
        # This stage's step goes before the steps of stages nested in its option.
        n = len(before.trace)
        trace = [*after.trace[:n], step, *after.trace[n:]]
        return after.evolve(trace=trace)

    def describe(self) -> dict[str, Any]:
        """The stage's configuration: name, options, default, router, λ and budget."""
        router = self._router
        return {"stage": self.name, "options": list(self.options), "default": self.default,
                "router": None if router is None else getattr(router, "name", type(router).__name__),
                "lam": self.lam, "budget": self.budget}

    def __repr__(self) -> str:
        d = self.describe()
        return (f"{type(self).__name__}(options={d['options']}, router={d['router']!r}, "
                f"default={d['default']!r})")


__all__ = ["StageRouter", "StageChoice", "Option", "Invokable", "StateInput", "run_option", "arun_option",
           "ROUTING_STAGE"]
