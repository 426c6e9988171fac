"""Shrinkage: per-query quality estimates pulled toward each candidate's training mean (empirical Bayes).

A router's per-query estimate ``ŝ[q, j]`` is noisy: a few neighbours, a small cluster, an over-confident
classifier. The linear empirical-Bayes estimate (Efron & Morris 1975; the regression form of James-Stein) is

    quality[q, j] = m_j + w_j · (ŝ[q, j] - s̄_j)

with ``m_j`` candidate ``j``'s training-mean quality, ``s̄_j`` its mean held-out prediction and ``w_j`` in
``[0, 1]`` the least-squares slope of the observed outcomes on *held-out* predictions, itself shrunk toward 0 by
its standard error (positive-part James-Stein, ``w·max(0, 1 - se²/w²)``): the router is refitted on
``folds - 1`` folds and predicts the last (cross-fitting), so ``w_j`` measures how much of its spread is signal.
``w_j = 0`` is the prior (every query gets the best fixed candidate); ``w_j = 1`` and ``s̄_j = m_j`` leave the
estimate as it was. The shrinkage is kept only when it is a real gain on held-out routing: the realised utility
``quality - λ·cost`` per query, averaged over a λ sweep (:func:`query_utilities`), must be higher with it, by a
90 % bootstrap lower bound above 0 (:func:`real_gain`); otherwise the router keeps its raw estimates (and
``notes`` says why).

:func:`fit_shrinkage` is called by :func:`rag_routing.routers.support.fit_guards` inside ``Router.fit``; opt out
with ``router.guard_settings = GuardSettings(shrinkage=False)``.

Example:
    >>> import numpy as np
    >>> s = Shrinkage(center=np.array([0.5, 0.7]), mean_prediction=np.array([0.5, 0.7]),
    ...               weight=np.array([0.0, 0.5]))
    >>> s.apply(np.array([[0.9, 0.9]])).round(2).tolist()     # candidate 0 had no signal: its mean
    [[0.5, 0.8]]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rag_routing.evaluation.dataset import RoutingDataset
    from rag_routing.routers.base import Router
    from rag_routing.routers.support import GuardSettings

logger = logging.getLogger(__name__)

#: Largest slope kept: shrinkage never stretches a router's spread.
MAX_WEIGHT = 1.0
#: λ values of the held-out comparison with and without shrinkage.
N_LAMBDAS = 40


@dataclass
class Shrinkage:
    """Fitted per-candidate shrinkage (see module docstring)."""

    center: np.ndarray
    mean_prediction: np.ndarray
    weight: np.ndarray
    #: ``(low, high)`` of the training outcomes: shrunk estimates stay inside it.
    bounds: tuple[float, float] = (-np.inf, np.inf)
    #: Held-out figures: routing score (:func:`routing_score`) and mean squared error, raw and shrunk.
    report: dict[str, float] = field(default_factory=dict)

    def apply(self, S: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Shrunk ``S``; ``columns``: the fitted candidate of each column of ``S`` (default: all, in order)."""
        cols = slice(None) if columns is None else np.asarray(columns)
        S = np.asarray(S, dtype=np.float64)
        shrunk = self.center[cols][None, :] + self.weight[cols][None, :] * (S - self.mean_prediction[cols][None, :])
        return np.clip(shrunk, *self.bounds)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"report": self.report, "bounds": [float(b) for b in self.bounds]},
                {"center": self.center, "mean_prediction": self.mean_prediction, "weight": self.weight})

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Shrinkage:
        return cls(np.asarray(arrays["center"], float), np.asarray(arrays["mean_prediction"], float),
                   np.asarray(arrays["weight"], float), tuple(float(b) for b in config.get("bounds", (-np.inf, np.inf))),
                   {str(k): float(v) for k, v in config.get("report", {}).items()})


def fit_weights(predictions: np.ndarray, outcomes: np.ndarray, center: np.ndarray) -> Shrinkage:
    """Slopes ``w_j`` of observed outcomes on held-out predictions (NaN outcomes ignored), clipped to
    ``[0, MAX_WEIGHT]``."""
    m = predictions.shape[1]
    mean_prediction, weight = np.zeros(m), np.zeros(m)
    for j in range(m):
        known = ~np.isnan(outcomes[:, j])
        x, y = predictions[known, j], outcomes[known, j]
        if x.size < 2:
            mean_prediction[j] = center[j]
            continue
        mean_prediction[j] = x.mean()
        dx = x - x.mean()
        var = float(dx @ dx)
        if var <= 1e-12:
            continue
        slope = float(dx @ (y - y.mean())) / var
        residual = y - y.mean() - slope * dx
        se2 = float(residual @ residual) / max(x.size - 2, 1) / var
        # Positive-part James-Stein on the slope itself: a slope within noise of 0 is pulled to 0.
        slope *= max(0.0, 1.0 - se2 / slope ** 2) if slope else 0.0
        weight[j] = float(np.clip(slope, 0.0, MAX_WEIGHT))
    known = outcomes[~np.isnan(outcomes)]
    bounds = (float(known.min()), float(known.max())) if known.size else (-np.inf, np.inf)
    return Shrinkage(center=np.asarray(center, float), mean_prediction=mean_prediction, weight=weight, bounds=bounds)


