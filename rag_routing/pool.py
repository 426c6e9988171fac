"""Candidate lifecycle (survey §5.2.2-5.2.4): add a candidate cheaply, find the ones not worth keeping, remove
them from every router.

* **Add** (Jitkrittum et al. 2025): run the new candidate only on a small, informative anchor set
  (:func:`select_anchor_queries`: k-means medoids, or the queries where the existing candidates disagree
  most, one per k-means stratum) and hand its outcomes to every router's ``add_candidate``
  (:func:`profile_candidate`) — the cluster router gets a per-cluster vector, a bandit a warm arm; nothing is
  refitted. Optionally the outcomes on the whole training set are first imputed from the anchors by a ridge
  regression on the existing candidates' outcomes (the IRT-like idea of EmbedLLM and of Y. Li 2025's model
  identity vectors), which corrects the bias of non-random anchors.
* **Prune** (J. Yuan et al. 2025: 30 % of a pool can be redundant): :func:`find_dominated` lists candidates
  that are no better than a no-costlier one anywhere (per query or per cluster), :func:`find_redundant` the
  same within a tolerance; :func:`keeping_cost` says what keeping one costs under a router (extra $ per 1,000
  queries, quality and AIQ with and without it).
* **Remove**: :func:`remove_candidate` drops a candidate from every router, after checking that all can.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> ds = RoutingDataset(["a", "b", "c"], ["small", "large", "pricey"],
    ...                     [[1, 1, 1], [0, 1, 1], [0, 1, 0]], np.tile([0.001, 0.01, 0.03], (3, 1)))
    >>> [(r.candidate, r.covered_by) for r in find_dominated(ds, by="query")]
    [('pricey', 'large')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError, UnknownCandidateError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.metrics import aiq
from rag_routing.evaluation.sweep import lambda_grid, realised, select_many

ANCHOR_METHODS = ("cluster", "uncertainty", "random")


def _features(dataset: RoutingDataset, features: np.ndarray | None) -> np.ndarray:
    F = dataset.embeddings if features is None else np.asarray(features, dtype=np.float32)
    if F is None:
        raise InvalidInputError("anchor selection needs query features: attach them with "
                                "dataset.with_embeddings(...) or pass features=")
    if F.shape[0] != len(dataset):
        raise InvalidInputError(f"{F.shape[0]} feature rows for {len(dataset)} queries")
    return F


def _kmeans(F: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and squared distance of each row to its centroid."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(F)
    dist = ((F - km.cluster_centers_[km.labels_]) ** 2).sum(axis=1)
    return km.labels_, dist


def disagreement(quality: np.ndarray) -> np.ndarray:
    """Per query, the variance of the known outcomes across candidates (``p(1-p)`` for 0/1 outcomes)."""
    Q = np.asarray(quality, dtype=np.float64)
    known = ~np.isnan(Q)
    count = known.sum(axis=1)
    mean = np.where(known, Q, 0.0).sum(axis=1) / np.maximum(count, 1)
    var = np.where(known, (Q - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(count, 1)
    return np.where(count >= 2, var, 0.0)


def select_anchor_queries(dataset: RoutingDataset, n: int, method: str = "cluster", *,
                          features: np.ndarray | None = None, candidates: Sequence[str] | None = None,
                          seed: int = 0) -> np.ndarray:
    """Row indices of ``n`` anchor queries to run a new candidate on.

    Methods: ``"cluster"`` — the medoid (row nearest the centroid) of each of ``n`` k-means clusters of the
    query features; ``"uncertainty"`` — in each of those clusters, the query where the existing
    ``candidates`` (default: all) disagree most (ties: nearest the centroid); ``"random"`` — a seeded sample.
    """
    if method not in ANCHOR_METHODS:
        raise InvalidInputError(f"method must be one of {ANCHOR_METHODS}, got {method!r}")
    if not 1 <= n <= len(dataset):
        raise InvalidInputError(f"n must be between 1 and {len(dataset)} queries, got {n}")
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(len(dataset), n, replace=False))
    labels, dist = _kmeans(_features(dataset, features), n, seed)
    score = -dist
    if method == "uncertainty":
        source = dataset if candidates is None else dataset.select_candidates(candidates)
        score = disagreement(source.quality) - 1e-9 * dist / max(float(dist.max()), 1e-12)
    # Round robin over clusters, best score first: one per cluster, then a second per cluster, ... (k-means can
    # return fewer distinct clusters than asked when queries share a vector, e.g. a long common prompt prefix).
    order = np.lexsort((-score, labels))
    starts = np.r_[0, np.flatnonzero(labels[order][1:] != labels[order][:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return np.sort(order[np.lexsort((labels[order], rank))[:n]])


@dataclass(frozen=True)
class CandidateProfile:
    """What :func:`profile_candidate` did."""

    name: str
    cost: float
    n_anchors: int
    mean_outcome: float
    routers: list[str]
    imputed: bool


def impute_outcomes(anchors: RoutingDataset, outcomes: np.ndarray, reference: RoutingDataset,
                    alpha: float = 1.0) -> np.ndarray:
    """The new candidate's outcome on every ``reference`` query, predicted by a ridge regression of its anchor
    outcomes on the existing candidates' outcomes there (unknown ones at the column mean), clipped to the
    range of the observed outcomes."""
    known = ~np.isnan(outcomes)
    if known.sum() < 2:
        raise InvalidInputError("imputation needs at least two known anchor outcomes")
    cols = [anchors.candidate_index(c) for c in reference.candidates]
    fill = np.nan_to_num(reference.mean_quality(), nan=0.0)

    def design(Q: np.ndarray) -> np.ndarray:
        return np.hstack([np.where(np.isnan(Q), fill, Q), np.ones((len(Q), 1))])

    X, y = design(anchors.quality[:, cols][known]), outcomes[known]
    penalty = alpha * np.eye(X.shape[1])
    penalty[-1, -1] = 1e-8
    coef = np.linalg.solve(X.T @ X + penalty, X.T @ y)
    return np.clip(design(reference.quality) @ coef, y.min(), y.max())


def profile_candidate(name: str, outcomes: Sequence[float] | np.ndarray, anchors: RoutingDataset | Any, *,
                      cost: float, routers: Sequence[Any], impute_from: RoutingDataset | None = None,
                      skip_unsupported: bool = False) -> CandidateProfile:
    """Add candidate ``name`` to every router from its ``outcomes`` on the ``anchors`` (NaN = unknown).

    ``anchors``: the anchor queries (a RoutingDataset subset, query strings or features). ``impute_from``: a
    reference set (e.g. the training set; ``anchors`` must then be a RoutingDataset with the same candidates)
    on which the outcomes are first imputed by :func:`impute_outcomes`; the routers then learn from those.
    Routers without ``add_candidate`` raise :class:`InvalidInputError` before any router is changed, unless
    ``skip_unsupported``.
    """
    y = np.asarray(outcomes, dtype=np.float64).ravel()
    unsupported = [type(r).__name__ for r in routers if not hasattr(r, "add_candidate")]
    if unsupported and not skip_unsupported:
        raise InvalidInputError(f"{unsupported} cannot add a candidate without refitting; refit them, or pass "
                                "skip_unsupported=True")
    if impute_from is not None:
        if not isinstance(anchors, RoutingDataset):
            raise InvalidInputError("impute_from needs anchors as a RoutingDataset (the existing outcomes there)")
        y, anchors = impute_outcomes(anchors, y, impute_from), impute_from
    updated = []
    for router in routers:
        if hasattr(router, "add_candidate"):
            router.add_candidate(name, y, anchors, cost=cost)
            updated.append(getattr(router, "name", type(router).__name__))
    return CandidateProfile(name, float(cost), int(np.asarray(outcomes).size), float(np.nanmean(y)), updated,
                            impute_from is not None)


@dataclass(frozen=True)
class Redundancy:
    """``candidate`` is never better than ``covered_by`` by more than ``max_advantage`` (<= the tolerance),
    at ``where`` granularity, and costs ``extra_cost`` US $ more per call on average (>= 0).
    ``oracle_loss``: how much the pool's per-query best quality drops without ``candidate``."""

    candidate: str
    covered_by: str
    where: str
    max_advantage: float
    extra_cost: float
    oracle_loss: float


