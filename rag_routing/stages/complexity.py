"""Adaptive-RAG's query-complexity classifier and its silver labels (Jeong et al. 2024, NAACL).

Adaptive-RAG trains a small classifier to predict a query's complexity — A: answerable without retrieval,
B: single-step retrieval, C: multi-step retrieval — and runs the matching strategy. Its training labels are
*silver*: run every strategy on the training queries and label each query with the **simplest strategy that
answered it right**; queries that no strategy answered take the label of their dataset's nature (single-hop
datasets -> B, multi-hop datasets -> C), the "dataset bias" heuristic.

* :func:`silver_labels` computes those labels from per-strategy correctness.
* :func:`complexity_dataset` builds the RoutingDataset (outcomes, costs, and the label in the metadata).
* :class:`ComplexityClassifierRouter` is a :class:`~rag_routing.routers.supervised.ClassifierRouter` in
  RouteLLM's "direct" mode (logistic regression over MiniLM embeddings, predicted quality = class
  probability) whose classes come from those silver labels instead of the outcome table.

Example:
    >>> silver_labels({"none": [0, 0, 0], "single": [1, 0, 0], "multi": [1, 1, 0]}, fallback=["single"] * 3)
    ['single', 'multi', 'single']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.registry import register_router
from rag_routing.routers.supervised import ClassifierRouter
from rag_routing.stages.fitting import outcomes_dataset

#: Adaptive-RAG's strategies, simplest first (A, B, C).
STRATEGIES = ("none", "single", "multi")
#: Metadata key holding the silver label of a training query.
LABEL_KEY = "silver_label"


def silver_labels(outcomes: Mapping[str, Sequence[float]], *, order: Sequence[str] = STRATEGIES,
                  fallback: Sequence[str | None] | None = None, threshold: float = 0.5) -> list[str | None]:
    """Per query, the first strategy of ``order`` whose outcome is >= ``threshold``.

    Queries no strategy answered take ``fallback[i]`` (Adaptive-RAG: the dataset's nature, ``"single"`` for a
    single-hop dataset, ``"multi"`` for a multi-hop one), or ``None`` (left out of training).
    """
    missing = [s for s in order if s not in outcomes]
    if missing:
        raise InvalidInputError(f"outcomes lack strategies {missing}; silver labels need every strategy's outcome")
    table = np.column_stack([np.asarray(outcomes[s], dtype=np.float64) for s in order])
    if fallback is not None and len(fallback) != table.shape[0]:
        raise InvalidInputError(f"{len(fallback)} fallback labels for {table.shape[0]} queries")
    labels: list[str | None] = []
    for i, row in enumerate(table):
        right = np.flatnonzero(np.nan_to_num(row, nan=-np.inf) >= threshold)
        if right.size:
            labels.append(order[int(right[0])])
        else:
            labels.append(None if fallback is None else fallback[i])
    return labels


def complexity_dataset(queries: Sequence[str], outcomes: Mapping[str, Sequence[float]],
                       costs: Mapping[str, Any] | None = None, *, fallback: Sequence[str | None] | None = None,
                       threshold: float = 0.5, order: Sequence[str] = STRATEGIES) -> RoutingDataset:
    """The RoutingDataset of a complexity classifier: outcomes and costs per strategy, silver labels in
    ``metadata["silver_label"]``."""
    labels = silver_labels(outcomes, order=order, fallback=fallback, threshold=threshold)
    return outcomes_dataset(queries, outcomes, costs, list(order), name="complexity",
                            metadata=[{LABEL_KEY: label} for label in labels])


@register_router("complexity")
class ComplexityClassifierRouter(ClassifierRouter):
    """Adaptive-RAG's query-complexity classifier (Jeong et al. 2024): predicts the silver label.

    A :class:`ClassifierRouter` in ``mode="direct"`` (class = strategy, predicted quality = its probability),
    trained on ``metadata["silver_label"]`` when the dataset has it (:func:`complexity_dataset`), else on the
    cheapest strategy reaching the best outcome. Queries whose label is ``None`` are left out.

    Example:
        >>> router = ComplexityClassifierRouter().fit(complexity_dataset(queries, outcomes, costs))  # doctest: +SKIP
        >>> router.route_one("Hello!").candidate  # doctest: +SKIP
        'none'
    """

    name = "complexity"

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("mode", "direct")
        super().__init__(**kwargs)

    def _labels(self, dataset: RoutingDataset) -> np.ndarray:
        if dataset.metadata and all(LABEL_KEY in m for m in dataset.metadata):
            labels = np.array([m[LABEL_KEY] for m in dataset.metadata], dtype=object)
            bad = sorted({str(x) for x in labels if x is not None and x not in self.candidates_})
            if bad:
                raise InvalidInputError(f"silver labels {bad} are not candidates {self.candidates_}")
            return labels
        return super()._labels(dataset)


__all__ = ["silver_labels", "complexity_dataset", "ComplexityClassifierRouter", "STRATEGIES", "LABEL_KEY"]
