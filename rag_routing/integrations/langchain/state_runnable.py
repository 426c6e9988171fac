"""The scaffolding every rag_routing Runnable shares: one traced run per call, and the streaming contract.

:class:`StateRunnable` is a LangChain ``Runnable`` from a :class:`~rag_routing.stages.state.RAGState` (or a query
string, or a dict of state fields) to a new ``RAGState``. ``invoke`` / ``ainvoke`` open one chain run with the
callback manager of the config, do the work (:meth:`StateRunnable._execute`), and close the run with
``on_chain_end`` or ``on_chain_error``, exactly as ``RunnableBranch`` does; ``batch`` / ``abatch`` are LangChain's
(threads that copy the context, so the ambient cost ledger follows; ``asyncio.gather``).

**Per request**, ``config={"configurable": {"lam": ..., "budget": ...}}`` sets λ and the $ budget of every
router deciding inside the node (:mod:`~rag_routing.integrations.langchain.configurable`).

**Streaming contract.** ``stream`` / ``astream`` yield :class:`RAGStateChunk` objects:

* while an LLM under the node streams, one chunk per token: ``answer_delta`` set, ``state`` ``None``
  (LangChain chat models are switched to streaming automatically: the node listens with a streaming callback
  handler, as ``astream_events`` does; an LLM that cannot stream yields nothing here);
* then exactly one final chunk: ``state`` = the state ``invoke`` would return, ``answer_delta`` empty.

Chunks add up (``a + b``) like ``AIMessageChunk``: the sum of a stream has the final ``state`` and, in
``answer_delta``, every streamed token. A node placed after another in an LCEL chain (``a | b``) reads the
final state of its predecessor's stream (``transform``). A node that calls several LLMs (Self-Route's second
answer, a multi-step retrieval's follow-up sentence inside a pipeline) streams each call's tokens, told apart
by ``llm_run_id``: the final state's ``answer`` is the one to trust.

Sync ``stream`` runs the node in a worker thread (a copy of the caller's context: the ambient ledger follows)
and hands tokens over through a queue; if the consumer stops early, the node still finishes in that thread.
``astream`` runs it as a task and cancels it if the consumer stops early.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.manager import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from langchain_core.utils.pydantic import create_model_v2
from pydantic import BaseModel

from rag_routing.errors import InvalidInputError
from rag_routing.integrations.langchain.configurable import routing_config_specs, routing_from_config
from rag_routing.stages.state import RAGState

#: Name of the LangChain custom event carrying a routing decision (``on_custom_event`` / ``astream_events``).
DECISION_EVENT = "rag_routing_decision"


@dataclass(frozen=True)
class RAGStateChunk:
    """One item of a streamed rag_routing node (see the module docstring for the contract).

    Attributes:
        answer_delta: new answer text from a streaming LLM ("" in the final chunk).
        state: the node's output state (final chunk only).
        node: name of the node that produced the chunk.
        llm_run_id: the LangChain run id of the LLM call the token came from.
    """

    answer_delta: str = ""
    state: RAGState | None = None
    node: str | None = None
    llm_run_id: str | None = None

    @property
    def is_final(self) -> bool:
        return self.state is not None

    def __add__(self, other: Any) -> RAGStateChunk:
        if not isinstance(other, RAGStateChunk):
            return NotImplemented
        return RAGStateChunk(self.answer_delta + other.answer_delta,
                             other.state if other.state is not None else self.state,
                             other.node or self.node, other.llm_run_id or self.llm_run_id)


def coerce_state(value: Any) -> RAGState:
    """A :class:`RAGState` from a state, a final :class:`RAGStateChunk`, a query string or a dict of fields."""
    if isinstance(value, RAGStateChunk):
        if value.state is None:
            raise InvalidInputError("a RAGStateChunk without a state is not a node input; pass the final chunk "
                                    "(or the sum of a stream)")
        return value.state
    return RAGState.coerce(value)


def aggregate_input(items: Iterable[Any]) -> Any:
    """What a node reads from an upstream stream: the last final chunk's state, else the ``+`` of the items
    (the last item when they do not add up)."""
    state: RAGState | None = None
    total: Any = None
    for item in items:
        if isinstance(item, RAGStateChunk):
            state = item.state if item.state is not None else state
            continue
        try:
            total = item if total is None else total + item
        except TypeError:
            total = item
    return state if state is not None else total


class AnswerTokenTap(BaseCallbackHandler):
    """Forwards ``on_llm_new_token`` to ``emit(text, run_id)``.

    It also has the two methods of LangChain's streaming-handler protocol (``tap_output_iter`` /
    ``tap_output_aiter``, pass-through), which tells chat models under it to stream even inside ``invoke``.
    """

    run_inline = True

    def __init__(self, emit: Callable[[str, UUID], None]):
        super().__init__()
        self._emit = emit

    def on_llm_new_token(self, token: str | list[str | dict[str, Any]], *,
                         chunk: GenerationChunk | ChatGenerationChunk | None = None, run_id: UUID,
                         parent_run_id: UUID | None = None, tags: list[str] | None = None, **kwargs: Any) -> None:
        text = token if isinstance(token, str) else ""
        if not text and chunk is not None:
            content = getattr(getattr(chunk, "message", None), "content", None)
            text = content if isinstance(content, str) else getattr(chunk, "text", "") or ""
        if text:
            self._emit(text, run_id)

    def tap_output_iter(self, run_id: UUID, output: Iterator[Any]) -> Iterator[Any]:
        return output

    def tap_output_aiter(self, run_id: UUID, output: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return output


class _Finished:
    __slots__ = ("state", "error")

    def __init__(self, state: RAGState | None = None, error: BaseException | None = None):
        self.state, self.error = state, error


class StateRunnable(Runnable[Any, RAGState]):
    """Base class: a traced ``RAGState -> RAGState`` node with the streaming contract of this module.

    Subclasses write :meth:`_execute` and :meth:`_aexecute` (the work inside the run).
    """

    name: str | None = None

    # -- the work -------------------------------------------------------------------------------------------
    def _execute(self, state: RAGState, config: RunnableConfig, run_manager: CallbackManagerForChainRun,
                 tap: AnswerTokenTap | None) -> RAGState:
        raise NotImplementedError

    async def _aexecute(self, state: RAGState, config: RunnableConfig,
                        run_manager: AsyncCallbackManagerForChainRun, tap: AnswerTokenTap | None) -> RAGState:
        raise NotImplementedError

    @property
    def InputType(self) -> Any:  # noqa: N802 - LangChain's name
        return RAGState | str | Mapping[str, Any]

    @property
    def OutputType(self) -> Any:  # noqa: N802
        return RAGState

    @property
    def config_specs(self) -> list[Any]:
        """``lam`` and ``budget``: per-request λ and $ budget for the routers of the node."""
        return routing_config_specs()

    # RAGState is a dataclass with forward references pydantic cannot resolve: describe it instead.
    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return create_model_v2(self.get_name("Input"), root=(str | dict[str, Any], ...),
                               module_name=type(self).__module__)

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return create_model_v2(self.get_name("Output"), root=(Any, ...), module_name=type(self).__module__)

    # -- invoke -----------------------------------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> RAGState:
        """Run the node in one traced chain run and return the new state."""
        return self._invoke(input, config, None)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> RAGState:
        """Async :meth:`invoke` (truly async: the work awaits, CPU-bound parts run in threads)."""
        return await self._ainvoke(input, config, None)

    def _invoke(self, input: Any, config: RunnableConfig | None, tap: AnswerTokenTap | None) -> RAGState:
        config = ensure_config(config)
        run_manager = get_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None))
        try:
            with routing_from_config(config):  # per-request λ / budget for the routers below
                output = self._execute(coerce_state(input), config, run_manager, tap)
        except BaseException as e:
            run_manager.on_chain_error(e)
            raise
        run_manager.on_chain_end(output)
        return output

    async def _ainvoke(self, input: Any, config: RunnableConfig | None, tap: AnswerTokenTap | None) -> RAGState:
        config = ensure_config(config)
        run_manager = await get_async_callback_manager_for_config(config).on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=config.pop("run_id", None))
        try:
            with routing_from_config(config):
                output = await self._aexecute(coerce_state(input), config, run_manager, tap)
        except BaseException as e:
            await run_manager.on_chain_error(e)
            raise
        await run_manager.on_chain_end(output)
        return output

    # -- streaming --------------------------------------------------------------------------------------------
    def _chunk(self, text: str, run_id: UUID) -> RAGStateChunk:
        return RAGStateChunk(answer_delta=text, node=self.get_name(), llm_run_id=str(run_id))

    def stream(  # type: ignore[override]  # yields chunks: see the module docstring
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[RAGStateChunk]:
        """Answer tokens as LLMs under the node stream them, then the final state (module docstring)."""
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        tap = AnswerTokenTap(lambda text, run_id: items.put(self._chunk(text, run_id)))

        def work() -> None:
            try:
                items.put(_Finished(state=self._invoke(input, config, tap)))
            except BaseException as e:  # handed to the consumer
                items.put(_Finished(error=e))

        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(work,), name=f"rag_routing-stream-{self.get_name()}",
                         daemon=True).start()
        while True:
            item = items.get()
            if isinstance(item, _Finished):
                if item.error is not None:
                    raise item.error
                yield RAGStateChunk(state=item.state, node=self.get_name())
                return
            yield item

    async def astream(  # type: ignore[override]  # yields chunks: see the module docstring
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[RAGStateChunk]:
        """Async :meth:`stream` (the node runs as a task, cancelled if the consumer stops early)."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        def emit(text: str, run_id: UUID) -> None:
            chunk = self._chunk(text, run_id)
            try:
                same_loop = asyncio.get_running_loop() is loop
            except RuntimeError:
                same_loop = False
            if same_loop:
                items.put_nowait(chunk)
            else:  # a token from a worker thread (a synchronous LLM run in asyncio.to_thread)
                loop.call_soon_threadsafe(items.put_nowait, chunk)

        task = asyncio.ensure_future(self._ainvoke(input, config, AnswerTokenTap(emit)))
        task.add_done_callback(lambda _: items.put_nowait(done))
        try:
            while (item := await items.get()) is not done:
                yield item
            yield RAGStateChunk(state=task.result(), node=self.get_name())
        finally:
            if not task.done():
                task.cancel()

    def transform(  # type: ignore[override]  # yields chunks: see the module docstring
        self, input: Iterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[RAGStateChunk]:
        """Stream from the upstream node's final state (how ``a | b`` streams)."""
        yield from self.stream(aggregate_input(input), config, **kwargs)

    async def atransform(  # type: ignore[override]  # yields chunks: see the module docstring
        self, input: AsyncIterator[Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[RAGStateChunk]:
        items = [item async for item in input]
        async for chunk in self.astream(aggregate_input(items), config, **kwargs):
            yield chunk


__all__ = ["StateRunnable", "RAGStateChunk", "AnswerTokenTap", "coerce_state", "aggregate_input", "DECISION_EVENT"]


# LangChain is imported by now: make the ambient meter active (also before the first ledger_scope).
from rag_routing.ledger import ambient_hooks as _ambient_hooks  # noqa: E402

_ambient_hooks.activate()