def query_utilities(S: np.ndarray, dataset: RoutingDataset, lams: np.ndarray) -> np.ndarray:
    """``(n,)`` realised utility ``quality - λ·cost`` of each query's decision from estimates ``S`` (at the mean
    costs), averaged over ``lams``, each in quality units (divided by ``1 + λ·cost spread``); an unknown outcome
    counts as its candidate's mean."""
    from rag_routing.evaluation.sweep import select_many

    C = np.broadcast_to(np.nan_to_num(dataset.mean_cost(), nan=0.0), S.shape)
    choices = select_many(S, C, lams)                                                   # (k, n)
    rows = np.arange(len(dataset))[None, :]
    quality = dataset.quality[rows, choices]
    quality = np.where(np.isnan(quality), np.nan_to_num(dataset.mean_quality())[choices], quality)
    cost = np.nan_to_num(dataset.cost[rows, choices])
    spread = float(C.max() - C.min())
    return ((quality - lams[:, None] * cost) / (1.0 + lams[:, None] * spread)).mean(axis=0)


def routing_score(S: np.ndarray, dataset: RoutingDataset, lams: np.ndarray) -> float:
    """Held-out routing quality of estimates ``S``: the mean of :func:`query_utilities`.

    Not the AIQ hull: a hull over a sweep rewards noisy estimates, whose points scatter above the line between
    the fixed candidates by chance."""
    return float(query_utilities(S, dataset, lams).mean())


def real_gain(gain: np.ndarray, confidence: float = 0.9, n_boot: int = 500, seed: int = 0) -> float:
    """Lower ``confidence`` bound of the mean of per-query ``gain`` (bootstrap over queries)."""
    draws = np.random.default_rng(seed).integers(0, gain.size, size=(n_boot, gain.size))
    return float(np.quantile(gain[draws].mean(axis=1), 1.0 - confidence))


def _clone(router: Router) -> Router:
    from rag_routing.routers.support import GuardSettings

    clone = type(router)(**router.get_params())
    if router.uses_features:
        clone.featurizer = router.featurizer_  # fitted: the clone reuses the features handed to it
    clone.guard_settings = GuardSettings.off()
    return clone


def out_of_fold(router: Router, features: np.ndarray, dataset: RoutingDataset, folds: int,
                seed: int) -> np.ndarray:
    """``(n, m)`` predictions of ``router``'s clones, each fitted without the fold it predicts."""
    embedded = dataset.with_embeddings(features, router.featurizer_.name)
    assignment = np.random.default_rng(seed).permutation(len(dataset)) % folds
    predictions = np.zeros((len(dataset), len(router.candidates_)))
    for f in range(folds):
        held = np.flatnonzero(assignment == f)
        clone = _clone(router).fit(embedded.subset(np.flatnonzero(assignment != f)))
        predictions[held] = clone.predict_quality(embedded.subset(held))
    return predictions


def fit_shrinkage(router: Router, features: np.ndarray, dataset: RoutingDataset, settings: GuardSettings,
                  notes: list[str]) -> Shrinkage | None:
    """Fit the shrinkage of a freshly fitted ``router`` (``None``: raw estimates are kept; ``notes`` says why)."""
    from rag_routing.routers.support import prior_quality

    if len(dataset) < settings.shrinkage_min_rows:
        notes.append(f"no shrinkage: {len(dataset)} training rows < {settings.shrinkage_min_rows}")
        return None
    try:
        held_out = out_of_fold(router, features, dataset, settings.shrinkage_folds, settings.seed)
    except Exception as exc:  # a router that cannot be refitted on a fold keeps its raw estimates
        notes.append(f"no shrinkage: refitting {type(router).__name__} on a fold failed ({exc})")
        logger.debug("shrinkage skipped for %s", type(router).__name__, exc_info=True)
        return None
    shrinkage = fit_weights(held_out, dataset.quality, prior_quality(dataset))
    shrunk = shrinkage.apply(held_out)
    from rag_routing.evaluation.sweep import lambda_grid

    lams = lambda_grid(held_out, np.broadcast_to(np.nan_to_num(dataset.mean_cost(), nan=0.0), held_out.shape),
                       N_LAMBDAS)
    raw_u, shrunk_u = query_utilities(held_out, dataset, lams), query_utilities(shrunk, dataset, lams)
    raw_score, shrunk_score, lower = float(raw_u.mean()), float(shrunk_u.mean()), real_gain(shrunk_u - raw_u)
    known = ~np.isnan(dataset.quality)
    shrinkage.report = {
        "routing_raw": raw_score, "routing_shrunk": shrunk_score, "gain_lower": lower,
        "mse_raw": float(np.mean((held_out[known] - dataset.quality[known]) ** 2)),
        "mse_shrunk": float(np.mean((shrunk[known] - dataset.quality[known]) ** 2)),
    }
    if lower <= 0.0:
        notes.append(f"no shrinkage: held-out routing score {shrunk_score:.4f} with it vs {raw_score:.4f} without, "
                     f"not a real gain (90 % lower bound {lower:+.4f})")
        return None
    notes.append(f"shrinkage kept: held-out routing score {shrunk_score:.4f} (raw {raw_score:.4f}, 90 % lower bound "
                 f"of the gain {lower:+.4f}), weights {np.round(shrinkage.weight, 3).tolist()}"
                 + ("; until its first online update, which drops it (weights fitted now would hide what it "
                    "learns later)" if callable(getattr(router, "update", None)) else ""))
    return shrinkage


__all__ = ["Shrinkage", "fit_shrinkage", "fit_weights", "out_of_fold", "routing_score", "query_utilities", "real_gain"]


def learning_version(router: Router) -> float | None:
    """How much an online router has learned (observations of a bandit, rows of a memory router); ``None`` for
    a router that does not learn after ``fit``. A change since ``fit`` drops the shrinkage fitted then."""
    from rag_routing.routers.support import is_bandit

    if is_bandit(router):
        state = router._current_state()  # type: ignore[attr-defined]
        return float(np.asarray(state.get("counts", 0.0)).sum())
    rows = getattr(router, "train_quality_", None)
    return None if rows is None or not callable(getattr(router, "update", None)) else float(len(rows))
