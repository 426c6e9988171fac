"""The λ sweep: route a test set at many prices of a dollar and measure what each setting really delivers.

A router predicts quality ``S`` and cost ``C`` once; the shared rule of :mod:`rag_routing.decision`
(``argmax S - λC``) then runs for every λ of a log grid that reaches from "quality only" (λ = 0) to
"cheapest only". Each λ gives one operating point: the mean realised cost and quality of the chosen
candidates on the test outcomes. Unknown outcomes (NaN quality of the chosen candidate) are left out of that
point's mean, as the data sets ask ("missing, not wrong"); the oracle never picks them over a known right
answer.

Routers that override :meth:`~rag_routing.routers.base.Router.route_indices` (e.g. the best-single baseline,
which ignores λ) are asked through it, once per λ, so their own rule is respected.

Example:
    >>> import numpy as np
    >>> S = np.array([[0.9, 0.5], [0.6, 0.5]]); C = np.array([[1.0, 0.1], [1.0, 0.1]])
    >>> grid = lambda_grid(S, C, n=5)
    >>> float(grid[0]), select_many(S, C, grid)[-1].tolist()
    (0.0, [1, 1])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag_routing.decision import select
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router

#: λ values per sweep (plus λ = 0); the grid is log-spaced.
DEFAULT_N_LAMBDAS = 200


@dataclass(frozen=True)
class OperatingPoints:
    """One router's sweep on a test set.

    Attributes:
        lams: ``(k,)`` λ values.
        choices: ``(k, n)`` chosen candidate per λ and query.
        cost: ``(k,)`` mean realised US $ per query.
        quality: ``(k,)`` mean realised quality (known outcomes only).
        predicted: ``(n, m)`` the router's predicted quality, when it was asked once (``None`` otherwise).
    """

    lams: np.ndarray
    choices: np.ndarray
    cost: np.ndarray
    quality: np.ndarray
    predicted: np.ndarray | None = None


def lambda_grid(quality: np.ndarray, cost: np.ndarray, n: int = DEFAULT_N_LAMBDAS) -> np.ndarray:
    """λ = 0, then ``n`` log-spaced values from where cost starts to matter to where only cost matters.

    With ``dq`` the largest quality spread of a row and ``dc`` the cost gaps between candidates, a λ above
    ``dq / min(dc)`` always picks a row's cheapest candidate and one below ``dq / max(dc) / 1e4`` barely
    differs from λ = 0.
    """
    S = np.asarray(quality, dtype=np.float64)
    C = np.asarray(cost, dtype=np.float64)
    dq = float(np.max(np.ptp(S, axis=1))) if S.size else 0.0
    gaps = np.diff(np.sort(C, axis=1), axis=1)
    positive = gaps[gaps > 1e-15 * max(float(np.max(C)), 1e-300)]
    if dq <= 0 or positive.size == 0 or n <= 0:
        return np.zeros(1)
    low = dq / float(np.max(np.ptp(C, axis=1))) * 1e-4
    high = dq / float(positive.min()) * 10.0
    return np.concatenate([[0.0], np.geomspace(low, high, n)])


def select_many(quality: np.ndarray, cost: np.ndarray, lams: np.ndarray, fallback: int | None = None) -> np.ndarray:
    """``(k, n)`` choices of the decision rule for every λ (the predictions are made once)."""
    return np.stack([select(quality, cost, float(lam), fallback=fallback) for lam in lams])


def realised(dataset: RoutingDataset, choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean realised (cost, quality) per row of ``choices`` (``(k, n)`` candidate indices)."""
    rows = np.arange(len(dataset))[None, :]
    q = dataset.quality[rows, choices]
    c = dataset.cost[rows, choices]
    with np.errstate(invalid="ignore"):
        known_q = np.where(np.isnan(q), 0.0, q).sum(axis=1) / np.maximum((~np.isnan(q)).sum(axis=1), 1)
        known_c = np.where(np.isnan(c), 0.0, c).sum(axis=1) / np.maximum((~np.isnan(c)).sum(axis=1), 1)
    return known_c, known_q


def sweep_router(router: Router, test: RoutingDataset, n_lambdas: int = DEFAULT_N_LAMBDAS) -> OperatingPoints:
    """Operating points of a fitted ``router`` on ``test`` (see module docstring)."""
    test = test.select_candidates(router.candidates_)
    S = router.predict_quality(test)
    C = router.predict_cost(test)
    lams = lambda_grid(S, C, n_lambdas)
    if type(router).route_indices is not Router.route_indices:
        choices = np.stack([router.route_indices(test, lam=float(lam)) for lam in lams])
    else:
        fallback = None if router.fallback is None else router.candidates_.index(router.fallback)
        choices = select_many(S, C, lams, fallback)
    cost, quality = realised(test, choices)
    return OperatingPoints(lams=lams, choices=choices, cost=cost, quality=quality, predicted=S)


def fixed_choice(test: RoutingDataset, index: int) -> OperatingPoints:
    """The single operating point of always choosing candidate ``index``."""
    choices = np.full((1, len(test)), index, dtype=np.int64)
    cost, quality = realised(test, choices)
    return OperatingPoints(lams=np.zeros(1), choices=choices, cost=cost, quality=quality)


__all__ = ["DEFAULT_N_LAMBDAS", "OperatingPoints", "lambda_grid", "select_many", "realised", "sweep_router",
           "fixed_choice"]
