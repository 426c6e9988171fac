"""Routing metrics: RouteLLM's two-model protocol (APGR, CPT) and RouterBench's cost-quality curves (AIQ).

Two candidates (RouteLLM, Ong et al. 2024, ``routellm/evals/benchmarks.py`` and ``evaluate.py``):

* the router gives every query a score (higher = "send it to the strong model");
* the thresholds are the 11 edges of the 10-quantile bins of those scores (``pandas.qcut(scores, 10)``,
  duplicates kept); at edge ``i < 10`` the queries with ``score >= t`` go to the strong model, at the last
  edge those with ``score > t`` (so the curve runs from 100 % to 0 % strong calls);
* **APGR** = (area under performance(share) - weak·Δshare) / (strong·Δshare - weak·Δshare), the trapezoid
  rule over the share of strong calls (a fraction, 0 to 1);
* **CPT(p)** = ``np.interp(weak + p·(strong - weak), performance, share)`` with the points sorted by share,
  exactly as RouteLLM computes it (numpy assumes ``performance`` increases; on a non-monotone curve the
  answer is what numpy's search finds, as in RouteLLM's tables).

Any number of candidates (RouterBench, Hu et al. 2024):

* a router's λ sweep gives (mean cost, mean quality) points; their **non-decreasing convex hull** is the
  best a mix of those operating points can do at each cost (mix two points at random: any point on the
  segment; spend more for the same quality: flat to the right);
* **AIQ** = area under that hull over a cost range ``[lo, hi]``, divided by ``hi - lo``. Below the router's
  cheapest point the hull is 0 (the router cannot run that cheaply). The benchmark uses the range of the
  single candidates' mean costs, the same for every router of a table. If ``hi == lo`` (all candidates cost
  the same) AIQ is the hull's value at ``hi``, the limit of the average.

Example:
    >>> import numpy as np
    >>> scores = np.array([0.9, 0.1, 0.8, 0.2])
    >>> strong = np.array([1.0, 1.0, 1.0, 0.0]); weak = np.array([0.0, 1.0, 0.0, 1.0])
    >>> curve = routellm_curve(scores, strong, weak)
    >>> curve.strong_share.tolist()
    [0.0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 1.0]
    >>> round(apgr(curve, weak=0.5, strong=0.75), 3)
    1.125
    >>> aiq([1.0, 2.0], [0.5, 1.0], cost_range=(1.0, 2.0))
    0.75
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag_routing.errors import InvalidInputError

ArrayLike = Sequence[float] | np.ndarray

#: The quality fractions at which RouteLLM reports CPT.
CPT_LEVELS: tuple[float, ...] = (0.2, 0.5, 0.8)

_trapezoid = getattr(np, "trapezoid", None) or getattr(np, "trapz")  # numpy 2 renamed trapz


def _vector(values: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise InvalidInputError(f"{what} is empty")
    return array


# --------------------------------------------------------------------------------------------- RouteLLM
@dataclass(frozen=True)
class RouteLLMCurve:
    """RouteLLM's operating points, sorted by ``strong_share`` (stable, as pandas sorts them).

    Attributes:
        thresholds: the score threshold of each point (the 11 quantile edges).
        strong_share: fraction of queries sent to the strong model, in ``[0, 1]``.
        performance: mean quality of the routed answers at that threshold.
    """

    thresholds: np.ndarray
    strong_share: np.ndarray
    performance: np.ndarray


def routellm_thresholds(scores: ArrayLike, n_bins: int = 10) -> np.ndarray:
    """The ``n_bins + 1`` edges of ``pandas.qcut(scores, n_bins)`` (linear quantiles, duplicates kept)."""
    values = _vector(scores, "scores")
    if not np.isfinite(values).all():
        raise InvalidInputError("router scores must be finite")
    if n_bins < 1:
        raise InvalidInputError(f"n_bins must be >= 1, got {n_bins}")
    return np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1))


def routellm_curve(scores: ArrayLike, strong_quality: ArrayLike, weak_quality: ArrayLike,
                   n_bins: int = 10) -> RouteLLMCurve:
    """Share of strong calls and mean quality at each of RouteLLM's thresholds.

    Parameters:
        scores: ``(n,)`` router scores, higher = send to the strong model.
        strong_quality, weak_quality: ``(n,)`` outcome of each model on each query (NaN = unknown, left out
            of the mean).
        n_bins: number of quantile bins (RouteLLM's ``--num-results``, 10).
    """
    s = _vector(scores, "scores")
    strong = _vector(strong_quality, "strong_quality")
    weak = _vector(weak_quality, "weak_quality")
    if not s.shape == strong.shape == weak.shape:
        raise InvalidInputError(f"scores {s.shape}, strong {strong.shape} and weak {weak.shape} must align")
    thresholds = routellm_thresholds(s, n_bins)
    to_strong = s[None, :] >= thresholds[:, None]
    to_strong[-1] = s > thresholds[-1]
    outcome = np.where(to_strong, strong[None, :], weak[None, :])
    share = to_strong.mean(axis=1)
    with np.errstate(invalid="ignore"):
        performance = np.nanmean(np.where(np.isnan(outcome), np.nan, outcome), axis=1)
    order = np.argsort(share, kind="stable")
    return RouteLLMCurve(thresholds[order], share[order], performance[order])


def apgr(curve: RouteLLMCurve, weak: float, strong: float) -> float:
    """Average performance gap recovered: 0 = the weak model, 1 = the strong model, 0.5 = random mixing.

    Trapezoid area under ``performance(strong_share)`` minus the weak model's area, over the strong minus
    the weak model's area (both over the curve's own share range, as RouteLLM does).
    """
    if strong == weak:
        raise InvalidInputError("APGR is undefined when the strong and weak models perform the same")
    x = curve.strong_share
    area = float(_trapezoid(curve.performance, x))
    width = float(x[-1] - x[0])
    if width <= 0:
        raise InvalidInputError("APGR needs a curve that spans more than one share of strong calls")
    return (area - weak * width) / (strong * width - weak * width)


def cpt(curve: RouteLLMCurve, weak: float, strong: float, level: float) -> float:
    """Call-performance threshold: fraction of strong calls needed to reach ``weak + level·(strong - weak)``.

    RouteLLM's formula (linear interpolation of the share against the performance).
    """
    if not 0.0 <= level <= 1.0:
        raise InvalidInputError(f"CPT level must be in [0, 1], got {level}")
    target = weak + level * (strong - weak)
    return float(np.interp(target, curve.performance, curve.strong_share))


# --------------------------------------------------------------------------------------------- RouterBench
def pareto_front(cost: ArrayLike, quality: ArrayLike) -> np.ndarray:
    """Indices of the points no other point beats (cheaper or equal *and* better), sorted by cost.

    Of points with the same cost and quality only the first is kept.

    Example:
        >>> pareto_front([1, 2, 3, 2], [0.5, 0.4, 0.9, 0.7]).tolist()
        [0, 3, 2]
    """
    c = _vector(cost, "cost")
    q = _vector(quality, "quality")
    if c.shape != q.shape:
        raise InvalidInputError(f"cost {c.shape} and quality {q.shape} must align")
    order = np.lexsort((-q, c))  # by cost, then best quality first
    q_sorted = q[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(q_sorted)[:-1]])
    return order[q_sorted > best_before]


def non_decreasing_hull(cost: ArrayLike, quality: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(cost, quality)`` of the non-decreasing concave hull of the points (RouterBench's NDCH).

    The hull starts at the cheapest point, follows the upper convex hull and stops at the best quality; the
    function it defines stays at that quality for any larger cost.

    Example:
        >>> c, q = non_decreasing_hull([0, 1, 2, 3], [0.0, 0.2, 1.0, 0.5])
        >>> c.tolist(), q.tolist()
        ([0.0, 2.0], [0.0, 1.0])
    """
    front = pareto_front(cost, quality)  # hull vertices are Pareto-optimal; far fewer points to scan
    c = np.asarray(cost, dtype=np.float64).ravel()[front]
    q = np.asarray(quality, dtype=np.float64).ravel()[front]
    hull: list[int] = []
    for i in range(c.size):  # Andrew's monotone chain, upper part; c increases and q increases
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (c[b] - c[a]) * (q[i] - q[a]) - (q[b] - q[a]) * (c[i] - c[a])
            if cross >= 0:  # b lies on or below the segment a -> i
                hull.pop()
            else:
                break
        hull.append(i)
    return c[hull], q[hull]


