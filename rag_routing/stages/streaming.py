"""Streaming a pipeline's answer: the generator's tokens as they are produced, the trace when the stream ends.

A stream is a :class:`StreamControl` made ambient with :func:`streaming_to` (a ContextVar, so worker threads
started with a copied context and asyncio tasks see it). The generator stage's options read it: an LLM that can
stream (``stream_chunks``, as :class:`~rag_routing.llms.local.LocalLLM` and
:class:`~rag_routing.stages.generator.PricedLLM`) hands each piece to ``control.emit``; an LLM that cannot
answers in one piece, which the stream then yields at the end. Framework adapters (LlamaIndex's
``LlamaIndexChatLLM``) read the same control.

:class:`AnswerStream` / :class:`AsyncAnswerStream` run ``pipeline.invoke`` in a worker thread (a task) and
iterate the pieces; ``.state`` is the final :class:`~rag_routing.stages.state.RAGState` (trace included) once the
stream ended. Closing a stream early (``close()``, ``break`` out of an ``async for``, a client that disconnects)
cancels it: the LLM stops at its next token, records the tokens it produced (committing them to the budget's
reservation, releasing the rest), and the pipeline unwinds with :class:`StreamAbandoned`.

Example:
    >>> from rag_routing.stages.state import RAGState
    >>> def pipeline(state):
    ...     current_stream().emit("Li"); current_stream().emit("ma")
    ...     return RAGState.coerce(state).evolve(answer="Lima")
    >>> stream = AnswerStream(pipeline, "Capital of Peru?")
    >>> list(stream), stream.state.answer
    (['Li', 'ma'], 'Lima')
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rag_routing.stages.state import RAGState


#: How long closing an async stream waits for the generation to stop before cancelling the task.
_STOP_WAIT_SECONDS = 30.0


class StreamAbandoned(Exception):
    """Raised inside a pipeline whose stream consumer went away (the generator stopped; nothing is lost)."""


class StreamControl:
    """Where a streaming LLM sends its pieces, and whether the consumer is still listening."""

    __slots__ = ("_sink", "_cancelled", "emitted")

    def __init__(self, sink: Callable[[str], None]):
        self._sink = sink
        self._cancelled = threading.Event()
        self.emitted = 0

    def emit(self, text: str) -> None:
        """Hand one piece to the consumer (raises :class:`StreamAbandoned` once the stream was cancelled)."""
        self.check()
        if text:
            self.emitted += 1
            self._sink(text)

    def check(self) -> None:
        if self._cancelled.is_set():
            raise StreamAbandoned("the stream's consumer stopped reading; generation stopped")

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


_STREAM: contextvars.ContextVar[StreamControl | None] = contextvars.ContextVar("rag_routing_stream", default=None)


@contextmanager
def streaming_to(sink: Callable[[str], None] | StreamControl) -> Iterator[StreamControl]:
    """Make a stream ambient inside the block: streaming LLMs send their pieces to ``sink``."""
    control = sink if isinstance(sink, StreamControl) else StreamControl(sink)
    token = _STREAM.set(control)
    try:
        yield control
    finally:
        _STREAM.reset(token)


def current_stream() -> StreamControl | None:
    """The ambient stream, or ``None`` when nobody streams."""
    return _STREAM.get()


class _End:
    __slots__ = ("state", "error")

    def __init__(self, state: RAGState | None = None, error: BaseException | None = None):
        self.state, self.error = state, error


def _invoke(pipeline: Any, state: Any) -> RAGState:
    invoke = getattr(pipeline, "invoke", None)
    return invoke(state) if callable(invoke) else pipeline(state)


class AnswerStream:
    """Iterate a pipeline's answer pieces; ``state`` holds the final state once the stream ended.

    Args:
        pipeline: an object with ``invoke(state)`` (``RoutedRAG``, a stage) or a callable ``state -> RAGState``.
        state: the query (a str, a dict of state fields, or a RAGState).
    """

    def __init__(self, pipeline: Any, state: Any):
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.control = StreamControl(self._items.put)
        self.state: RAGState | None = None
        self._streamed = False
        self._done = False

        def work() -> None:
            with streaming_to(self.control):
                try:
                    self._items.put(_End(state=_invoke(pipeline, state)))
                except BaseException as e:  # handed to the consumer
                    self._items.put(_End(error=e))

        context = contextvars.copy_context()  # the caller's ambient ledger follows the work
        self._thread = threading.Thread(target=context.run, args=(work,), name="rag_routing-answer-stream",
                                        daemon=True)
        self._thread.start()

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        item = self._items.get()
        if not isinstance(item, _End):
            self._streamed = True
            return item
        self._done = True
        if item.error is not None:
            raise item.error
        self.state = item.state
        if not self._streamed and item.state is not None and item.state.answer:
            return item.state.answer  # an LLM that cannot stream: the answer in one piece
        raise StopIteration

    def close(self, wait: float | None = 30.0) -> None:
        """Stop early: the LLM stops at its next piece and records what it produced (waits for it)."""
        if self._done:
            return
        self._done = True
        self.control.cancel()
        self._thread.join(wait)

    def __enter__(self) -> AnswerStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._done:
            self.control.cancel()


class AsyncAnswerStream:
    """Async :class:`AnswerStream`: the pipeline runs as a task (``ainvoke``), cancelled if the consumer leaves."""

    def __init__(self, pipeline: Any, state: Any):
        self._pipeline, self._input = pipeline, state
        self.state: RAGState | None = None
        self.control: StreamControl | None = None
        self._iterator: AsyncIterator[str] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def _run(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def sink(text: str) -> None:
            try:
                same_loop = asyncio.get_running_loop() is loop
            except RuntimeError:
                same_loop = False
            if same_loop:
                items.put_nowait(text)
            else:  # a piece from a worker thread (a synchronous LLM in asyncio.to_thread)
                loop.call_soon_threadsafe(items.put_nowait, text)

        self.control = control = StreamControl(sink)

        async def work() -> None:
            with streaming_to(control):
                try:
                    ainvoke = getattr(self._pipeline, "ainvoke", None)
                    result = await ainvoke(self._input) if callable(ainvoke) else await asyncio.to_thread(
                        _invoke, self._pipeline, self._input)
                    items.put_nowait(_End(state=result))
                except BaseException as e:
                    items.put_nowait(_End(error=e))

        task = asyncio.ensure_future(work())
        streamed = False
        try:
            while not isinstance(item := await items.get(), _End):
                streamed = True
                yield item
            if item.error is not None:
                raise item.error
            self.state = item.state
            if not streamed and item.state is not None and item.state.answer:
                yield item.state.answer
        finally:
            if not task.done():
                # The generator stops at its next piece and records what it produced; wait for that (the
                # ledger is complete when aclose returns), cancelling the task only if it does not stop.
                control.cancel()
                _, pending = await asyncio.wait({task}, timeout=_STOP_WAIT_SECONDS)
                if pending:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop early (as :meth:`AnswerStream.close`)."""
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]


__all__ = ["AnswerStream", "AsyncAnswerStream", "StreamControl", "StreamAbandoned", "streaming_to",
           "current_stream"]
