"""rag_routing stages, pipelines and routers as LangChain Runnables (LCEL: ``a | b``).

* :class:`StageRunnable` — a :class:`~rag_routing.stages.base.StageRouter` as a ``Runnable[RAGState | str | dict,
  RAGState]``. Like ``RunnableBranch``: it opens a run, chooses (the router's decision, recorded in the ledger),
  runs the chosen option as a **child run tagged** ``option:<choice>`` with a patched config (tags, metadata and
  callbacks reach the option; its metadata gains ``rag_stage``, ``rag_choice`` and ``rag_decision_id``), and
  closes the run with the new state as output. A router that calls a LangChain model does so in a child run
  tagged ``routing``. The decision is dispatched as the custom event
  ``rag_routing_decision`` (``on_custom_event``, ``astream_events``) and is in the output's trace step.
  Options that are Runnables (of a plain ``StageRouter``) are invoked directly with that child config; other
  options run inside a child run named ``<stage>:<choice>``, under which any LangChain model they call appears.
* :class:`PipelineRunnable` — any object with ``invoke(state)`` / ``ainvoke(state)`` returning a state (e.g.
  ``RoutedRAG``) in one traced run.
* :class:`~rag_routing.integrations.langchain.router_runnable.RouterRunnable` — a drop-in branch: any rag_routing
  Router picks which Runnable handles the input.
* :func:`as_runnable` — the right one of the above for an object.

Streaming follows :mod:`~rag_routing.integrations.langchain.state_runnable`: answer tokens, then the final state.
The tokens are those of LangChain models under the node (callbacks) and of any LLM of the generator stage that
streams itself (the local model, ``PricedLLM``, a LlamaIndex LLM: :mod:`rag_routing.stages.streaming`); an
``astream`` the consumer abandons stops that generation at its next token (what ran is billed).

Example:
    >>> from rag_routing.stages import StageRouter
    >>> upper = StageRouter({"upper": lambda s: s.evolve(answer=s.query.upper())}, name="case")
    >>> answer = StageRouter({"keep": lambda s: s}, name="noop")
    >>> chain = as_runnable(upper) | as_runnable(answer)
    >>> out = chain.invoke("hello")
    >>> out.answer, [step.choice for step in out.trace]
    ('HELLO', ['upper', 'keep'])
    >>> [c for c in chain.stream("hi")][-1].state.answer
    'HI'
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.callbacks.manager import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
    set_config_context,
)
from langchain_core.runnables.utils import coro_with_context

from rag_routing.errors import InvalidInputError
from rag_routing.integrations.langchain.router_runnable import RouterRunnable
from rag_routing.integrations.langchain.state_runnable import (
    DECISION_EVENT,
    AnswerTokenTap,
    RAGStateChunk,
    StateRunnable,
)
from rag_routing.stages.attribution import stage_ledger
from rag_routing.stages.base import StageChoice, StageRouter
from rag_routing.stages.streaming import StreamControl, streaming_to
from rag_routing.stages.state import RAGState

# The StageRouter steps a StageRunnable drives itself (choose, run one option, append the trace step).
_STAGE_HOOKS = ("_choose_recorded", "_run", "_arun", "_with_step")


def _checked(result: Any, stage: str, choice: str) -> RAGState:
    if not isinstance(result, RAGState):
        raise InvalidInputError(f"option {choice!r} of stage {stage!r} returned {type(result).__name__}; "
                                "options must return a RAGState")
    return result


@contextmanager
def _stream_to_tap(tap: AnswerTokenTap | None, run_id: Any) -> Iterator[StreamControl | None]:
    """While the node streams, LLMs that stream themselves hand their tokens to the node's tap."""
    if tap is None:
        yield None
        return
    with streaming_to(lambda text: tap.on_llm_new_token(text, run_id=run_id)) as control:
        yield control


async def _cancellable(control: StreamControl | None, awaitable: Any) -> Any:
    """Await ``awaitable``; if the consumer abandons the stream (cancellation), stop its generation too."""
    try:
        return await awaitable
    except asyncio.CancelledError:
        if control is not None:
            control.cancel()  # a generator running in a worker thread stops at its next token
        raise


def child_config(config: RunnableConfig, run_manager: Any, tag: str, metadata: dict[str, Any],
                 tap: AnswerTokenTap | None = None) -> RunnableConfig:
    """``config`` patched for a child run: callbacks are the run's child manager tagged ``tag`` (plus the
    streaming tap), ``metadata`` is added (and inherited by every run below)."""
    manager = run_manager.get_child(tag=tag)
    if tap is not None:
        manager.add_handler(tap, inherit=True)
    patched = patch_config(config, callbacks=manager)
    patched["metadata"] = {**patched.get("metadata", {}), **metadata}
    return patched


