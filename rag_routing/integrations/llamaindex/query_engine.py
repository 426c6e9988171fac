"""`RoutedRAGQueryEngine`: a whole routed RAG pipeline (``RoutedRAG``, or one stage) as a LlamaIndex query engine.

``query`` / ``aquery`` run the pipeline and return a ``Response``: the answer, the retrieved documents as
``source_nodes`` (``NodeWithScore`` over ``TextNode`` with the document id, text, title and metadata), and
``metadata`` with the decision ``trace`` (one dict per stage: choice, reason, $, tokens, seconds), the request's
``cost`` (the trace's totals, equal to the ledger's) and the ``choices`` per stage. Each stage's decision is
also dispatched as a :class:`~rag_routing.integrations.llamaindex.events.RoutingDecisionEvent`.

With ``streaming=True`` the engine returns a ``StreamingResponse`` (``AsyncStreamingResponse`` from ``aquery``):
the pipeline starts at once (in a worker thread / task that inherits the caller's ambient ledger) and its
``response_gen`` yields the generator's tokens as a :class:`~rag_routing.integrations.llamaindex.chat_llm.
LlamaIndexChatLLM` streams them — or the whole answer in one piece for an LLM that cannot stream.
``source_nodes`` and ``metadata`` are filled in when the stream ends; ``metadata["answer"]`` is then the final
answer (the streamed text is the LLM's raw output, before e.g. a chain-of-thought prefix is stripped).

Because it is a query engine it plugs into ``RouterQueryEngine`` (a
:class:`~rag_routing.integrations.llamaindex.selector.RoutingSelector` choosing between whole pipelines),
``QueryEngineTool`` and agents.

Example:
    >>> from rag_routing.retrieval import BM25Retriever
    >>> from rag_routing.stages import RoutedRAG
    >>> docs = [{"_id": "a", "text": "Lima is the capital of Peru."}, {"_id": "b", "text": "Quito is in Ecuador."}]
    >>> rag = RoutedRAG(retriever=BM25Retriever().add_documents(docs), generator=lambda messages: "Lima", k=1)
    >>> response = RoutedRAGQueryEngine(rag).query("What is the capital of Peru?")
    >>> str(response), response.source_nodes[0].node.node_id, list(response.metadata["choices"])
    ('Lima', 'a', ['retriever', 'generator'])
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import AsyncGenerator, Generator
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import RESPONSE_TYPE, AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rag_routing.errors import InvalidInputError
from rag_routing.integrations.llamaindex.chat_llm import TOKEN_SINK
from rag_routing.integrations.llamaindex.events import emit_decision
from rag_routing.stages.state import RAGState


def source_nodes(state: RAGState) -> list[NodeWithScore]:
    """The state's retrieved documents as LlamaIndex ``NodeWithScore`` objects, best first."""
    nodes = []
    for hit in state.documents:
        metadata = {**dict(hit.document.metadata), "title": hit.title, "rank": hit.rank, "retriever": hit.retriever}
        nodes.append(NodeWithScore(node=TextNode(id_=hit.id, text=hit.text, metadata=metadata), score=hit.score))
    return nodes


def response_metadata(state: RAGState) -> dict[str, Any]:
    """``{"answer", "trace", "cost", "choices"}`` of a final state."""
    return {"answer": state.answer, "trace": [step.to_dict() for step in state.trace], "cost": state.cost(),
            "choices": state.choices()}


def _pending_metadata() -> dict[str, Any]:
    # Filled in place when the stream ends; never empty, or RouterQueryEngine would swap in a new dict.
    return {"answer": None, "trace": [], "cost": None, "choices": {}, "streaming": True}


class _End:
    __slots__ = ("state", "error")

    def __init__(self, state: RAGState | None = None, error: BaseException | None = None):
        self.state, self.error = state, error

    def result(self) -> RAGState:
        if self.error is not None:
            raise self.error
        assert self.state is not None
        return self.state


