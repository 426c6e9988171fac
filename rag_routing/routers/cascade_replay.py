"""Offline cascade helpers: the Pareto-efficient cost-quality front of candidates and the replay of a chain.

A cascade evaluated offline pays for every candidate it called: :func:`replay_chain` walks a chain over recorded
answers and judge scores and returns, per query, the answer kept and the cost paid.
"""

from __future__ import annotations

import numpy as np

from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.sweep import OperatingPoints, realised

_NEVER = float(np.nextafter(1.0, 2.0))  # a threshold no score reaches: always escalate


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 0.02, 0.98)
    return np.log(p / (1.0 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))

def cost_quality_front(dataset: RoutingDataset) -> list[int]:
    """Candidate indices on the training cost-quality front, cheapest first, ending at the best quality."""
    quality = np.nan_to_num(dataset.mean_quality(), nan=0.0)
    cost = np.nan_to_num(dataset.mean_cost(), nan=np.inf)
    front, best = [], -np.inf
    for j in np.lexsort((-quality, cost)):
        if quality[j] > best:
            front.append(int(j))
            best = quality[j]
    return front


def replay_chain(test: RoutingDataset, chain: list[int], scores: np.ndarray,
                  thresholds: np.ndarray | None = None) -> OperatingPoints:
    """Operating points of a fixed chain on recorded outcomes, one per threshold.

    Each query accepts the first step whose score (``scores[:, k]`` for step ``k`` of ``chain``, all but the last)
    reaches the threshold, else the last step; it pays every step up to the one it accepts. ``thresholds``
    defaults to every distinct score plus 0 (accept the first) and just above 1 (always go to the end).
    """
    if thresholds is None:
        values = np.unique(scores)
        if values.size > 400:
            values = np.unique(np.quantile(values, np.linspace(0, 1, 400)))
        thresholds = np.concatenate([[0.0], values, [_NEVER]])
    thresholds = np.unique(np.asarray(thresholds, dtype=np.float64))
    n = len(test)
    accepted = scores[None, :, :] >= thresholds[:, None, None]                       # (T, n, steps - 1)
    accepted = np.concatenate([accepted, np.ones((len(thresholds), n, 1), bool)], axis=2)
    stop = accepted.argmax(axis=2)                                                   # (T, n)
    paid = np.cumsum(np.nan_to_num(test.cost[:, chain], nan=0.0), axis=1)           # (n, steps)
    choices = np.asarray(chain)[stop]
    cost = paid[np.arange(n)[None, :], stop].mean(axis=1)
    _, quality = realised(test, choices)
    return OperatingPoints(lams=thresholds, choices=choices, cost=cost, quality=quality)



__all__ = ["cost_quality_front", "replay_chain"]
