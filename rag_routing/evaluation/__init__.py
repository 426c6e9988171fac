"""Routing benchmarks: :class:`RoutingDataset` and its loaders, metrics (APGR, CPT, AIQ, Pareto), the
benchmark runner, reports and plots.

Names are imported on first use, so ``import rag_routing.evaluation`` stays light and does not import the
routers (which import :mod:`rag_routing.evaluation.dataset`).

Example:
    >>> from rag_routing.evaluation import load_dataset, run_benchmark   # doctest: +SKIP
    >>> train, test = load_dataset("../shared/data/routellm/mmlu/responses").train_test_split(0.5)   # doctest: +SKIP
    >>> print(run_benchmark(train, test, ["knn"], embedder="tfidf").table())   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "RoutingDataset": "rag_routing.evaluation.dataset",
    "load_dataset": "rag_routing.evaluation.loaders",
    "detect_format": "rag_routing.evaluation.loaders",
    "write_jsonl": "rag_routing.evaluation.loaders",
    "FORMATS": "rag_routing.evaluation.loaders",
    "routellm_curve": "rag_routing.evaluation.metrics",
    "apgr": "rag_routing.evaluation.metrics",
    "cpt": "rag_routing.evaluation.metrics",
    "aiq": "rag_routing.evaluation.metrics",
    "pareto_front": "rag_routing.evaluation.metrics",
    "non_decreasing_hull": "rag_routing.evaluation.metrics",
    "cost_to_reach": "rag_routing.evaluation.metrics",
    "run_benchmark": "rag_routing.evaluation.benchmark",
    "load_split": "rag_routing.evaluation.benchmark",
    "BASELINES": "rag_routing.evaluation.benchmark",
    "evaluate_router": "rag_routing.evaluation.scorecard",
    "Reference": "rag_routing.evaluation.scorecard",
    "BenchmarkReport": "rag_routing.evaluation.report",
    "RouterResult": "rag_routing.evaluation.report",
    "plot_report": "rag_routing.evaluation.plots",
    "RoutingDataBuilder": "rag_routing.evaluation.labeling",
    "LabelOutcome": "rag_routing.evaluation.labeling",
    "LabelingRun": "rag_routing.evaluation.labeling",
    "score_answer": "rag_routing.evaluation.answer_metrics",
    "exact_match": "rag_routing.evaluation.answer_metrics",
    "token_f1": "rag_routing.evaluation.answer_metrics",
    "normalize_answer": "rag_routing.evaluation.answer_metrics",
    "AnswerScorer": "rag_routing.evaluation.answer_scorers",
    "ExactMatchScorer": "rag_routing.evaluation.answer_scorers",
    "TokenF1Scorer": "rag_routing.evaluation.answer_scorers",
    "ContainsAnswerScorer": "rag_routing.evaluation.answer_scorers",
    "SemanticSimilarityScorer": "rag_routing.evaluation.answer_scorers",
    "LLMJudgeScorer": "rag_routing.evaluation.answer_scorers",
    "make_scorer": "rag_routing.evaluation.answer_scorers",
    "ActiveSampler": "rag_routing.evaluation.active_sampling",
    "RandomSampler": "rag_routing.evaluation.active_sampling",
    "UncertaintySampler": "rag_routing.evaluation.active_sampling",
    "DecisionValueSampler": "rag_routing.evaluation.active_sampling",
    "make_sampler": "rag_routing.evaluation.active_sampling",
    "NeighbourPosterior": "rag_routing.evaluation.quality_posterior",
    "BootstrapPosterior": "rag_routing.evaluation.quality_posterior",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rag_routing.evaluation' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = sorted(_EXPORTS)
