"""Retrieval-strategy stage: no retrieval, single-step or multi-step retrieval (Adaptive-RAG).

Jeong et al. 2024 ("Adaptive-RAG: Learning to Adapt Retrieval-Augmented Large Language Models through
Question Complexity", NAACL) route each query to the cheapest strategy that suffices: simple queries need no
retrieval, most need one retrieval, compositional (multi-hop) ones need iterative retrieval. The router is a
query-complexity classifier trained on silver labels — the simplest strategy that answered right
(:mod:`rag_routing.stages.complexity`).

Options (each a ``RAGState -> RAGState`` node):

* ``none`` — :class:`NoRetrieval`: no documents; the generator answers from what it knows (or chats).
* ``single`` — :class:`SingleStepRetrieval`: one retrieval with the query.
* ``multi`` — :class:`MultiStepRetrieval`, IRCoT-like (Trivedi et al. 2023): retrieve; let the LLM write one
  short sentence that helps answer the question from what was found; retrieve again with the question plus
  that sentence; repeat up to ``max_steps`` retrievals, keeping every new document. Greedy decoding, so the
  same query always gives the same documents.

The retrieval itself is a retriever stage (a :class:`~rag_routing.stages.retriever.RetrieverRouter`, whose
own choice appears in the trace once per retrieval) or any Retriever.

Example:
    >>> from rag_routing.retrieval import BM25Retriever
    >>> docs = [{"_id": "a", "text": "Lima is the capital of Peru."}, {"_id": "b", "text": "Quito is in Ecuador."}]
    >>> stage = RetrievalStrategyRouter(BM25Retriever().add_documents(docs), k=1)
    >>> out = stage.invoke("capital of Peru")
    >>> out.choices()["retrieval_strategy"], out.document_ids
    ('single', ['a'])
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from dataclasses import replace as dataclass_replace
from typing import Any

import numpy as np

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import InvalidInputError
from rag_routing.retrieval.documents import ScoredDocument
from rag_routing.stages.base import Option, StageChoice, StageRouter, arun_option, run_option
from rag_routing.stages.generator import call_llm
from rag_routing.stages.complexity import STRATEGIES, ComplexityClassifierRouter, complexity_dataset
from rag_routing.stages.retrieval_probe import PROBE_FEATURIZER, RetrievalProbe
from rag_routing.stages.retriever import as_retriever_stage
from rag_routing.stages.selection import KeepsBestFixed
from rag_routing.stages.state import RAGState

THOUGHT_PROMPT = ("Read the context and write one short sentence stating a fact from it that helps answer the "
                  "question.")
#: Characters of each document shown to the LLM when it writes a follow-up sentence.
THOUGHT_DOC_CHARS = 500


class NoRetrieval:
    """The ``none`` option: no documents, no context."""

    def invoke(self, state: RAGState) -> RAGState:
        return state.evolve(documents=[], context="", metadata={**state.metadata, "retrieval_queries": []})

    async def ainvoke(self, state: RAGState) -> RAGState:
        return self.invoke(state)

    def resume(self, state: RAGState, probe: RAGState) -> RAGState:
        """After a retrieval probe: drop its documents (its trace steps stay: it was paid for)."""
        return self.invoke(state).evolve(trace=probe.trace)

    async def aresume(self, state: RAGState, probe: RAGState) -> RAGState:
        return self.resume(state, probe)


class _Retrieval:
    """Shared retrieval through a retriever stage (nested trace steps are kept)."""

    def __init__(self, retriever: Any, k: int):
        self.stage = as_retriever_stage(retriever, k=k)
        self.k = k

    def _sub(self, state: RAGState, query: str) -> RAGState:
        return state.evolve(query=query, documents=[], metadata={**state.metadata, "retrieval_k": self.k})

    def retrieve(self, state: RAGState, query: str) -> RAGState:
        return run_option(self.stage, self._sub(state, query))

    async def aretrieve(self, state: RAGState, query: str) -> RAGState:
        return await arun_option(self.stage, self._sub(state, query))

    def _done(self, state: RAGState, found: RAGState, docs: list[ScoredDocument], **info: Any) -> RAGState:
        metadata = {k: v for k, v in state.metadata.items() if k != "retrieval_k"}
        return state.evolve(documents=docs, trace=found.trace, metadata={**metadata, **info})


class SingleStepRetrieval(_Retrieval):
    """The ``single`` option: one retrieval with the query."""

    def invoke(self, state: RAGState) -> RAGState:
        return self.resume(state, self.retrieve(state, state.query))

    async def ainvoke(self, state: RAGState) -> RAGState:
        return self.resume(state, await self.aretrieve(state, state.query))

    def resume(self, state: RAGState, probe: RAGState) -> RAGState:
        """Answer from a retrieval probe's documents (the probe *is* the single retrieval)."""
        return self._done(state, probe, probe.documents, retrieval_queries=[state.query])

    async def aresume(self, state: RAGState, probe: RAGState) -> RAGState:
        return self.resume(state, probe)


