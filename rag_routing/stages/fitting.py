"""Training data for stage routers: outcome tables and label lists turned into a RoutingDataset.

A stage's router is an ordinary :class:`~rag_routing.routers.base.Router` whose candidates are the stage's
option names, so it learns from a :class:`~rag_routing.evaluation.dataset.RoutingDataset`:

* :func:`outcomes_dataset` — per option, one outcome per query (1/0 right/wrong, F1, nDCG, ...) and a cost
  (one $ per option, or one per query);
* :func:`labels_dataset` — one label (an option name) per query, as one-hot outcomes: when the right option
  is known (or decided by a person) rather than measured.

The default router, :func:`default_stage_router`, is ``auto`` (:class:`~rag_routing.routers.auto.AutoRouter`):
it cross-validates RouteLLM's "direct" classifier (:class:`~rag_routing.routers.supervised.ClassifierRouter`
with ``mode="direct"``: logistic regression on MiniLM query embeddings predicting the cheapest option that
reached the query's best outcome) and kNN against the best fixed option, and keeps the fixed option unless a
router's gain is real.

Example:
    >>> ds = outcomes_dataset(["a", "b"], {"x": [1, 0], "y": [1, 1]}, {"x": 0.0, "y": 1.0}, ["x", "y"])
    >>> ds.quality.tolist(), ds.cost.tolist()
    ([[1.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError, UnknownCandidateError
from rag_routing.evaluation.dataset import RoutingDataset


def _cost_column(value: Any, n: int, option: str) -> np.ndarray:
    column = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)) if np.ndim(value) == 0 else \
        np.asarray(value, dtype=np.float64)
    if column.shape != (n,):
        raise InvalidInputError(f"costs of {option!r}: {column.shape[0]} values for {n} queries")
    return column


def outcomes_dataset(queries: Sequence[str], outcomes: Mapping[str, Sequence[float]],
                     costs: Mapping[str, Any] | None, options: Sequence[str], *,
                     metadata: Sequence[dict[str, Any]] | None = None, name: str = "stage-outcomes") -> RoutingDataset:
    """A dataset over ``options`` (in that order) from ``{option: outcome per query}`` and ``{option: $}``.

    Options without outcomes get NaN (unknown, never a silent 0); costs default to 0 $ for every option.
    """
    queries = [str(q) for q in queries]
    n = len(queries)
    unknown = sorted(set(outcomes) - set(options))
    if unknown:
        raise UnknownCandidateError(f"outcomes for {unknown}, which are not options {list(options)}")
    if not outcomes:
        raise InvalidInputError("outcomes is empty: give {option: [outcome per query]} for at least one option")
    quality = np.full((n, len(options)), np.nan)
    cost = np.zeros((n, len(options)))
    for j, option in enumerate(options):
        if option in outcomes:
            column = np.asarray(outcomes[option], dtype=np.float64)
            if column.shape != (n,):
                raise InvalidInputError(f"outcomes of {option!r}: {column.shape} for {n} queries")
            quality[:, j] = column
        if costs is not None and option in costs:
            cost[:, j] = _cost_column(costs[option], n, option)
    if costs is not None:
        extra = sorted(set(costs) - set(options))
        if extra:
            raise UnknownCandidateError(f"costs for {extra}, which are not options {list(options)}")
    return RoutingDataset(queries, list(options), quality, cost, metadata=list(metadata or []), name=name)


def labels_dataset(queries: Sequence[str], labels: Sequence[str], options: Sequence[str], *,
                   costs: Mapping[str, Any] | None = None, name: str = "stage-labels") -> RoutingDataset:
    """One-hot outcomes: the labelled option of each query is right (1), the others wrong (0)."""
    if len(labels) != len(queries):
        raise InvalidInputError(f"{len(labels)} labels for {len(queries)} queries")
    bad = sorted({str(label) for label in labels if label not in options})
    if bad:
        raise UnknownCandidateError(f"labels {bad} are not options {list(options)}")
    outcomes = {o: [1.0 if label == o else 0.0 for label in labels] for o in options}
    return outcomes_dataset(queries, outcomes, costs, options, name=name,
                            metadata=[{"label": label} for label in labels])


def default_stage_router(**kwargs: Any) -> Any:
    """``auto`` trying RouteLLM-style direct classification over MiniLM embeddings (cheapest option reaching the
    best outcome) and kNN: it keeps the best fixed option unless cross-validation on the stage's outcomes shows a
    real gain (:class:`~rag_routing.routers.auto.AutoRouter`)."""
    from rag_routing.routers.auto import AutoRouter

    return AutoRouter(routers=[{"router": "classifier", "mode": "direct"}, "knn"], **kwargs)


__all__ = ["outcomes_dataset", "labels_dataset", "default_stage_router"]