def decision_event(stage: str, choice: StageChoice, decision_id: str) -> dict[str, Any]:
    """The payload of the ``rag_routing_decision`` custom event."""
    decision = choice.decision
    return {"stage": stage, "choice": choice.choice, "reason": choice.reason, "decision_id": decision_id,
            "decision": None if decision is None else decision.to_dict()}


class StageRunnable(StateRunnable):
    """A :class:`~rag_routing.stages.base.StageRouter` as a LangChain Runnable (module docstring).

    Args:
        stage: the stage (any StageRouter: the five RAG stages or a custom one).
        name: the run name (default: the stage's name).
    """

    def __init__(self, stage: StageRouter, *, name: str | None = None):
        missing = [hook for hook in _STAGE_HOOKS if not callable(getattr(stage, hook, None))]
        if not isinstance(stage, StageRouter) or missing:
            raise InvalidInputError(f"StageRunnable wraps a rag_routing StageRouter, got {type(stage).__name__}"
                                    + (f" (missing {missing})" if missing else ""))
        self.stage = stage
        self.name = name or stage.name
        # A plain StageRouter runs a Runnable option itself; subclasses may wrap options (Self-Route escalates).
        self._direct = type(stage)._run is StageRouter._run and type(stage)._arun is StageRouter._arun

    def _option_metadata(self, choice: StageChoice, step_id: str) -> dict[str, Any]:
        return {"rag_stage": self.stage.name, "rag_choice": choice.choice, "rag_decision_id": step_id}

    # -- sync -------------------------------------------------------------------------------------------------
    def _execute(self, state: RAGState, config: RunnableConfig, run_manager: CallbackManagerForChainRun,
                 tap: AnswerTokenTap | None) -> RAGState:
        stage = self.stage
        step_id, started = uuid.uuid4().hex, time.perf_counter()
        with stage_ledger(step_id) as collector, _stream_to_tap(tap, run_manager.run_id):
            if stage.router is None:
                choice = stage._choose_recorded(state, step_id, collector)
            else:  # a router that calls a LangChain model (LLM-as-router) does so as a child run tagged "routing"
                with set_config_context(child_config(config, run_manager, "routing", {})) as context:
                    choice = context.run(stage._choose_recorded, state, step_id, collector)
            run_manager.get_child().on_custom_event(DECISION_EVENT, decision_event(stage.name, choice, step_id),
                                                    run_id=run_manager.run_id)
            child = child_config(config, run_manager, f"option:{choice.choice}",
                                 self._option_metadata(choice, step_id), tap)
            result, reported, extra = self._run_choice(choice, state, child)
        return stage._with_step(state, result, choice, reported, extra, collector, step_id, started)

    def _run_choice(self, choice: StageChoice, state: RAGState,
                    config: RunnableConfig) -> tuple[RAGState, str, dict[str, Any]]:
        stage, option = self.stage, self.stage.options.get(choice.choice)  # None: a stage's own path
        if self._direct and isinstance(option, Runnable):
            return _checked(option.invoke(state, config), stage.name, choice.choice), choice.choice, {}
        run = get_callback_manager_for_config(config).on_chain_start(None, state,
                                                                     name=f"{stage.name}:{choice.choice}")
        try:
            with set_config_context(patch_config(config, callbacks=run.get_child())) as context:
                result = context.run(stage._run, choice, state)
        except BaseException as e:
            run.on_chain_error(e)
            raise
        run.on_chain_end(result[0])
        return result

    # -- async ------------------------------------------------------------------------------------------------
    async def _aexecute(self, state: RAGState, config: RunnableConfig,
                        run_manager: AsyncCallbackManagerForChainRun, tap: AnswerTokenTap | None) -> RAGState:
        stage = self.stage
        step_id, started = uuid.uuid4().hex, time.perf_counter()
        with stage_ledger(step_id) as collector, _stream_to_tap(tap, run_manager.run_id) as control:
            if stage.router is None:
                choice = stage._choose_recorded(state, step_id, collector)
            else:  # routers embed the query (CPU): keep the event loop free
                with set_config_context(child_config(config, run_manager, "routing", {})) as context:
                    choice = await asyncio.to_thread(context.run, stage._choose_recorded, state, step_id, collector)
            await run_manager.get_child().on_custom_event(
                DECISION_EVENT, decision_event(stage.name, choice, step_id), run_id=run_manager.run_id)
            child = child_config(config, run_manager, f"option:{choice.choice}",
                                 self._option_metadata(choice, step_id), tap)
            result, reported, extra = await _cancellable(control, self._arun_choice(choice, state, child))
        return stage._with_step(state, result, choice, reported, extra, collector, step_id, started)

    async def _arun_choice(self, choice: StageChoice, state: RAGState,
                           config: RunnableConfig) -> tuple[RAGState, str, dict[str, Any]]:
        stage, option = self.stage, self.stage.options.get(choice.choice)  # None: a stage's own path
        if self._direct and isinstance(option, Runnable):
            return _checked(await option.ainvoke(state, config), stage.name, choice.choice), choice.choice, {}
        run = await get_async_callback_manager_for_config(config).on_chain_start(
            None, state, name=f"{stage.name}:{choice.choice}")
        try:
            with set_config_context(patch_config(config, callbacks=run.get_child())) as context:
                result = await coro_with_context(stage._arun(choice, state), context)
        except BaseException as e:
            await run.on_chain_error(e)
            raise
        await run.on_chain_end(result[0])
        return result

    def __repr__(self) -> str:
        return f"StageRunnable({self.stage!r})"


