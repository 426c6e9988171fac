"""Nearest-neighbour search over training queries, shared by the memory-based routers (kNN, SW ranking, Eagle).

:class:`NeighbourIndex` wraps FAISS: an exact ``IndexFlatIP`` over L2-normalised rows (inner product = cosine
similarity), or an ``IndexIVFFlat`` once the memory holds ``ivf_threshold`` rows or more (approximate; ``nprobe``
lists are visited; ``sqrt(n)`` lists trained on a sample, so building stays linear in ``n``). Queries are searched as one batch, so FAISS runs one BLAS matrix product and a C++ top-k
selection instead of a Python loop. FAISS is imported on first use, never when rag_routing is imported.

:class:`MemoryRouter` is the base of routers that keep the training queries' vectors and outcome matrix: it
validates the shared hyper-parameters, saves the vectors and outcomes as plain arrays (the index is rebuilt on
load, never pickled), and supports training-free ``update`` with new labelled queries.

Example:
    >>> import numpy as np
    >>> vectors = np.eye(3, dtype=np.float32)
    >>> sims, idx = NeighbourIndex(vectors).search(np.array([[0.0, 1.0, 0.0]], dtype=np.float32), k=2)
    >>> int(idx[0, 0]), float(sims[0, 0])
    (1, 1.0)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rag_routing.errors import CorruptStateError, InvalidInputError, require
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput
from rag_routing.validation import check_choice, check_float, check_int


#: k-means training rows per IVF list (FAISS's own default samples up to 256).
TRAIN_PER_LIST = 64


class NeighbourIndex:
    """Top-k inner-product search over L2-normalised float32 rows (see module docstring)."""

    def __init__(self, vectors: np.ndarray, *, ivf_threshold: int | None = 20_000, nprobe: int = 16, seed: int = 0):
        faiss = require("faiss", "retrieval")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, self.dim = vectors.shape
        self.exact = ivf_threshold is None or n < ivf_threshold
        if self.exact:
            self._index = faiss.IndexFlatIP(self.dim)
        else:
            # sqrt(n) lists, k-means (10 rounds) on a seeded sample of TRAIN_PER_LIST rows per list: training
            # costs O(TRAIN_PER_LIST * nlist^2 * d) = O(n * d), linear in the memory (4 sqrt(n) lists trained on
            # every row cost O(n^1.5 * d): 63 s at 100,000 rows).
            nlist = max(1, min(int(math.sqrt(n)), n // 39))  # FAISS wants >= 39 training points per list
            self._index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self._index.cp.seed = seed
            self._index.cp.niter = 10
            self._index.cp.max_points_per_centroid = TRAIN_PER_LIST
            sample = np.random.default_rng(seed).choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False)
            self._index.train(vectors[np.sort(sample)])
            self._index.nprobe = min(nprobe, nlist)
        self._index.add(vectors)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Append rows (IVF lists keep the centroids they were trained with)."""
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(similarities, indices)``, both ``(n_queries, min(k, len))``, best first; index -1 = no neighbour
        (possible with IVF when the probed lists hold fewer than k rows)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InvalidInputError(
                f"query features have shape {queries.shape}; this router was fitted on {self.dim}-d features "
                "(use the router's own featurizer)"
            )
        k = min(k, len(self))
        sims, idx = self._index.search(queries, k)
        return sims, idx.astype(np.int64, copy=False)


