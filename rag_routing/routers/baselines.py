"""Baseline routers every benchmark table shows: random, oracle, best single candidate, fixed, cheapest.

* :class:`RandomRouter` — i.i.d. uniform quality guesses; its λ sweep mixes candidates at random
  (RouteLLM's and RouterBench's random baseline: APGR ≈ 0.5).
* :class:`OracleRouter` — reads the true outcomes of the queries it routes (needs a RoutingDataset): the
  cheapest candidate that is right. The upper bound of what routing can win.
* :class:`BestSingleRouter` — every query to the candidate with the best mean training quality.
* :class:`FixedRouter` — no per-query signal: at each λ every query goes to the one candidate with the best
  training-mean quality − λ·cost (the policy a router falls back to, and the floor it must not fall below).
* :class:`CheapestRouter` — every query to the candidate with the lowest mean training cost.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> ds = RoutingDataset(["a", "b"], ["small", "large"], [[1, 1], [0, 1]], [[0.001, 0.01]] * 2)
    >>> router = FixedRouter().fit(ds)
    >>> router.route_indices(["q", "r"], lam=0.0).tolist(), router.route_indices(["q"], lam=1000.0).tolist()
    ([1, 1], [0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput


class RandomRouter(Router):
    """Uniform random quality estimates, seeded: the same inputs in the same order give the same routes."""

    name = "random"
    uses_features = False

    def __init__(self, *, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.seed = seed

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        pass

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.random((self._n_rows(X), len(self.candidates_)))


class OracleRouter(Router):
    """Routes with the true outcomes of the queries (the cheapest right candidate at any λ > 0).

    Unknown outcomes (NaN) count as 0 so the oracle never claims a result nobody measured.
    """

    name = "oracle"
    uses_features = False

    def __init__(self, *, lam: float = 1e-9, **kwargs: Any):
        super().__init__(lam=lam, **kwargs)

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        pass

    def _truth(self, X: RouterInput) -> RoutingDataset:
        if not isinstance(X, RoutingDataset):
            raise InvalidInputError("the oracle needs the true outcomes: pass a RoutingDataset, not raw queries")
        return X.select_candidates(self.candidates_)

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        return np.nan_to_num(self._truth(X).quality, nan=0.0)

    def predict_cost(self, X: RouterInput) -> np.ndarray:
        truth = self._truth(X)
        return np.where(np.isnan(truth.cost), self.mean_cost_, truth.cost)


class BestSingleRouter(Router):
    """Always the candidate with the highest mean training quality (ties to the cheaper one)."""

    name = "best"
    uses_features = False

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self.mean_quality_ = np.nan_to_num(dataset.mean_quality(), nan=0.0)

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        return np.broadcast_to(self.mean_quality_, (self._n_rows(X), len(self.candidates_)))

    def route_indices(self, X: RouterInput, lam: float | None = None, budget: Any = None) -> np.ndarray:
        # The best single candidate regardless of λ: a fixed point in the cost-quality plane.
        return super().route_indices(X, 0.0, budget)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"mean_quality": self.mean_quality_}

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.mean_quality_ = np.asarray(arrays["mean_quality"], dtype=np.float64)


class FixedRouter(Router):
    """The best fixed candidate under the shared rule: predicted quality is each candidate's mean training
    quality for every query, so ``argmax S - λC`` picks, for each λ and budget, the single candidate with the
    best mean quality - λ·mean cost (ties to the cheaper one). Unlike :class:`BestSingleRouter` it follows λ.
    Unknown outcomes (NaN) are left out of the means; a candidate never observed counts as quality 0.
    """

    name = "fixed"
    uses_features = False

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self.mean_quality_ = np.nan_to_num(dataset.mean_quality(), nan=0.0)

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        return np.broadcast_to(self.mean_quality_, (self._n_rows(X), len(self.candidates_))).copy()

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"mean_quality": self.mean_quality_}

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.mean_quality_ = np.asarray(arrays["mean_quality"], dtype=np.float64)


class CheapestRouter(Router):
    """Always the candidate with the lowest mean training cost."""

    name = "cheapest"
    uses_features = False

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        pass

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        S = np.zeros((self._n_rows(X), len(self.candidates_)))
        S[:, int(np.argmin(self.mean_cost_))] = 1.0
        return S


__all__ = ["RandomRouter", "OracleRouter", "BestSingleRouter", "FixedRouter", "CheapestRouter"]
