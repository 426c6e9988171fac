"""Stage routers: one router per RAG stage, each choosing among that stage's options, composed by RoutedRAG.

* :class:`RetrievalStrategyRouter` — no retrieval / single-step / multi-step (Adaptive-RAG, Jeong et al. 2024),
  with a query-complexity classifier trained from outcomes (:meth:`~RetrievalStrategyRouter.fit_from_outcomes`),
  or routed after a first retrieval on its scores (``probe=True``, :class:`RetrievalProbe`).
* :class:`RetrieverRouter` — which retriever: embedding model, dense / BM25 / hybrid, which knowledge base.
* :class:`ContextRouter` — Self-Route (Z. Li et al. 2024): answer from chunks or declare it unanswerable, then
  escalate to the full documents.
* :class:`PromptStrategyRouter` — direct / chain-of-thought / few-shot.
* :class:`GeneratorRouter` — which LLM.
* :class:`RoutedRAG` — the stages composed; every answer carries a decision trace (what each stage chose, why,
  at what cost according to the ledger).

Every stage takes and returns a :class:`RAGState` and has ``invoke`` / ``ainvoke`` / ``batch`` / ``abatch``.
Names are imported lazily: ``import rag_routing.stages`` loads neither torch nor FAISS.

Example:
    >>> from rag_routing.stages import RAGState, StageRouter
    >>> stage = StageRouter({"echo": lambda s: s.evolve(answer=s.query)}, name="echo")
    >>> stage.invoke("hi").answer
    'hi'
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "RAGState": "rag_routing.stages.state",
    "TraceStep": "rag_routing.stages.state",
    "STAGE_NAMES": "rag_routing.stages.state",
    "StageRouter": "rag_routing.stages.base",
    "StageChoice": "rag_routing.stages.base",
    "StageLedger": "rag_routing.stages.attribution",
    "stage_ledger": "rag_routing.stages.attribution",
    "format_trace": "rag_routing.stages.trace_format",
    "exact_match": "rag_routing.evaluation.answer_metrics",
    "token_f1": "rag_routing.evaluation.answer_metrics",
    "normalize_answer": "rag_routing.evaluation.answer_metrics",
    "score_answer": "rag_routing.evaluation.answer_metrics",
    "PromptStrategyRouter": "rag_routing.stages.prompt",
    "PromptBuilder": "rag_routing.stages.prompt",
    "GeneratorRouter": "rag_routing.stages.generator",
    "LLMOption": "rag_routing.stages.generator",
    "PricedLLM": "rag_routing.stages.generator",
    "RetrieverRouter": "rag_routing.stages.retriever",
    "RetrieveOption": "rag_routing.stages.retriever",
    "RetrievalStrategyRouter": "rag_routing.stages.retrieval_strategy",
    "RetrievalProbe": "rag_routing.stages.retrieval_probe",
    "ComplexityClassifierRouter": "rag_routing.stages.complexity",
    "complexity_dataset": "rag_routing.stages.complexity",
    "silver_labels": "rag_routing.stages.complexity",
    "ContextRouter": "rag_routing.stages.context",
    "is_unanswerable": "rag_routing.stages.context",
    "RoutedRAG": "rag_routing.stages.pipeline",
    "AnswerStream": "rag_routing.stages.streaming",
    "AsyncAnswerStream": "rag_routing.stages.streaming",
    "streaming_to": "rag_routing.stages.streaming",
    "current_stream": "rag_routing.stages.streaming",
    "adapt_retriever": "rag_routing.stages.adapters",
    "adapt_llm": "rag_routing.stages.adapters",
    "run_demo": "rag_routing.stages.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rag_routing.stages' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