def neighbour_sums(weights: np.ndarray, idx: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``out[q] = sum_j weights[q, j] * table[idx[q, j]]`` for every query at once.

    Built as one sparse ``(n_queries, n_train)`` matrix times ``table``, so memory stays ``O(n·k + n·width)``
    rather than the ``O(n·k·width)`` of gathering ``table[idx]`` (small batches, where the sparse matrix's set-up
    would dominate, gather instead). Entries with ``idx < 0`` are ignored.
    """
    n, k = idx.shape
    valid = idx >= 0
    w = np.where(valid, weights, 0.0).astype(np.float64, copy=False)
    flat = table.reshape(table.shape[0], -1)
    if n * k * flat.shape[1] <= 250_000:  # small batches (one decision): a dense gather has less overhead
        out = np.einsum("nk,nkw->nw", w, flat[np.where(valid, idx, 0)])
        return out.reshape((n, *table.shape[1:]))
    from scipy import sparse

    matrix = sparse.csr_matrix(
        (w.ravel(), np.where(valid, idx, 0).ravel(), np.arange(0, n * k + 1, k)), shape=(n, table.shape[0])
    )
    return np.asarray(matrix @ flat).reshape((n, *table.shape[1:]))


class MemoryRouter(Router):
    """Base of routers that keep the training vectors and outcomes and search them (see module docstring).

    Parameters:
        ivf_threshold: memory size from which an approximate IVF index replaces the exact one (``None``: always
            exact).
        nprobe: IVF lists visited per query.
        **kwargs: ``lam``, ``budget``, ``fallback``, ``featurizer`` (see :class:`Router`).
    """

    def __init__(self, *, ivf_threshold: int | None = 20_000, nprobe: int = 16, **kwargs: Any):
        super().__init__(**kwargs)
        if ivf_threshold is not None:
            check_int("ivf_threshold", ivf_threshold)
        check_int("nprobe", nprobe)
        self.ivf_threshold = ivf_threshold
        self.nprobe = nprobe

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        quality = np.asarray(dataset.quality, dtype=np.float32)
        unknown = [c for c, col in zip(dataset.candidates, quality.T) if np.isnan(col).all()]
        if unknown:
            raise InvalidInputError(f"candidates {unknown} have no known outcome; drop them or add outcomes")
        self._remember(np.asarray(features, dtype=np.float32), quality)

    def _remember(self, vectors: np.ndarray, quality: np.ndarray) -> None:
        self.train_features_ = np.ascontiguousarray(vectors, dtype=np.float32)
        self.train_quality_ = np.asarray(quality, dtype=np.float32)
        self.index_ = self._build_index()
        self.global_quality_ = np.nanmean(self.train_quality_, axis=0)
        self._prepare()

    def _build_index(self) -> NeighbourIndex:
        return NeighbourIndex(self.train_features_, ivf_threshold=self.ivf_threshold, nprobe=self.nprobe,
                              seed=getattr(self, "seed", 0))

    def _prepare(self) -> None:
        """Derived tables (not saved) computed from ``train_features_``/``train_quality_``."""

    def update(self, X: RouterInput, quality: np.ndarray) -> MemoryRouter:
        """Add labelled queries without refitting: ``quality`` is ``(n, n_candidates)`` (NaN = unknown)."""
        self._check_fitted()
        F = self.features(X)
        Q = np.asarray(quality, dtype=np.float32)
        if Q.ndim == 1:
            Q = Q[None, :]
        if Q.shape != (F.shape[0], len(self.candidates_)):
            raise InvalidInputError(f"quality has shape {Q.shape}; expected {(F.shape[0], len(self.candidates_))}")
        if np.isinf(Q).any():
            raise InvalidInputError("quality has infinite values; use NaN for unknown outcomes")
        if F.shape[1] != self.train_features_.shape[1]:
            raise InvalidInputError(f"features are {F.shape[1]}-d; the router holds {self.train_features_.shape[1]}-d")
        old = len(self.train_quality_)
        self.train_features_ = np.vstack([self.train_features_, F])
        self.train_quality_ = np.vstack([self.train_quality_, Q])
        if self.index_.exact and self.ivf_threshold is not None and len(self.train_features_) >= self.ivf_threshold:
            self.index_ = self._build_index()  # crossed the threshold: switch to IVF
        else:
            self.index_.add(F)
        self.global_quality_ = np.nanmean(self.train_quality_, axis=0)
        self._on_update(old)
        return self

    def _on_update(self, first_new_row: int) -> None:
        self._prepare()

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"train_features": self.train_features_, "train_quality": self.train_quality_}

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        vectors, quality = arrays["train_features"], arrays["train_quality"]
        if vectors.ndim != 2 or quality.shape != (vectors.shape[0], len(self.candidates_)):
            raise CorruptStateError(f"saved memory has vectors {vectors.shape} and outcomes {quality.shape}")
        self._remember(vectors, quality)


__all__ = ["NeighbourIndex", "MemoryRouter", "neighbour_sums", "check_int", "check_float", "check_choice"]