def hull_value(hull_cost: np.ndarray, hull_quality: np.ndarray, at: ArrayLike) -> np.ndarray:
    """The hull function at costs ``at``: 0 below the cheapest vertex, flat after the last one."""
    x = np.asarray(at, dtype=np.float64)
    values = np.interp(x, hull_cost, hull_quality)
    return np.where(x < hull_cost[0], 0.0, values)


def aiq(cost: ArrayLike, quality: ArrayLike, cost_range: tuple[float, float] | None = None) -> float:
    """Average improvement in quality: mean of the non-decreasing hull over ``cost_range``.

    Parameters:
        cost, quality: the operating points of one router (e.g. its λ sweep).
        cost_range: ``(lo, hi)``; default the points' own cost range.

    Example:
        >>> round(aiq([1.0, 3.0], [0.6, 0.8], cost_range=(0.0, 4.0)), 6)   # (0 + 1.4 + 0.8) / 4
        0.55
    """
    hc, hq = non_decreasing_hull(cost, quality)
    if cost_range is None:
        lo, hi = float(hc[0]), float(np.max(np.asarray(cost, dtype=np.float64)))
    else:
        lo, hi = float(cost_range[0]), float(cost_range[1])
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        raise InvalidInputError(f"cost_range must be finite with lo <= hi, got {(lo, hi)}")
    if hi - lo <= 1e-12 * max(abs(hi), 1e-300):
        return float(hull_value(hc, hq, hi))
    start = max(lo, float(hc[0]))
    if start >= hi:
        return 0.0
    inside = hc[(hc > start) & (hc < hi)]
    xs = np.concatenate([[start], inside, [hi]])
    return float(_trapezoid(hull_value(hc, hq, xs), xs) / (hi - lo))


def cost_to_reach(cost: ArrayLike, quality: ArrayLike, target: float, tol: float = 1e-9) -> float | None:
    """Lowest cost at which the non-decreasing hull reaches ``target`` quality (``None`` if it never does).

    Example:
        >>> round(cost_to_reach([1.0, 3.0], [0.6, 0.8], target=0.7), 6)
        2.0
    """
    hc, hq = non_decreasing_hull(cost, quality)
    if hq[-1] < target - tol:
        return None
    first = int(np.argmax(hq >= target - tol))
    if first == 0:
        return float(hc[0])
    c0, c1, q0, q1 = hc[first - 1], hc[first], hq[first - 1], hq[first]
    return float(c0 + (c1 - c0) * (min(target, q1) - q0) / (q1 - q0))


__all__ = [
    "CPT_LEVELS",
    "RouteLLMCurve",
    "routellm_thresholds",
    "routellm_curve",
    "apgr",
    "cpt",
    "pareto_front",
    "non_decreasing_hull",
    "hull_value",
    "aiq",
    "cost_to_reach",
]