class PipelineRunnable(StateRunnable):
    """Any ``invoke(state) -> state`` object (with optional ``ainvoke``), e.g. ``RoutedRAG``, in one traced run.

    LangChain models and runnables it calls inherit the run's config (they appear as its children), and their
    tokens stream through :meth:`stream` / :meth:`astream`.

    Args:
        target: the object to run.
        name: the run name (default: ``target.name`` or its class name).
    """

    def __init__(self, target: Any, *, name: str | None = None):
        if not callable(getattr(target, "invoke", None)):
            raise InvalidInputError(f"PipelineRunnable needs an object with invoke(state), got {type(target).__name__}")
        self.target = target
        self.name = name or getattr(target, "name", None) or type(target).__name__

    def _execute(self, state: RAGState, config: RunnableConfig, run_manager: CallbackManagerForChainRun,
                 tap: AnswerTokenTap | None) -> RAGState:
        child = child_config(config, run_manager, f"pipeline:{self.name}", {}, tap)
        with _stream_to_tap(tap, run_manager.run_id), set_config_context(child) as context:
            return _checked(context.run(self.target.invoke, state), self.get_name(), "invoke")

    async def _aexecute(self, state: RAGState, config: RunnableConfig,
                        run_manager: AsyncCallbackManagerForChainRun, tap: AnswerTokenTap | None) -> RAGState:
        child = child_config(config, run_manager, f"pipeline:{self.name}", {}, tap)
        ainvoke = getattr(self.target, "ainvoke", None)
        with _stream_to_tap(tap, run_manager.run_id) as control, set_config_context(child) as context:
            if callable(ainvoke):
                result = await _cancellable(control, coro_with_context(ainvoke(state), context))
            else:
                result = await _cancellable(control, asyncio.to_thread(context.run, self.target.invoke, state))
        return _checked(result, self.get_name(), "ainvoke")

    def __repr__(self) -> str:
        return f"PipelineRunnable({self.target!r})"


def as_runnable(obj: Any, runnables: Any = None, **kwargs: Any) -> Runnable:
    """``obj`` as a LangChain Runnable.

    * a Runnable: returned as is;
    * a :class:`~rag_routing.stages.base.StageRouter`: :class:`StageRunnable`;
    * a pipeline (``RoutedRAG`` or any object with ``invoke(state)``): :class:`PipelineRunnable`;
    * a rag_routing Router (has ``route_one``): :class:`RouterRunnable` over ``runnables`` (without them, a node
      that returns the :class:`~rag_routing.decision.RoutingDecision`).
    """
    if isinstance(obj, Runnable):
        return obj
    if isinstance(obj, StageRouter):
        return StageRunnable(obj, **kwargs)
    if callable(getattr(obj, "route_one", None)):
        return RouterRunnable(obj, runnables, **kwargs)
    if callable(getattr(obj, "invoke", None)):
        return PipelineRunnable(obj, **kwargs)
    raise InvalidInputError(f"cannot make a Runnable from {type(obj).__name__}; pass a StageRouter, RoutedRAG, "
                            "Router or an object with invoke(state)")


__all__ = ["StageRunnable", "PipelineRunnable", "RouterRunnable", "RAGStateChunk", "as_runnable", "child_config",
           "DECISION_EVENT"]
