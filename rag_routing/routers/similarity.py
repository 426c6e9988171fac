"""Similarity-based routers (survey §4.1.1-4.1.2): similar queries should go to the same candidate.

* :class:`KNNRouter` — the k most similar training queries vote with their known outcomes (Stripelis et al.
  2024; Jang et al. 2023).
* :class:`ClusterRouter` — k-means clusters of training queries and a per-cluster quality vector per candidate;
  new candidates join from their outcomes on a few representative queries, without refitting (Jitkrittum et
  al. 2025).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput
from rag_routing.routers.neighbours import (
    MemoryRouter,
    NeighbourIndex,
    neighbour_sums,
)
from rag_routing.validation import check_choice, check_float, check_int


def _distinct_rows(F: np.ndarray, enough: int) -> int:
    """Number of distinct rows of ``F``, or any number >= ``enough`` once that many are found (a leading block
    usually has them, so the full O(n log n) row sort runs only on degenerate data)."""
    head = len(np.unique(F[: 50 * enough], axis=0))
    if head >= enough or len(F) <= 50 * enough:
        return head
    return len(np.unique(F, axis=0))


class KNNRouter(MemoryRouter):
    """k-nearest-neighbour quality estimates (Stripelis et al. 2024, TensorOpera Router; Jang et al. 2023).

    Estimates each candidate's quality on a query as the similarity-weighted mean of its known outcomes on the
    ``k`` most similar training queries (FAISS search), shrunk towards its global mean by ``prior`` pseudo-votes.

    Parameters:
        k: neighbours searched per query.
        weighting: ``"softmax"`` (weights ``exp((s - s_max) / temperature)``), ``"similarity"`` (``max(s, 0)``)
            or ``"uniform"``.
        temperature: softmax temperature in cosine-similarity units.
        prior: weight of the candidate's global mean, as a number of pseudo-neighbours (0 = none; the global
            mean is still used when no neighbour has an outcome for the candidate).
        ivf_threshold, nprobe, **kwargs: see :class:`~rag_routing.routers.neighbours.MemoryRouter`.

    Unknown outcomes (NaN) are skipped per candidate: only neighbours with a known outcome carry weight.

    Example:
        >>> import numpy as np
        >>> from rag_routing.embeddings import PrecomputedFeaturizer
        >>> E = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
        >>> ds = RoutingDataset(["a1", "a2", "b1", "b2"], ["A", "B"], [[1, 0], [1, 0], [0, 1], [0, 1]],
        ...                     np.ones((4, 2))).with_embeddings(E / np.linalg.norm(E, axis=1, keepdims=True), "toy")
        >>> router = KNNRouter(k=2, featurizer=PrecomputedFeaturizer("toy")).fit(ds)
        >>> router.route_indices(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)).tolist()
        [0, 1]
    """

    name = "knn"

    def __init__(self, *, k: int = 200, weighting: str = "softmax", temperature: float = 0.2, prior: float = 1.0,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.k = check_int("k", k)
        self.weighting = check_choice("weighting", weighting, ("softmax", "similarity", "uniform"))
        self.temperature = check_float("temperature", temperature, open_low=True)
        self.prior = check_float("prior", prior)

    #: A candidate known on fewer than this share of the memory (one added from anchors) gets its own neighbour
    #: search over the rows that know it; otherwise its k nearest neighbours would mostly be unknown for it.
    sparse_share = 0.5

    def _prepare(self) -> None:
        known = ~np.isnan(self.train_quality_)
        # One table, one sparse product: weighted sums of outcomes and of "outcome known" per candidate.
        self._table = np.hstack([np.where(known, self.train_quality_, 0.0), known]).astype(np.float64)
        self._sparse = {}
        for j in np.flatnonzero(known.mean(axis=0) < self.sparse_share):
            rows = np.flatnonzero(known[:, j])
            self._sparse[int(j)] = (rows, NeighbourIndex(self.train_features_[rows], ivf_threshold=None))

    def _weights(self, sims: np.ndarray) -> np.ndarray:
        if self.weighting == "uniform":
            return np.ones_like(sims)
        if self.weighting == "similarity":
            return np.maximum(sims, 1e-6)
        return np.exp((sims - sims[:, :1]) / self.temperature)

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        sims, idx = self.index_.search(features, self.k)
        sums = neighbour_sums(self._weights(sims), idx, self._table)
        m = len(self.candidates_)
        num = sums[:, :m] + self.prior * self.global_quality_
        den = sums[:, m:] + self.prior
        with np.errstate(invalid="ignore", divide="ignore"):
            S = np.where(den > 0, num / np.where(den > 0, den, 1.0), self.global_quality_)
        for j, (rows, index) in self._sparse.items():  # a loop over sparse candidates, not over the memory
            sims, idx = index.search(features, self.k)
            valid = idx >= 0
            weights = np.where(valid, self._weights(sims), 0.0)
            outcomes = self.train_quality_[rows, j].astype(np.float64)[np.where(valid, idx, 0)]
            num_j = (weights * outcomes).sum(axis=1) + self.prior * self.global_quality_[j]
            den_j = weights.sum(axis=1) + self.prior
            S[:, j] = np.where(den_j > 0, num_j / np.where(den_j > 0, den_j, 1.0), self.global_quality_[j])
        return S

    def add_candidate(self, name: str, outcomes: Sequence[float] | np.ndarray, queries_or_features: RouterInput,
                      *, cost: float) -> KNNRouter:
        """Add ``name`` from its outcomes on a few queries (anchors), without refitting: the anchors join the
        memory as rows where only ``name``'s outcome is known, and ``name`` is estimated from them alone."""
        self._check_fitted()
        if not isinstance(name, str) or not name.strip() or name in self.candidates_:
            raise InvalidInputError(f"candidate name must be new and non-empty; got {name!r}")
        y = np.asarray(outcomes, dtype=np.float32).ravel()
        if np.isinf(y).any() or np.isnan(y).all():
            raise InvalidInputError("outcomes must be finite, with at least one known (non-NaN) value")
        cost = check_float("cost", cost)
        F = self.features(queries_or_features)
        if len(F) != len(y):
            raise InvalidInputError(f"{len(y)} outcomes for {len(F)} queries")
        m = len(self.candidates_)
        old = np.hstack([self.train_quality_, np.full((len(self.train_quality_), 1), np.nan, dtype=np.float32)])
        new = np.full((len(y), m + 1), np.nan, dtype=np.float32)
        new[:, m] = y
        self.candidates_ = [*self.candidates_, name]
        self.mean_cost_ = np.append(self.mean_cost_, cost)
        self._remember(np.vstack([self.train_features_, F]), np.vstack([old, new]))
        return self

    def remove_candidate(self, name: str) -> KNNRouter:
        """Drop ``name``'s column; memory rows that only held its outcomes (its anchors) go too."""
        j = self._removable_position(name)
        quality = np.delete(self.train_quality_, j, axis=1)
        keep = ~np.isnan(quality).all(axis=1)
        self.candidates_ = [c for c in self.candidates_ if c != name]
        self.mean_cost_ = np.delete(self.mean_cost_, j)
        self._remember(self.train_features_[keep], quality[keep])
        return self


