"""Synthetic two-task data for the support / drift / shrinkage tests: a router trained on task A, tested on A
(in distribution) and on task B (a task it never saw, far away in its feature space)."""

from __future__ import annotations

import numpy as np

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.evaluation.dataset import RoutingDataset

EMB = "guard-test-vectors"
CANDIDATES = ["small", "medium", "large"]
COST = np.array([0.001, 0.004, 0.02])


def _unit(M: np.ndarray) -> np.ndarray:
    return (M / np.linalg.norm(M, axis=1, keepdims=True)).astype(np.float32)


def task(n: int, axis: int, seed: int, d: int = 24) -> RoutingDataset:
    """``n`` queries near feature axis ``axis``: two sub-topics (sign of feature ``axis + 1``); 'small' is right
    on one, 'medium' on the other, 'large' is right 80 % of the time everywhere."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(d)
    centre[axis] = 1.0
    sub = rng.random(n) < 0.5
    E = centre[None, :] + 0.25 * rng.standard_normal((n, d))
    E[:, axis + 1] += np.where(sub, 0.6, -0.6)
    quality = np.stack([sub & (rng.random(n) < 0.95), ~sub & (rng.random(n) < 0.95), rng.random(n) < 0.8],
                       axis=1).astype(float)
    queries = [f"task{axis} query {seed}-{i}" for i in range(n)]
    return RoutingDataset(queries, CANDIDATES, quality, np.tile(COST, (n, 1)),
                          metadata=[{"task": f"t{axis}"}] * n).with_embeddings(_unit(E), EMB)


def featurizer() -> PrecomputedFeaturizer:
    return PrecomputedFeaturizer(EMB)
