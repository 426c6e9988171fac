"""`RoutedRAG`: the stage routers composed into one pipeline whose every answer carries a decision trace.

Order: retrieval strategy (which runs the retriever stage once per retrieval step) or the retriever alone ->
context (Self-Route: it calls the prompt and generator stages itself, maybe twice) -> prompt -> generator.
Any subset works; a missing context stage joins the top chunks, a missing prompt stage uses the direct prompt,
and without a generator the pipeline stops after the context (retrieval only). The answer's ``trace`` holds
one step per stage run — what it chose, why, and the ledger's $, tokens, seconds and energy for that step —
and the steps add up to the ledger's totals for the request.

:meth:`RoutedRAG.stream` / :meth:`RoutedRAG.astream` yield the generator's pieces as they are produced (an LLM
that cannot stream gives its answer in one piece); the stream's ``state`` is the final state, trace included,
once it ended. Closing a stream early stops the generator, which records what it produced and releases the
rest of its budget reservation.

Example:
    >>> from rag_routing.retrieval import BM25Retriever
    >>> docs = [{"_id": "a", "text": "Lima is the capital of Peru."}, {"_id": "b", "text": "Quito is in Ecuador."}]
    >>> rag = RoutedRAG(retriever=BM25Retriever().add_documents(docs), generator=lambda messages: "Lima", k=1)
    >>> out = rag.invoke("What is the capital of Peru?")
    >>> out.answer, [step.stage for step in out.trace]
    ('Lima', ['retriever', 'generator'])
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.scope import ledger_scope
from rag_routing.stages.base import StageRouter, StateInput, arun_option, run_option
from rag_routing.stages.batching import Batchable
from rag_routing.stages.context import ChunkContext, ContextRouter
from rag_routing.stages.generator import as_generator
from rag_routing.stages.prompt import DIRECT
from rag_routing.stages.retrieval_strategy import RetrievalStrategyRouter
from rag_routing.stages.retriever import as_retriever_stage
from rag_routing.stages.state import RAGState
from rag_routing.stages.streaming import AnswerStream, AsyncAnswerStream


class AnswerChain:
    """Prompt stage (or the direct prompt) then generator stage: ``state.context`` in, ``state.answer`` out."""

    def __init__(self, prompt: Any, generator: Any):
        self.prompt, self.generator = prompt, generator

    def invoke(self, state: RAGState) -> RAGState:
        built = run_option(self.prompt, state) if self.prompt is not None else DIRECT.invoke(state)
        return run_option(self.generator, built)

    async def ainvoke(self, state: RAGState) -> RAGState:
        built = await arun_option(self.prompt, state) if self.prompt is not None else DIRECT.invoke(state)
        return await arun_option(self.generator, built)

    __call__ = invoke


class RoutedRAG(Batchable):
    """A RAG pipeline with a router at every stage (see module docstring).

    Args:
        retrieval_strategy: a :class:`~rag_routing.stages.retrieval_strategy.RetrievalStrategyRouter` (it
            owns its retriever); or ``None``.
        retriever: without a retrieval strategy, a Retriever or retriever stage run once per query.
        context: a :class:`~rag_routing.stages.context.ContextRouter` (Self-Route when a generator is given).
        prompt: a prompt stage (:class:`~rag_routing.stages.prompt.PromptStrategyRouter`) or ``None``.
        generator: a :class:`~rag_routing.stages.generator.GeneratorRouter`, an LLM, or a callable
            ``messages -> str``; ``None`` for retrieval only.
        k: documents per retrieval when ``retriever`` is a plain Retriever.
        max_chunks: chunks in the context when there is no context stage.
        ledger: record every call into this ledger (default: the ambient one, if any).
    """

    def __init__(self, *, retrieval_strategy: RetrievalStrategyRouter | StageRouter | None = None,
                 retriever: Any = None, context: ContextRouter | None = None, prompt: Any = None,
                 generator: Any = None, k: int = 5, max_chunks: int = 5, ledger: CostLedger | None = None):
        if retrieval_strategy is not None and retriever is not None:
            raise InvalidInputError("pass the retriever to RetrievalStrategyRouter(retriever=...), which runs it "
                                    "once per retrieval step; RoutedRAG(retriever=...) is for single-step pipelines")
        if context is not None and not isinstance(context, ContextRouter):
            raise InvalidInputError(f"context must be a ContextRouter, got {type(context).__name__}")
        self.retrieval = retrieval_strategy if retrieval_strategy is not None else (
            as_retriever_stage(retriever, k=k) if retriever is not None else None)
        self.prompt = prompt
        self.generator = as_generator(generator) if generator is not None else None
        self.answer_chain = AnswerChain(prompt, self.generator) if self.generator is not None else None
        self.context = context.with_answerer(self.answer_chain) if context is not None else None
        self.default_context = ChunkContext(max_chunks)
        self.ledger = ledger

    @property
    def stages(self) -> dict[str, Any]:
        """The stages in order (``None`` where absent)."""
        return {"retrieval": self.retrieval, "context": self.context, "prompt": self.prompt,
                "generator": self.generator}

    @contextmanager
    def _scope(self) -> Iterator[None]:
        with ledger_scope(self.ledger) if self.ledger is not None else nullcontext():
            yield

    # -- running --------------------------------------------------------------------------------------------
    def invoke(self, state: StateInput) -> RAGState:
        """Answer one query (a str, a dict of RAGState fields, or a RAGState); returns the final state."""
        state = RAGState.coerce(state)
        with self._scope():
            if self.retrieval is not None:
                state = run_option(self.retrieval, state)
            if self.context is not None:
                return run_option(self.context, state)
            state = self.default_context.invoke(state)
            return self.answer_chain.invoke(state) if self.answer_chain is not None else state

    async def ainvoke(self, state: StateInput) -> RAGState:
        """Async :meth:`invoke` (the same answer and trace)."""
        state = RAGState.coerce(state)
        with self._scope():
            if self.retrieval is not None:
                state = await arun_option(self.retrieval, state)
            if self.context is not None:
                return await arun_option(self.context, state)
            state = self.default_context.invoke(state)
            return await self.answer_chain.ainvoke(state) if self.answer_chain is not None else state

    __call__ = invoke

    def stream(self, state: StateInput) -> AnswerStream:
        """The answer's pieces as the generator produces them; ``.state`` is the final state at the end.

        Example:
            >>> from rag_routing.retrieval import BM25Retriever
            >>> docs = [{"_id": "a", "text": "Lima is the capital of Peru."}]
            >>> rag = RoutedRAG(retriever=BM25Retriever().add_documents(docs), generator=lambda m: "Lima", k=1)
            >>> stream = rag.stream("What is the capital of Peru?")
            >>> "".join(stream), [step.stage for step in stream.state.trace]
            ('Lima', ['retriever', 'generator'])
        """
        return AnswerStream(self, RAGState.coerce(state))

    def astream(self, state: StateInput) -> AsyncAnswerStream:
        """Async :meth:`stream` (``async for piece in rag.astream(q)``; ``.state`` at the end)."""
        return AsyncAnswerStream(self, RAGState.coerce(state))

    # -- the offline default --------------------------------------------------------------------------------
    @classmethod
    def default(cls, corpus_path: str | os.PathLike[str] | None = None, *, llm: Any = None, k: int = 4,
                max_steps: int = 2, ledger: CostLedger | None = None, **components: Any) -> RoutedRAG:
        """The offline default pipeline over a BEIR-style corpus (default: the bundled demo corpus).

        MiniLM dense + BM25 + hybrid (RRF) retrievers (retriever stage, default hybrid); Adaptive-RAG's
        complexity classifier trained on the bundled labelled example queries
        (:data:`~rag_routing.stages.examples.COMPLEXITY_EXAMPLES`); Self-Route context over the corpus's
        ``parent_id`` documents; direct prompt; the local SmolLM2-135M-Instruct generator. Any component can
        be replaced by keyword (``retrieval_strategy=``, ``context=``, ``prompt=``, ``generator=``).
        """
        from rag_routing.stages.defaults import build_default_components

        parts = build_default_components(corpus_path, llm=llm, k=k, max_steps=max_steps)
        parts.update(components)
        return cls(ledger=ledger, **parts)

    def __repr__(self) -> str:
        names = {key: type(stage).__name__ for key, stage in self.stages.items() if stage is not None}
        return f"RoutedRAG({names})"


__all__ = ["RoutedRAG", "AnswerChain"]