class ClusterRouter(Router):
    """Per-cluster quality vectors over k-means clusters (Jitkrittum et al. 2025, "Universal model routing for
    efficient LLM inference").

    Estimates each candidate's quality on a query as its mean outcome on the query's k-means cluster (the
    negated per-cluster error vector), smoothed towards its global mean with ``prior`` pseudo-queries.

    Assignment: ``"hard"`` uses the nearest centroid (the paper's rule); ``"soft"`` (the default: better on
    RouteLLM MMLU training folds with both featurizers) mixes the clusters' vectors with weights
    ``softmax(-||x - centroid||^2 / temperature)``.

    A candidate added later with :meth:`add_candidate` needs only its outcomes on a few queries (e.g.
    :meth:`representative_queries`, the training queries nearest each centroid): they are assigned to their
    nearest centroids, and its per-cluster vector is their per-cluster mean, smoothed like the others; nothing
    else is refitted. :meth:`remove_candidate` drops one.

    Parameters:
        n_clusters: k-means clusters (capped at the number of distinct training vectors).
        prior: pseudo-queries at the global mean added to every cluster's estimate.
        assignment: ``"hard"`` or ``"soft"``; temperature: soft-assignment temperature (squared-distance units).
        n_representatives: training queries kept per cluster (nearest the centroid) for new candidates.
        seed, n_init: k-means seeding and restarts (deterministic for a fixed seed).
        **kwargs: ``lam``, ``budget``, ``fallback``, ``featurizer`` (see :class:`Router`).

    Example:
        >>> import numpy as np
        >>> from rag_routing.embeddings import PrecomputedFeaturizer
        >>> E = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
        >>> ds = RoutingDataset(["a1", "a2", "b1", "b2"], ["A", "B"], [[1, 0], [1, 0], [0, 1], [0, 1]],
        ...                     np.ones((4, 2))).with_embeddings(E / np.linalg.norm(E, axis=1, keepdims=True), "toy")
        >>> router = ClusterRouter(n_clusters=2, prior=0.0, featurizer=PrecomputedFeaturizer("toy")).fit(ds)
        >>> reps = router.representative_queries(per_cluster=2)       # run the new candidate on these
        >>> _ = router.add_candidate("C", [float(q.startswith("b")) for q in reps], cost=0.5)
        >>> router.candidates_, router.predict_quality(np.array([[0.0, 1.0]], dtype=np.float32)).round(2).tolist()
        (['A', 'B', 'C'], [[0.0, 1.0, 1.0]])
    """

    name = "cluster"

    def __init__(self, *, n_clusters: int = 32, prior: float = 5.0, assignment: str = "soft",
                 temperature: float = 0.05, n_representatives: int = 10, seed: int = 0, n_init: int = 1,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.n_clusters = check_int("n_clusters", n_clusters)
        self.prior = check_float("prior", prior)
        self.assignment = check_choice("assignment", assignment, ("hard", "soft"))
        self.temperature = check_float("temperature", temperature, open_low=True)
        self.n_representatives = check_int("n_representatives", n_representatives)
        self.seed = check_int("seed", seed, low=0)
        self.n_init = check_int("n_init", n_init)

    # ------------------------------------------------------------------ fitting
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        from sklearn.cluster import KMeans

        F = np.asarray(features, dtype=np.float32)
        k = min(self.n_clusters, _distinct_rows(F, self.n_clusters))
        km = KMeans(n_clusters=k, random_state=self.seed, n_init=self.n_init).fit(F)
        self.centroids_ = km.cluster_centers_.astype(np.float32)
        labels = self._nearest(F)
        self.cluster_quality_, self.cluster_counts_ = self._cluster_means(labels, dataset.quality)
        rep_index, rep_cluster = [], []
        dist = self._sq_distances(F)[np.arange(len(F)), labels]
        for c in range(k):
            members = np.flatnonzero(labels == c)
            closest = members[np.argsort(dist[members], kind="stable")][: self.n_representatives]
            rep_index.extend(closest.tolist())
            rep_cluster.extend([c] * len(closest))
        self.rep_cluster_ = np.asarray(rep_cluster, dtype=np.int64)
        self.rep_queries_ = [dataset.queries[i] for i in rep_index]

    def _cluster_means(self, labels: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed per-cluster mean of each outcome column, and the known-outcome counts."""
        Q = np.asarray(quality, dtype=np.float64).reshape(len(labels), -1)
        known = ~np.isnan(Q)
        if not known.any(axis=0).all():
            raise InvalidInputError("every candidate needs at least one known outcome")
        sums = np.zeros((len(self.centroids_), Q.shape[1]))
        counts = np.zeros_like(sums)
        np.add.at(sums, labels, np.where(known, Q, 0.0))
        np.add.at(counts, labels, known)
        overall = np.where(known, Q, 0.0).sum(0) / known.sum(0)
        den = counts + self.prior
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(den > 0, (sums + self.prior * overall) / np.where(den > 0, den, 1), overall)
        return means, counts

    # ------------------------------------------------------------------ prediction
    def _sq_distances(self, F: np.ndarray) -> np.ndarray:
        C = self.centroids_
        if F.shape[1] != C.shape[1]:
            raise InvalidInputError(f"features are {F.shape[1]}-d; this router was fitted on {C.shape[1]}-d features")
        return np.maximum((F * F).sum(1)[:, None] - 2 * F @ C.T + (C * C).sum(1)[None, :], 0.0)

    def _nearest(self, F: np.ndarray) -> np.ndarray:
        return np.argmin(self._sq_distances(F), axis=1)

    def cluster_probabilities(self, X: RouterInput) -> np.ndarray:
        """``(n, n_clusters)`` assignment weights (one-hot for hard assignment)."""
        return self._assign(self.features(X))

    def _assign(self, F: np.ndarray) -> np.ndarray:
        d2 = self._sq_distances(F)
        if self.assignment == "hard":
            return np.eye(len(self.centroids_))[np.argmin(d2, axis=1)]
        logits = -(d2 - d2.min(axis=1, keepdims=True)) / self.temperature
        P = np.exp(logits)
        return P / P.sum(axis=1, keepdims=True)

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        if self.assignment == "hard":
            return self.cluster_quality_[self._nearest(features)]
        return self._assign(features) @ self.cluster_quality_

    # ------------------------------------------------------------------ candidate pool
    def representative_queries(self, per_cluster: int = 5) -> list[str]:
        """The ``per_cluster`` training queries nearest each centroid, cluster by cluster (closest first).

        Run a new candidate on these and pass its outcomes, in this order, to :meth:`add_candidate`.
        """
        self._check_fitted()
        return [self.rep_queries_[i] for i in self._representatives(per_cluster)]

    def _representatives(self, per_cluster: int) -> np.ndarray:
        check_int("per_cluster", per_cluster)
        if per_cluster > self.n_representatives:
            raise InvalidInputError(f"per_cluster={per_cluster} exceeds the {self.n_representatives} representatives "
                                    "kept per cluster; refit with a larger n_representatives")
        rank = np.zeros(len(self.rep_cluster_), dtype=np.int64)
        for c in np.unique(self.rep_cluster_):
            where = np.flatnonzero(self.rep_cluster_ == c)
            rank[where] = np.arange(len(where))
        return np.flatnonzero(rank < per_cluster)

    def add_candidate(self, name: str, outcomes: Sequence[float] | np.ndarray,
                      queries_or_features: RouterInput | None = None, *, cost: float) -> ClusterRouter:
        """Add candidate ``name`` from its ``outcomes`` (NaN = unknown) on a few queries, without refitting.

        ``queries_or_features``: the queries (strings, a RoutingDataset or a feature matrix) the outcomes were
        measured on; ``None`` means :meth:`representative_queries` for the ``per_cluster`` that matches
        ``len(outcomes)``. ``cost``: the candidate's expected US $ per call. Returns ``self``.
        """
        self._check_fitted()
        if not isinstance(name, str) or not name:
            raise InvalidInputError("candidate name must be a non-empty string")
        if name in self.candidates_:
            raise InvalidInputError(f"candidate {name!r} already exists; remove_candidate({name!r}) first")
        y = np.asarray(outcomes, dtype=np.float64).ravel()
        if np.isinf(y).any() or np.isnan(y).all():
            raise InvalidInputError("outcomes must be finite, with at least one known (non-NaN) value")
        cost = check_float("cost", cost)
        labels = self._labels_for(y, queries_or_features)
        means, counts = self._cluster_means(labels, y[:, None])
        self.cluster_quality_ = np.hstack([self.cluster_quality_, means])
        self.cluster_counts_ = np.hstack([self.cluster_counts_, counts])
        self.candidates_ = [*self.candidates_, name]
        self.mean_cost_ = np.append(self.mean_cost_, cost)
        return self

    def _labels_for(self, y: np.ndarray, queries_or_features: RouterInput | None) -> np.ndarray:
        if queries_or_features is None:
            for per_cluster in range(1, self.n_representatives + 1):
                chosen = self._representatives(per_cluster)
                if len(chosen) == len(y):
                    return self.rep_cluster_[chosen]
            raise InvalidInputError(f"{len(y)} outcomes match no representative_queries(per_cluster=...) set; "
                                    "pass the queries (or features) the outcomes were measured on")
        F = self.features(queries_or_features)
        if len(F) != len(y):
            raise InvalidInputError(f"{len(y)} outcomes for {len(F)} queries")
        return self._nearest(F)

    def remove_candidate(self, name: str) -> ClusterRouter:
        """Drop candidate ``name`` from the pool (its per-cluster vector is forgotten). Returns ``self``."""
        j = self._removable_position(name)
        keep = [i for i in range(len(self.candidates_)) if i != j]
        self.cluster_quality_ = self.cluster_quality_[:, keep]
        self.cluster_counts_ = self.cluster_counts_[:, keep]
        self.candidates_ = [self.candidates_[i] for i in keep]
        self.mean_cost_ = self.mean_cost_[keep]
        return self

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"centroids": self.centroids_, "cluster_quality": self.cluster_quality_,
                  "cluster_counts": self.cluster_counts_, "rep_cluster": self.rep_cluster_}
        return {"representative_queries": self.rep_queries_}, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.centroids_ = np.asarray(arrays["centroids"], dtype=np.float32)
        self.cluster_quality_ = np.asarray(arrays["cluster_quality"], dtype=np.float64)
        self.cluster_counts_ = np.asarray(arrays["cluster_counts"], dtype=np.float64)
        self.rep_cluster_ = np.asarray(arrays["rep_cluster"], dtype=np.int64)
        self.rep_queries_ = [str(q) for q in config["representative_queries"]]
        k, m = len(self.centroids_), len(self.candidates_)
        if self.cluster_quality_.shape != (k, m) or len(self.rep_queries_) != len(self.rep_cluster_):
            raise CorruptStateError(f"saved cluster state does not match {k} clusters x {m} candidates")


__all__ = ["KNNRouter", "ClusterRouter"]