def _llm_text(llm: Any, messages: list[dict[str, str]], max_new_tokens: int) -> str:
    text = call_llm(llm, messages, max_new_tokens, component="multi-step-thought")
    return " ".join(text.split())


def thought_messages(question: str, documents: Sequence[ScoredDocument]) -> list[dict[str, str]]:
    """The follow-up prompt of multi-step retrieval (documents cut to :data:`THOUGHT_DOC_CHARS`)."""
    context = "\n".join(f"{d.title + ': ' if d.title else ''}{d.text[:THOUGHT_DOC_CHARS]}" for d in documents)
    return [{"role": "system", "content": THOUGHT_PROMPT},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"}]


class MultiStepRetrieval(_Retrieval):
    """The ``multi`` option: iterative retrieval guided by the LLM's follow-up sentences (IRCoT-like).

    Args:
        retriever: a retriever stage or Retriever.
        llm: an object with ``generate(messages, max_new_tokens=, temperature=)`` or a callable
            ``messages -> str``; it writes the follow-up sentences (its calls count for this stage).
        k: documents per retrieval.
        max_steps: retrievals at most (>= 2).
        thought_tokens: tokens per follow-up sentence.
        thought_documents: how many of the latest documents the LLM reads per step.
    """

    def __init__(self, retriever: Any, llm: Any, k: int = 5, *, max_steps: int = 3, thought_tokens: int = 24,
                 thought_documents: int = 2):
        super().__init__(retriever, k)
        if llm is None or not (callable(getattr(llm, "generate", None)) or callable(llm)):
            raise InvalidInputError("multi-step retrieval needs an llm (generate(messages, ...) or a callable)")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 2:
            raise InvalidInputError(f"max_steps must be an integer >= 2, got {max_steps!r}")
        self.llm, self.max_steps = llm, max_steps
        self.thought_tokens, self.thought_documents = int(thought_tokens), int(thought_documents)

    def _next_query(self, question: str, latest: list[ScoredDocument]) -> str | None:
        thought = _llm_text(self.llm, thought_messages(question, latest[: self.thought_documents]),
                            self.thought_tokens)
        return f"{question} {thought}" if thought else None

    @staticmethod
    def _merge(docs: list[ScoredDocument], new: list[ScoredDocument]) -> list[ScoredDocument]:
        seen = {d.id for d in docs}
        return [d for d in new if d.id not in seen]

    @staticmethod
    def _reranked(docs: list[ScoredDocument]) -> list[ScoredDocument]:
        return [replace(d, rank=i) for i, d in enumerate(docs, 1)]

    def invoke(self, state: RAGState) -> RAGState:
        return self.resume(state, self.retrieve(state, state.query))

    async def ainvoke(self, state: RAGState) -> RAGState:
        return await self.aresume(state, await self.aretrieve(state, state.query))

    def resume(self, state: RAGState, found: RAGState) -> RAGState:
        """Continue from a first retrieval (``found``, e.g. a retrieval probe) with the follow-up steps."""
        docs, latest, queries = list(found.documents), list(found.documents), [state.query]
        for _ in range(1, self.max_steps):
            query = self._next_query(state.query, latest) if latest else None
            if query is None:
                break
            queries.append(query)
            found = self.retrieve(found, query)
            latest = self._merge(docs, found.documents)
            if not latest:
                break
            docs.extend(latest)
        return self._done(state, found, self._reranked(docs), retrieval_queries=queries)

    async def aresume(self, state: RAGState, found: RAGState) -> RAGState:
        docs, latest, queries = list(found.documents), list(found.documents), [state.query]
        for _ in range(1, self.max_steps):
            query = await asyncio.to_thread(self._next_query, state.query, latest) if latest else None
            if query is None:
                break
            queries.append(query)
            found = await self.aretrieve(found, query)
            latest = self._merge(docs, found.documents)
            if not latest:
                break
            docs.extend(latest)
        return self._done(state, found, self._reranked(docs), retrieval_queries=queries)


class RetrievalStrategyRouter(KeepsBestFixed, StageRouter):
    """Chooses none / single-step / multi-step retrieval per query (Adaptive-RAG).

    Args:
        retriever: a Retriever or a retriever stage (e.g. :class:`~rag_routing.stages.retriever.RetrieverRouter`).
        llm: the LLM that writes multi-step follow-up sentences (without it there is no ``multi`` option).
        k: documents per retrieval.
        max_steps: retrievals at most in ``multi``.
        options: replace the built options (``{name: option}``).
        router: a router over the option names, e.g. :class:`~rag_routing.stages.complexity.ComplexityClassifierRouter`
            (see :meth:`fit_from_outcomes`); ``None`` uses ``default``.
        default: the option without a router (default ``"single"``).
        lam, budget, name: see :class:`~rag_routing.stages.base.StageRouter`.
        probe: route *after* a first retrieval, on its scores (:mod:`rag_routing.stages.retrieval_probe`):
            ``True`` (the default :class:`~rag_routing.stages.retrieval_probe.RetrievalProbe`), a
            ``RetrievalProbe``, or ``None`` (route on the question alone, Adaptive-RAG). The chosen option
            reuses the probe's documents. The router must be fitted on probe features
            (:meth:`fit_from_outcomes` does it; default router: a ClusterRouter over retrieval-confidence bins).
    """

    stage = "retrieval_strategy"

    def __init__(self, retriever: Any = None, llm: Any = None, *, k: int = 5, max_steps: int = 3,
                 options: Mapping[str, Option] | None = None, router: Any = None, default: str | None = None,
                 lam: float | None = None, budget: float | None = None, name: str | None = None,
                 thought_tokens: int = 24, probe: bool | RetrievalProbe | None = None):
        self.probe = _as_probe(probe, k)
        if self.probe is not None and retriever is None:
            raise InvalidInputError("a retrieval probe needs the stage's retriever (probe=... with options only "
                                    "has nothing to retrieve with)")
        self._probe_retrieval = None if self.probe is None else SingleStepRetrieval(retriever, k)
        if options is None:
            if retriever is None:
                raise InvalidInputError("RetrievalStrategyRouter needs a retriever (or options)")
            options = {"none": NoRetrieval(), "single": SingleStepRetrieval(retriever, k)}
            if llm is not None:
                options["multi"] = MultiStepRetrieval(retriever, llm, k, max_steps=max_steps,
                                                      thought_tokens=thought_tokens)
        if default is None:
            default = "single" if "single" in options else None
        self.k, self.max_steps = k, max_steps
        super().__init__(options, router=router, default=default, lam=lam, budget=budget, name=name)

    def default_router(self) -> Any:
        """Adaptive-RAG's complexity classifier (logistic regression over MiniLM embeddings); with a probe, a
        :class:`~rag_routing.routers.similarity.ClusterRouter` over retrieval-confidence bins (hard k-means on
        the probe features, each strategy's mean outcome per bin)."""
        if self.probe is not None:
            from rag_routing.routers.similarity import ClusterRouter

            return ClusterRouter(n_clusters=4, assignment="hard", featurizer=PrecomputedFeaturizer(PROBE_FEATURIZER))
        return ComplexityClassifierRouter()

    # -- the retrieval probe ------------------------------------------------------------------------------
    def probe_features(self, queries: Sequence[str]) -> np.ndarray:
        """``(n, width)`` probe features of ``queries`` (one retrieval each, recorded in the ambient ledger)."""
        if self.probe is None or self._probe_retrieval is None:
            raise InvalidInputError(f"stage {self.name!r} has no retrieval probe (build it with probe=True)")
        found = [self._probe_retrieval.retrieve(RAGState(query=str(q)), str(q)).documents for q in queries]
        return self.probe.features_batch([str(q) for q in queries], found)

    def choose(self, state: Any) -> StageChoice:
        """With a probe: retrieve once, route on the retrieval's features, hand the documents to the option."""
        state = RAGState.coerce(state)
        if self.probe is None or self._probe_retrieval is None or self._router is None:
            return super().choose(state)
        self._check_router_ready()
        started = time.perf_counter()
        found = self._probe_retrieval.retrieve(state, state.query)
        spent = time.perf_counter() - started
        features = self.probe.features(state.query, found.documents)
        featurizer = getattr(getattr(self._router, "featurizer_", None), "name", None)
        if featurizer != PROBE_FEATURIZER:
            raise InvalidInputError(
                f"stage {self.name!r} routes on retrieval-probe features, but its router was fitted on "
                f"{featurizer!r} features; fit it with fit_from_outcomes (or on a dataset whose embeddings are "
                f"probe features and featurizer=PrecomputedFeaturizer({PROBE_FEATURIZER!r}))")
        choice = self._route(features[None, :])
        reason = f"{choice.reason}; probe {', '.join(f'{n}={v:.3g}' for n, v in zip(self.probe.names, features))}"
        return dataclass_replace(choice, reason=reason, prepared=found, recorded_seconds=spent)

    def fit_from_outcomes(self, queries: Sequence[str], outcomes: Mapping[str, Sequence[float]],
                          costs: Mapping[str, Any] | None = None, *, router: Any = None,
                          fallback: Sequence[str | None] | None = None,
                          threshold: float = 0.5) -> RetrievalStrategyRouter:
        """Train the complexity classifier from outcomes (Adaptive-RAG's silver labels).

        Args:
            queries: training queries.
            outcomes: ``{"none": [...], "single": [...], "multi": [...]}`` correctness (bools or scores) per
                query; the label is the simplest strategy whose outcome is >= ``threshold``.
            costs: ``{strategy: $ or [$ per query]}`` (the router's cost estimates).
            router: the router to fit (default :class:`ComplexityClassifierRouter`); a router without
                silver-label support learns the cheapest strategy reaching the best outcome instead.
            fallback: per-query label for queries no strategy answered (Adaptive-RAG's dataset bias:
                ``"single"`` for single-hop data, ``"multi"`` for multi-hop); ``None`` leaves them out.

        With a probe the router learns each strategy's outcome itself (any score: 1/0, F1, ...) from the
        probe features of ``queries`` (one retrieval each); ``fallback`` and ``threshold`` do not apply.
        """
        order = [s for s in STRATEGIES if s in self.options and s in outcomes]
        if self.probe is not None:
            # Routing after the probe: learn each strategy's outcome from the retrieval's features.
            from rag_routing.stages.fitting import outcomes_dataset

            dataset = outcomes_dataset(queries, {s: outcomes[s] for s in order},
                                       None if costs is None else {s: c for s, c in costs.items() if s in order},
                                       order, name="retrieval-probe")
            dataset = dataset.with_embeddings(self.probe_features(dataset.queries), PROBE_FEATURIZER)
        else:
            dataset = complexity_dataset(queries, outcomes, costs, fallback=fallback, threshold=threshold,
                                         order=order)
        self.fit(dataset, router)
        return self

    def _run(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        if choice.prepared is not None:
            option = self.options[choice.choice]
            result = option.resume(state, choice.prepared)
            return result, choice.choice, self._info(result)
        result, reported, extra = super()._run(choice, state)
        return result, reported, {**extra, **self._info(result)}

    async def _arun(self, choice: StageChoice, state: RAGState) -> tuple[RAGState, str, dict[str, Any]]:
        if choice.prepared is not None:
            option = self.options[choice.choice]
            result = await option.aresume(state, choice.prepared)
            return result, choice.choice, self._info(result)
        result, reported, extra = await super()._arun(choice, state)
        return result, reported, {**extra, **self._info(result)}

    @staticmethod
    def _info(result: RAGState) -> dict[str, Any]:
        queries = result.metadata.get("retrieval_queries", [])
        return {"document_ids": result.document_ids, "retrieval_steps": len(queries), "retrieval_queries": queries}


def _as_probe(probe: bool | RetrievalProbe | None, k: int) -> RetrievalProbe | None:
    if probe is None or probe is False:
        return None
    if probe is True:
        return RetrievalProbe(k=max(int(k), 2))
    if isinstance(probe, RetrievalProbe):
        return probe
    raise InvalidInputError(f"probe must be True, False, None or a RetrievalProbe, got {type(probe).__name__}")


__all__ = ["RetrievalStrategyRouter", "NoRetrieval", "SingleStepRetrieval", "MultiStepRetrieval",
           "thought_messages", "THOUGHT_PROMPT"]
