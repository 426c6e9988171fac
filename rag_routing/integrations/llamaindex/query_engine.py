"""`RoutedRAGQueryEngine`: a whole routed RAG pipeline (``RoutedRAG``, or one stage) as a LlamaIndex query engine.

``query`` / ``aquery`` run the pipeline and return a ``Response``: the answer, the retrieved documents as
``source_nodes`` (``NodeWithScore`` over ``TextNode`` with the document id, text, title and metadata), and
``metadata`` with the decision ``trace`` (one dict per stage: choice, reason, $, tokens, seconds), the request's
``cost`` (the trace's totals, equal to the ledger's) and the ``choices`` per stage. Each stage's decision is
also dispatched as a :class:`~rag_routing.integrations.llamaindex.events.RoutingDecisionEvent`.

With ``streaming=True`` the engine returns a ``StreamingResponse`` (``AsyncStreamingResponse`` from ``aquery``):
the pipeline starts at once (in a worker thread / task that inherits the caller's ambient ledger) and its
``response_gen`` yields the generator's tokens as they are produced — the local model, a
:class:`~rag_routing.integrations.llamaindex.chat_llm.LlamaIndexChatLLM`, any LLM with ``stream_chunks`` (see
:mod:`rag_routing.stages.streaming`) — or the whole answer in one piece for an LLM that cannot stream. A stream
the client abandons stops the generator, which bills the tokens it produced and releases the rest.
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
from collections.abc import AsyncGenerator, Generator
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import RESPONSE_TYPE, AsyncStreamingResponse, Response, StreamingResponse
from llama_index.core.callbacks import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rag_routing.errors import InvalidInputError
from rag_routing.integrations.llamaindex.events import emit_decision
from rag_routing.stages.state import RAGState
from rag_routing.stages.streaming import AnswerStream, AsyncAnswerStream


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
        # The pipeline starts now, in a worker thread with the caller's context (ambient ledger, span).
        stream = AnswerStream(self.pipeline, state)
        return StreamingResponse(response_gen=self._drain(stream, nodes, metadata), source_nodes=nodes,
                                 metadata=metadata)

    def _drain(self, stream: AnswerStream, nodes: list[NodeWithScore],
               metadata: dict[str, Any]) -> Generator[str, None, None]:
        try:
            yield from stream
            assert stream.state is not None
            self._finish_stream(stream.state, nodes, metadata)
        finally:
            stream.close()  # abandoned: the generator stops and bills what it produced

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
        stream = AsyncAnswerStream(self.pipeline, state)
        iterator = stream.__aiter__()
        try:
            async for piece in iterator:
                yield piece
            assert stream.state is not None
            self._finish_stream(stream.state, nodes, metadata)
        finally:
            await stream.aclose()

    def __repr__(self) -> str:
        return f"RoutedRAGQueryEngine({self.pipeline!r}, streaming={self.streaming})"


__all__ = ["RoutedRAGQueryEngine", "source_nodes", "response_metadata"]
