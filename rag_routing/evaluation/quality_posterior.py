"""How sure are we of each (query, candidate) quality? Mean and spread of every cell of a partly labelled table.

An active sampler (:mod:`rag_routing.evaluation.active_sampling`) needs, for every cell of a
:class:`~rag_routing.evaluation.dataset.RoutingDataset` (NaN = not labelled yet), an estimate of the quality
and of how uncertain that estimate is. Two estimators share one interface,
``estimate(dataset) -> (mean, std)``, both ``(n_queries, n_candidates)``:

* :class:`NeighbourPosterior` — a per-cell Beta posterior from the labels of the query's nearest neighbours
  (similarity-weighted pseudo-counts, shrunk to the candidate's mean): a cell whose neighbourhood holds few
  labels for that candidate is uncertain, however the labels fell. One neighbour search per table (cached),
  then one weighted sum per call: milliseconds on thousands of queries.
* :class:`BootstrapPosterior` — the spread of a cheap router's predictions (``knn``, ``mf``, ``regressor``,
  ``cluster``, ...) refitted on bootstrap resamples of the labelled queries (Efron 1979; query-by-committee,
  Seung et al. 1992). Any registered router works; it costs ``n_members`` fits per call.

Query features come from the dataset's ``embeddings`` when it has them, else from ``featurizer`` (the offline
MiniLM embedder by default, through its on-disk cache; ``"tfidf"`` for no torch).

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> E = np.repeat(np.eye(2, dtype=np.float32), 3, axis=0)              # two groups of three queries
    >>> Q = np.array([[1, 0], [1, np.nan], [np.nan, np.nan], [0, 1], [0, 1], [np.nan, 1]])
    >>> ds = RoutingDataset([f"q{i}" for i in range(6)], ["a", "b"], Q, np.ones((6, 2))).with_embeddings(E, "toy")
    >>> mean, std = NeighbourPosterior(k=3, prior=1.0).estimate(ds)
    >>> bool(mean[2, 0] > mean[5, 0]), bool(std[2, 1] > std[5, 1])     # group 1 favours a; b is less known there
    (True, True)
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from rag_routing.embeddings import PrecomputedFeaturizer, make_featurizer
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset


def _column_means(quality: np.ndarray, pseudo: float = 1.0) -> np.ndarray:
    """Each candidate's mean known quality with ``pseudo`` extra labels at 0.5: two lucky right answers give
    0.83, not a certain 1.0 that would make every unlabelled cell of that candidate look settled."""
    known = ~np.isnan(quality)
    return (np.where(known, quality, 0.0).sum(axis=0) + 0.5 * pseudo) / (known.sum(axis=0) + pseudo)


class QualityPosterior(ABC):
    """Estimates ``(mean, std)`` of every cell's quality from the labelled cells (see module docstring).

    Args:
        featurizer: query features when the dataset carries no ``embeddings`` (``"minilm"``, ``"tfidf"``, a
            sentence-transformers name, or an object with ``fit`` / ``transform``).
    """

    name = "posterior"

    def __init__(self, *, featurizer: Any = "minilm"):
        self.featurizer = featurizer
        self._feature_key: str | None = None
        self._features: np.ndarray | None = None

    def features(self, dataset: RoutingDataset) -> np.ndarray:
        """The dataset's query vectors (its ``embeddings``, else computed once per set of queries and kept)."""
        if dataset.embeddings is not None:
            return np.asarray(dataset.embeddings, dtype=np.float32)
        key = hashlib.sha256("\x00".join(dataset.queries).encode("utf-8", "surrogatepass")).hexdigest()
        if key != self._feature_key:
            featurizer = make_featurizer(self.featurizer)
            featurizer.fit(dataset.queries)
            self._features = np.asarray(featurizer.transform(dataset.queries), dtype=np.float32)
            self._feature_key = key
        assert self._features is not None
        return self._features

    def estimate(self, dataset: RoutingDataset) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``, each ``(n_queries, n_candidates)``, finite; labelled cells included."""
        if not isinstance(dataset, RoutingDataset):
            raise InvalidInputError(f"estimate expects a RoutingDataset, got {type(dataset).__name__}")
        if np.isnan(dataset.quality).all():
            raise InvalidInputError("no cell is labelled yet: label a few (query, candidate) pairs first "
                                    "(the samplers start with random cells for candidates without labels)")
        mean, std = self._estimate(dataset)
        return np.nan_to_num(mean, nan=0.0), np.nan_to_num(std, nan=0.0)

    @abstractmethod
    def _estimate(self, dataset: RoutingDataset) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of every cell."""


