"""Cross-validated scoring of routing policies for :class:`~rag_routing.routers.auto.AutoRouter`.

:class:`PolicyScorer` turns out-of-fold quality predictions ``S`` (every training query predicted by a router
fitted without it) into one number per policy, by the criterion the benchmark tables use:

* ``"aiq"``: RouterBench's AIQ of the λ sweep of the shared rule ``argmax S − λC`` over the training
  candidates' cost range (realised outcomes of the held-out queries; an unknown outcome counts as that
  candidate's mean);
* ``"apgr"``: RouteLLM's APGR of the score ``S_strong − S_weak`` (two candidates; any mix of fixed choices
  is the straight line, APGR 0.5);
* ``"quality"``: mean realised quality at λ = 0.

:meth:`PolicyScorer.bootstrap_gains` resamples the training queries (the same resamples for every policy, so
the comparison is paired) and returns each policy's gain over the fixed policy per resample.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> ds = RoutingDataset([f"q{i}" for i in range(8)], ["a", "b"], [[1, 0], [0, 1], [1, 0], [1, 0]] * 2,
    ...                     [[1.0, 2.0]] * 8)
    >>> scorer = PolicyScorer(ds, "quality", kfold(8, 2, seed=0))
    >>> scorer.score(ds.quality), scorer.fixed_score        # knowing each outcome vs always "a"
    (1.0, 0.75)
"""

from __future__ import annotations

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.metrics import aiq, apgr, routellm_curve
from rag_routing.evaluation.sweep import lambda_grid, select_many

#: The criteria :class:`PolicyScorer` knows.
CRITERIA: tuple[str, ...] = ("aiq", "apgr", "quality")


def kfold(n: int, n_folds: int, seed: int) -> list[np.ndarray]:
    """``n_folds`` disjoint sorted row-index arrays covering ``range(n)``, shuffled by ``seed``."""
    if n < n_folds:
        raise InvalidInputError(f"{n} rows cannot be split into {n_folds} folds")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, n_folds)]


def _filled(matrix: np.ndarray, columns: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(matrix), columns[None, :], matrix)


class PolicyScorer:
    """Scores out-of-fold predictions on ``dataset`` by ``criterion``; the fixed policy (each fold's training
    means as the prediction) is scored on the same ``folds`` as :attr:`fixed_score`."""

    def __init__(self, dataset: RoutingDataset, criterion: str, folds: list[np.ndarray], n_lambdas: int = 40):
        if criterion not in CRITERIA:
            raise InvalidInputError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        if criterion == "apgr" and dataset.n_candidates != 2:
            raise InvalidInputError(f"APGR needs exactly two candidates, not {dataset.n_candidates}")
        self.criterion = criterion
        mean_quality = np.nan_to_num(dataset.mean_quality(), nan=0.0)
        self.mean_cost = np.nan_to_num(dataset.mean_cost(), nan=0.0)
        self.Y = _filled(dataset.quality, mean_quality)
        self.C = _filled(dataset.cost, self.mean_cost)
        self.n = len(dataset)
        self.cost_range = (float(self.mean_cost.min()), float(self.mean_cost.max()))
        spread = np.array([[float(self.Y.min()), float(self.Y.max())]])
        self.lams = lambda_grid(spread, self.mean_cost[None, :], n_lambdas) if criterion == "aiq" else np.zeros(1)
        self.strong = int(np.argmax(self.mean_cost))
        self.weak = 1 - self.strong if dataset.n_candidates == 2 else int(np.argmin(self.mean_cost))
        self.fixed_predictions = np.zeros(dataset.quality.shape)
        for held in folds:
            train = np.setdiff1d(np.arange(self.n), held)
            self.fixed_predictions[held] = np.nan_to_num(dataset.subset(train).mean_quality(), nan=0.0)
        self.fixed_score = 0.5 if criterion == "apgr" else self.score(self.fixed_predictions)

    # ------------------------------------------------------------------ one policy
    def _realised(self, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(k, n)`` realised quality and cost of the choices at every λ."""
        choices = select_many(S, np.broadcast_to(self.mean_cost, S.shape), self.lams)
        rows = np.arange(self.n)[None, :]
        return self.Y[rows, choices], self.C[rows, choices]

    def _from_points(self, quality: np.ndarray, cost: np.ndarray) -> float:
        if self.criterion == "quality":
            return float(quality[0])
        return aiq(cost, quality, self.cost_range)

    def _apgr(self, S: np.ndarray, idx: np.ndarray) -> float:
        s, w = self.strong, self.weak
        strong_q, weak_q = float(self.Y[idx, s].mean()), float(self.Y[idx, w].mean())
        scores = S[idx, s] - S[idx, w]
        if strong_q == weak_q or float(np.ptp(scores)) == 0.0:
            return 0.5  # no gap to recover, or a constant score: the straight line of fixed mixes
        return apgr(routellm_curve(scores, self.Y[idx, s], self.Y[idx, w]), weak_q, strong_q)

    def score(self, S: np.ndarray) -> float:
        """The criterion of the policy that predicts ``S`` (``(n, m)``, out of fold) on the training outcomes."""
        S = np.asarray(S, dtype=np.float64)
        if S.shape != self.Y.shape:
            raise InvalidInputError(f"predictions have shape {S.shape}, expected {self.Y.shape}")
        if self.criterion == "apgr":
            return self._apgr(S, np.arange(self.n))
        q, c = self._realised(S)
        return self._from_points(q.mean(axis=1), c.mean(axis=1))

    # ------------------------------------------------------------------ paired bootstrap
    def bootstrap_gains(self, predictions: list[np.ndarray], n_bootstrap: int, seed: int) -> list[np.ndarray]:
        """Per policy of ``predictions``, its criterion minus the fixed policy's on each of ``n_bootstrap``
        resamples (with replacement) of the training queries; the same resamples for every policy."""
        idx = np.random.default_rng(seed).integers(0, self.n, size=(n_bootstrap, self.n))
        if self.criterion == "apgr":
            return [np.array([self._apgr(S, i) - 0.5 for i in idx]) for S in predictions]
        weights = np.stack([np.bincount(i, minlength=self.n) for i in idx]).astype(np.float64).T / self.n  # (n, B)
        fq, fc = self._realised(self.fixed_predictions)
        fixed = self._resampled(fq @ weights, fc @ weights)
        gains = []
        for S in predictions:
            q, c = self._realised(np.asarray(S, dtype=np.float64))
            gains.append(self._resampled(q @ weights, c @ weights) - fixed)
        return gains

    def _resampled(self, quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """The criterion per resample from ``(k, B)`` mean quality and cost."""
        return np.array([self._from_points(quality[:, b], cost[:, b]) for b in range(quality.shape[1])])


__all__ = ["CRITERIA", "PolicyScorer", "kfold"]