def _profiles(dataset: RoutingDataset, by: str, features: np.ndarray | None, n_clusters: int,
              seed: int) -> np.ndarray:
    if by == "query":
        return dataset.quality
    if by != "cluster":
        raise InvalidInputError(f"by must be 'query' or 'cluster', got {by!r}")
    labels, _ = _kmeans(_features(dataset, features), min(n_clusters, len(dataset)), seed)
    onehot = np.eye(labels.max() + 1)[labels]
    known = ~np.isnan(dataset.quality)
    counts = onehot.T @ known
    sums = onehot.T @ np.where(known, dataset.quality, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def find_redundant(dataset: RoutingDataset, tol: float = 0.02, *, by: str = "cluster",
                   features: np.ndarray | None = None, n_clusters: int = 16, seed: int = 0) -> list[Redundancy]:
    """Candidates no better than a no-costlier candidate by more than ``tol`` anywhere.

    ``by="query"`` compares outcomes query by query (where both are known); ``by="cluster"`` compares mean
    outcomes per k-means cluster of the query features (``n_clusters``, seeded). Each flagged candidate is
    reported once, with its cheapest cover. Of two interchangeable candidates only the costlier (or, at equal
    cost, the later) is flagged.
    """
    if not tol >= 0:
        raise InvalidInputError(f"tol must be >= 0, got {tol}")
    P = _profiles(dataset, by, features, n_clusters, seed)
    cost = np.nan_to_num(dataset.mean_cost(), nan=np.inf)
    Q = np.nan_to_num(dataset.quality, nan=0.0)  # unknown counts as wrong for the oracle, as OracleRouter does
    best_all = Q.max(axis=1)
    names = dataset.candidates
    found = []
    for j in range(len(names)):
        covers = []
        for k in range(len(names)):
            if k == j or cost[k] > cost[j] or (cost[k] == cost[j] and k > j):
                continue
            both = ~np.isnan(P[:, j]) & ~np.isnan(P[:, k])
            if not both.any():
                continue
            advantage = float(np.max(P[both, j] - P[both, k]))
            if advantage <= tol + 1e-12:
                covers.append((cost[k], advantage, k))
        if covers:
            _, advantage, k = min(covers)
            loss = float(np.mean(best_all - np.delete(Q, j, axis=1).max(axis=1)))
            found.append(Redundancy(names[j], names[k], by, max(advantage, 0.0), float(cost[j] - cost[k]), loss))
    return found


def find_dominated(dataset: RoutingDataset, *, by: str = "cluster", features: np.ndarray | None = None,
                   n_clusters: int = 16, seed: int = 0) -> list[Redundancy]:
    """Candidates no better than a no-costlier one anywhere (:func:`find_redundant` with ``tol=0``)."""
    return find_redundant(dataset, 0.0, by=by, features=features, n_clusters=n_clusters, seed=seed)


@dataclass(frozen=True)
class KeepingCost:
    """What keeping ``candidate`` costs under a router, on a test set: realised US $ per 1,000 queries and mean
    quality at the router's λ with and without it, its share of the routes, and AIQ with and without it."""

    candidate: str
    share: float
    usd_per_1k_with: float
    usd_per_1k_without: float
    quality_with: float
    quality_without: float
    aiq_with: float
    aiq_without: float

    @property
    def extra_usd_per_1k(self) -> float:
        return self.usd_per_1k_with - self.usd_per_1k_without


def keeping_cost(router: Any, test: RoutingDataset, candidate: str, *, lam: float | None = None) -> KeepingCost:
    """Route ``test`` with and without ``candidate`` (its column dropped from the router's estimates; the
    others are unchanged, which is exact for cluster, kNN and bandit routers) and compare."""
    if candidate not in router.candidates_:
        raise UnknownCandidateError(f"unknown candidate {candidate!r}; router knows {router.candidates_}")
    test = test.select_candidates(router.candidates_)
    j = router.candidates_.index(candidate)
    S, C = router.predict_quality(test), router.predict_cost(test)
    lam = router.lam if lam is None else lam
    cost_range = (float(np.nanmin(test.mean_cost())), float(np.nanmax(test.mean_cost())))
    out = []
    for keep in (np.arange(S.shape[1]), np.delete(np.arange(S.shape[1]), j)):
        sub = test.select_candidates([router.candidates_[i] for i in keep])
        lams = np.concatenate([[float(lam)], lambda_grid(S[:, keep], C[:, keep])])
        choices = select_many(S[:, keep], C[:, keep], lams)
        cost, quality = realised(sub, choices)
        out.append((float(cost[0]) * 1000, float(quality[0]), aiq(cost[1:], quality[1:], cost_range),
                    float((keep[choices[0]] == j).mean())))
    (c1, q1, a1, share), (c0, q0, a0, _) = out
    return KeepingCost(candidate, share, c1, c0, q1, q0, a1, a0)


def remove_candidate(name: str, routers: Sequence[Any]) -> list[Any]:
    """Remove ``name`` from every router (each must know it and have ``remove_candidate``; checked first, so a
    refusal changes nothing). Returns the routers."""
    problems = []
    for router in routers:
        if not hasattr(router, "remove_candidate"):
            problems.append(f"{type(router).__name__} has no remove_candidate")
        elif name not in getattr(router, "candidates_", []):
            problems.append(f"{type(router).__name__} does not know {name!r}")
        elif getattr(router, "fallback", None) == name or len(router.candidates_) == 1:
            problems.append(f"{type(router).__name__} uses {name!r} as fallback or has no other candidate")
    if problems:
        raise InvalidInputError(f"cannot remove {name!r}: " + "; ".join(problems) + " (nothing was changed)")
    for router in routers:
        router.remove_candidate(name)
    return list(routers)


__all__ = ["ANCHOR_METHODS", "select_anchor_queries", "disagreement", "impute_outcomes", "profile_candidate",
           "CandidateProfile", "find_redundant", "find_dominated", "Redundancy", "keeping_cost", "KeepingCost",
           "remove_candidate"]