class NeighbourPosterior(QualityPosterior):
    """A Beta posterior per cell from the similarity-weighted labels of the query's ``k`` nearest neighbours.

    With weights ``w = exp((s - s_max) / temperature)`` over the neighbours (the query itself included: its
    other candidates' labels say nothing about this one, and its own label, once known, settles the cell), the
    cell's quality is ``Beta(α, β)``, ``α = prior·μ_j + Σ w·q`` and ``β = prior·(1 - μ_j) + Σ w·(1 - q)``,
    the sums over the neighbours whose outcome for candidate ``j`` is known and ``μ_j`` the candidate's mean
    quality (with one pseudo-label at 0.5). The mean is ``α / (α + β)``, the spread the Beta's standard
    deviation: a cell whose neighbourhood holds few labels of that candidate keeps the wide prior. Qualities
    in [0, 1].

    Args:
        k: neighbours per query.
        temperature: softmax temperature over cosine similarities.
        prior: pseudo-labels at the candidate's mean quality.
        featurizer: see :class:`QualityPosterior`.
    """

    name = "neighbours"

    def __init__(self, *, k: int = 50, temperature: float = 0.1, prior: float = 2.0, featurizer: Any = "minilm"):
        super().__init__(featurizer=featurizer)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidInputError(f"k must be an integer >= 1, got {k!r}")
        if not (temperature > 0 and prior > 0):
            raise InvalidInputError(f"temperature and prior must be > 0, got {temperature!r}, {prior!r}")
        self.k, self.temperature, self.prior = k, float(temperature), float(prior)
        self._neighbours: tuple[str, int, np.ndarray, np.ndarray] | None = None

    def neighbours(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(weights, indices)``, both ``(n, k)``: the nearest rows of every row (FAISS, exact), cached."""
        from rag_routing.routers.neighbours import NeighbourIndex

        key = hashlib.blake2b(np.ascontiguousarray(features).tobytes(), digest_size=16).hexdigest(), self.k
        if self._neighbours is None or self._neighbours[:2] != key:
            sims, idx = NeighbourIndex(features, ivf_threshold=None).search(features, self.k)
            weights = np.where(idx >= 0, np.exp((sims - sims[:, :1]) / self.temperature), 0.0)
            self._neighbours = (*key, weights, np.maximum(idx, 0))
        return self._neighbours[2], self._neighbours[3]

    def _estimate(self, dataset: RoutingDataset) -> tuple[np.ndarray, np.ndarray]:
        weights, idx = self.neighbours(self.features(dataset))
        Q = dataset.quality
        known = ~np.isnan(Q)
        values = np.where(known, Q, 0.0)
        evidence = np.einsum("nk,nkm->nm", weights, known[idx].astype(np.float64))
        sums = np.clip(np.einsum("nk,nkm->nm", weights, values[idx]), 0.0, evidence)
        prior_mean = _column_means(Q)[None, :]
        alpha = self.prior * prior_mean + sums
        beta = self.prior * (1.0 - prior_mean) + evidence - sums
        total = alpha + beta
        mean = alpha / total
        return mean, np.sqrt(alpha * beta / (total * total * (total + 1.0)))


class BootstrapPosterior(QualityPosterior):
    """Mean and spread of a router's predictions over ``n_members`` fits on bootstrap resamples of the labelled
    queries (query-by-committee).

    Args:
        router: a registered router name (``"knn"``, ``"mf"``, ``"regressor"``, ``"cluster"``, ...).
        n_members: committee size (fits per estimate).
        router_params: extra constructor arguments of the router.
        seed: resampling seed; the same labelled table gives the same estimate.
        featurizer: see :class:`QualityPosterior`.
    """

    name = "bootstrap"

    def __init__(self, router: str = "knn", *, n_members: int = 5, router_params: Mapping[str, Any] | None = None,
                 seed: int = 0, featurizer: Any = "minilm"):
        super().__init__(featurizer=featurizer)
        from rag_routing.routers.registry import get_router_class

        if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 2:
            raise InvalidInputError(f"n_members must be an integer >= 2 (a spread needs two fits), got {n_members!r}")
        self.router_class = get_router_class(router)
        self.router, self.n_members, self.seed = router, n_members, int(seed)
        self.router_params = dict(router_params or {})

    def _member(self, seed: int) -> Any:
        import inspect

        kwargs = dict(self.router_params)
        if "seed" in inspect.signature(self.router_class.__init__).parameters:
            kwargs.setdefault("seed", seed)
        return self.router_class(featurizer=PrecomputedFeaturizer("posterior-features"), **kwargs)

    def _estimate(self, dataset: RoutingDataset) -> tuple[np.ndarray, np.ndarray]:
        F = self.features(dataset)
        table = dataset.with_embeddings(F, "posterior-features")
        known = ~np.isnan(table.quality)
        labelled = np.flatnonzero(known.any(axis=1))
        # One labelled row per candidate always joins the resample, so every member sees every candidate.
        anchors = np.array([np.flatnonzero(known[:, j])[0] for j in range(table.n_candidates)
                            if known[:, j].any()], dtype=np.int64)
        if len(anchors) < table.n_candidates:
            raise InvalidInputError("every candidate needs at least one label before a router can be bootstrapped")
        cost = np.where(np.isnan(table.cost), np.nan_to_num(table.mean_cost(), nan=0.0), table.cost)
        table = RoutingDataset(table.queries, table.candidates, table.quality, cost, embeddings=F,
                               embedding_model="posterior-features")
        rng = np.random.default_rng([self.seed, int(known.sum())])
        predictions = []
        for b in range(self.n_members):
            rows = np.concatenate([rng.choice(labelled, size=len(labelled), replace=True), anchors])
            member = self._member(self.seed + b).fit(table.subset(rows))
            predictions.append(member.predict_quality(F))
        stack = np.stack(predictions)
        return stack.mean(axis=0), stack.std(axis=0, ddof=1)


__all__ = ["QualityPosterior", "NeighbourPosterior", "BootstrapPosterior"]
