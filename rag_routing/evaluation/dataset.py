"""`RoutingDataset`: per-query outcomes of several candidates, the input of every learned router.

A dataset holds ``n`` queries and ``m`` candidates with

* ``quality``: ``(n, m)`` float matrix, higher is better (1/0 for right/wrong); **NaN means unknown**, never a
  silent zero;
* ``cost``: ``(n, m)`` US $ per call (NaN allowed where unknown);
* optional ``embeddings`` ``(n, d)`` computed by the featurizer named ``embedding_model``;
* optional ``responses``: each candidate's answer text per query (for post-generation judges and cascades);
* per-query ``metadata`` (task, subject, ...).

Example:
    >>> import numpy as np
    >>> ds = RoutingDataset(
    ...     queries=["2+2?", "prove Fermat"], candidates=["small", "large"],
    ...     quality=np.array([[1.0, 1.0], [0.0, 1.0]]), cost=np.array([[0.001, 0.01], [0.001, 0.01]]))
    >>> train, test = ds.train_test_split(test_size=0.5, seed=0)
    >>> len(train), len(test)
    (1, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError, UnknownCandidateError


@dataclass
class RoutingDataset:
    """Queries x candidates outcome table (see module docstring)."""

    queries: list[str]
    candidates: list[str]
    quality: np.ndarray
    cost: np.ndarray
    metadata: list[dict[str, Any]] = field(default_factory=list)
    name: str = "dataset"
    cost_source: str = "file"
    embeddings: np.ndarray | None = None
    embedding_model: str | None = None
    responses: list[list[str | None]] | None = None

    def __post_init__(self) -> None:
        self.queries = [str(q) for q in self.queries]
        self.candidates = [str(c) for c in self.candidates]
        self.quality = np.asarray(self.quality, dtype=np.float64)
        self.cost = np.asarray(self.cost, dtype=np.float64)
        n, m = len(self.queries), len(self.candidates)
        if m == 0:
            raise InvalidInputError("a routing dataset needs at least one candidate")
        if len(set(self.candidates)) != m:
            raise InvalidInputError(f"candidate names must be unique: {self.candidates}")
        for what, matrix in (("quality", self.quality), ("cost", self.cost)):
            if matrix.shape != (n, m):
                raise InvalidInputError(f"{what} has shape {matrix.shape}; expected ({n}, {m}) for {n} queries")
            if np.isinf(matrix).any():
                raise InvalidInputError(f"{what} has infinite values; use NaN for unknown outcomes")
        if (self.cost[~np.isnan(self.cost)] < 0).any():
            raise InvalidInputError("cost must be >= 0 US $")
        if not self.metadata:
            self.metadata = [{} for _ in range(n)]
        elif len(self.metadata) != n:
            raise InvalidInputError(f"{len(self.metadata)} metadata rows for {n} queries")
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
            if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
                raise InvalidInputError(f"embeddings must be ({n}, d); got {self.embeddings.shape}")
        if self.responses is not None:
            if len(self.responses) != n or any(len(row) != m for row in self.responses):
                raise InvalidInputError(f"responses must be {n} rows of {m} answers (None where unknown)")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.queries)

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    def candidate_index(self, name: str) -> int:
        try:
            return self.candidates.index(name)
        except ValueError:
            raise UnknownCandidateError(f"unknown candidate {name!r}; dataset has {self.candidates}") from None

    def subset(self, indices: Sequence[int] | np.ndarray) -> RoutingDataset:
        """Rows ``indices`` (an index array or a boolean mask) as a new dataset."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise InvalidInputError(f"boolean mask must have length {len(self)}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise InvalidInputError(f"row indices out of range for {len(self)} queries")
        return replace(
            self,
            queries=[self.queries[i] for i in idx],
            quality=self.quality[idx],
            cost=self.cost[idx],
            metadata=[self.metadata[i] for i in idx],
            embeddings=None if self.embeddings is None else self.embeddings[idx],
            responses=None if self.responses is None else [self.responses[i] for i in idx],
        )

    def select_candidates(self, names: Sequence[str]) -> RoutingDataset:
        """The same queries restricted to (and ordered as) ``names``."""
        cols = [self.candidate_index(n) for n in names]
        responses = None if self.responses is None else [[row[c] for c in cols] for row in self.responses]
        return replace(self, candidates=list(names), quality=self.quality[:, cols], cost=self.cost[:, cols],
                       responses=responses)

    def train_test_split(self, test_size: float = 0.5, seed: int = 0) -> tuple[RoutingDataset, RoutingDataset]:
        """Random split; ``test_size`` is a fraction in (0, 1) or a number of rows."""
        n = len(self)
        n_test = int(round(test_size * n)) if 0 < test_size < 1 else int(test_size)
        if not 0 < n_test < n:
            raise InvalidInputError(f"test_size={test_size} leaves an empty train or test set for {n} queries")
        order = np.random.default_rng(seed).permutation(n)
        return self.subset(np.sort(order[n_test:])), self.subset(np.sort(order[:n_test]))

    def with_embeddings(self, embeddings: np.ndarray, model: str) -> RoutingDataset:
        """A copy carrying ``embeddings`` computed by the featurizer called ``model``."""
        return replace(self, embeddings=np.asarray(embeddings, dtype=np.float32), embedding_model=model)

    def concat(self, other: RoutingDataset, name: str | None = None) -> RoutingDataset:
        """Rows of ``self`` then ``other`` (same candidates, in ``self``'s order)."""
        other = other.select_candidates(self.candidates)
        both_embedded = (
            self.embeddings is not None
            and other.embeddings is not None
            and self.embedding_model == other.embedding_model
        )
        return RoutingDataset(
            queries=self.queries + other.queries,
            candidates=list(self.candidates),
            quality=np.vstack([self.quality, other.quality]),
            cost=np.vstack([self.cost, other.cost]),
            metadata=self.metadata + other.metadata,
            name=name or f"{self.name}+{other.name}",
            cost_source=self.cost_source if self.cost_source == other.cost_source else "mixed",
            embeddings=np.vstack([self.embeddings, other.embeddings]) if both_embedded else None,
            embedding_model=self.embedding_model if both_embedded else None,
            responses=(self.responses + other.responses)
            if self.responses is not None and other.responses is not None
            else None,
        )

    # ------------------------------------------------------------------ summaries
    def mean_quality(self) -> np.ndarray:
        """Per-candidate mean quality over known outcomes."""
        return _nanmean_columns(self.quality)

    def mean_cost(self) -> np.ndarray:
        """Per-candidate mean cost (US $) over known costs."""
        return _nanmean_columns(self.cost)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_queries": len(self),
            "candidates": list(self.candidates),
            "mean_quality": dict(zip(self.candidates, self.mean_quality().round(4).tolist())),
            "mean_cost_usd": dict(zip(self.candidates, self.mean_cost().tolist())),
            "missing_quality": int(np.isnan(self.quality).sum()),
            "cost_source": self.cost_source,
        }


def _nanmean_columns(matrix: np.ndarray) -> np.ndarray:
    known = ~np.isnan(matrix)
    counts = known.sum(axis=0)
    sums = np.where(known, matrix, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


__all__ = ["RoutingDataset"]