class RoutedRAGQueryEngine(BaseQueryEngine):
    """A routed RAG pipeline as a LlamaIndex query engine (module docstring).

    Args:
        pipeline: a ``RoutedRAG``, a stage, or any object with ``invoke(state)`` (and ``ainvoke``) returning a
            :class:`~rag_routing.stages.state.RAGState`.
        streaming: return streaming responses.
        emit_events: dispatch a ``RoutingDecisionEvent`` per trace step.
        callback_manager: LlamaIndex's legacy callback manager.
    """

    def __init__(self, pipeline: Any, *, streaming: bool = False, emit_events: bool = True,
                 callback_manager: CallbackManager | None = None):
        if not callable(getattr(pipeline, "invoke", None)):
            raise InvalidInputError(f"RoutedRAGQueryEngine needs a pipeline with invoke(state), got "
                                    f"{type(pipeline).__name__}")
        self.pipeline = pipeline
        self.streaming = streaming
        self.emit_events = emit_events
        super().__init__(callback_manager)

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    # -- shared -------------------------------------------------------------------------------------------
    def _emit(self, state: RAGState) -> None:
        if not self.emit_events:
            return
        for step in state.trace:
            decision = dict(step.decision) if step.decision is not None else None
            emit_decision(stage=step.stage, choice=step.choice, reason=step.reason, query=state.query,
                          decision_id=step.decision_id, router=(decision or {}).get("router") or None,
                          decision=decision, cost_usd=step.usd)

    def _response(self, state: RAGState) -> Response:
        self._emit(state)
        return Response(response=state.answer, source_nodes=source_nodes(state), metadata=response_metadata(state))

    def _finish_stream(self, state: RAGState, nodes: list[NodeWithScore], metadata: dict[str, Any]) -> None:
        self._emit(state)
        nodes.extend(source_nodes(state))
        metadata.update(response_metadata(state))

    # -- sync -----------------------------------------------------------------------------------------------
    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        state = RAGState(query=query_bundle.query_str)
        if not self.streaming:
            return self._response(self.pipeline.invoke(state))
        nodes: list[NodeWithScore] = []
        metadata = _pending_metadata()
        return StreamingResponse(response_gen=self._tokens(state, nodes, metadata), source_nodes=nodes,
                                 metadata=metadata)

    def _tokens(self, state: RAGState, nodes: list[NodeWithScore],
                metadata: dict[str, Any]) -> Generator[str, None, None]:
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def work() -> None:
            TOKEN_SINK.set(items.put)
            try:
                items.put(_End(state=self.pipeline.invoke(state)))
            except BaseException as e:  # handed to the consumer
                items.put(_End(error=e))

        context = contextvars.copy_context()  # the caller's ledger and span, captured at query time
        threading.Thread(target=context.run, args=(work,), name="rag_routing-query-stream", daemon=True).start()
        return self._drain(items.get, nodes, metadata)

    def _drain(self, get: Any, nodes: list[NodeWithScore], metadata: dict[str, Any]) -> Generator[str, None, None]:
        streamed = False
        while not isinstance(item := get(), _End):
            streamed = True
            yield item
        state = item.result()
        self._finish_stream(state, nodes, metadata)
        if not streamed and state.answer:
            yield state.answer

    # -- async ----------------------------------------------------------------------------------------------
    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        state = RAGState(query=query_bundle.query_str)
        if not self.streaming:
            return self._response(await self._ainvoke(state))
        nodes: list[NodeWithScore] = []
        metadata = _pending_metadata()
        return AsyncStreamingResponse(response_gen=self._atokens(state, nodes, metadata), source_nodes=nodes,
                                      metadata=metadata)

    async def _ainvoke(self, state: RAGState) -> RAGState:
        ainvoke = getattr(self.pipeline, "ainvoke", None)
        if callable(ainvoke):
            return await ainvoke(state)
        return await asyncio.to_thread(self.pipeline.invoke, state)

    async def _atokens(self, state: RAGState, nodes: list[NodeWithScore],
                       metadata: dict[str, Any]) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()

        def sink(text: str) -> None:
            try:
                same_loop = asyncio.get_running_loop() is loop
            except RuntimeError:
                same_loop = False
            if same_loop:
                items.put_nowait(text)
            else:
                loop.call_soon_threadsafe(items.put_nowait, text)

        async def work() -> None:
            TOKEN_SINK.set(sink)  # a task runs in its own copy of the context
            try:
                items.put_nowait(_End(state=await self._ainvoke(state)))
            except BaseException as e:
                items.put_nowait(_End(error=e))

        task = asyncio.ensure_future(work())
        try:
            streamed = False
            while not isinstance(item := await items.get(), _End):
                streamed = True
                yield item
            state = item.result()
            self._finish_stream(state, nodes, metadata)
            if not streamed and state.answer:
                yield state.answer
        finally:
            if not task.done():
                task.cancel()

    def __repr__(self) -> str:
        return f"RoutedRAGQueryEngine({self.pipeline!r}, streaming={self.streaming})"


__all__ = ["RoutedRAGQueryEngine", "source_nodes", "response_metadata"]
