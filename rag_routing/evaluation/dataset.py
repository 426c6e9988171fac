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

from collections.abc import Iterable, Sequence
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
        self.queries = _strings("queries", self.queries)
        self.candidates = _strings("candidates", self.candidates)
        self.quality = _float_matrix("quality", self.quality, np.float64)
        self.cost = _float_matrix("cost", self.cost, np.float64)
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
        if self.metadata is None or (isinstance(self.metadata, list) and not self.metadata):
            self.metadata = [{} for _ in range(n)]
        elif not isinstance(self.metadata, list) or not all(isinstance(row, dict) for row in self.metadata):
            raise InvalidInputError("metadata must be a list of dicts, one per query")
        elif len(self.metadata) != n:
            raise InvalidInputError(f"{len(self.metadata)} metadata rows for {n} queries")
        if self.embeddings is not None:
            self.embeddings = _float_matrix("embeddings", self.embeddings, np.float32)
            if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
                raise InvalidInputError(f"embeddings must be ({n}, d); got {self.embeddings.shape}")
        if self.responses is not None:
            rows = self.responses if isinstance(self.responses, list) else None
            if (rows is None or len(rows) != n or not all(isinstance(row, (list, tuple)) and len(row) == m
                                                           for row in rows)
                    or not all(a is None or isinstance(a, str) for row in rows for a in row)):
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
        if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer, np.floating)) \
                or not np.isfinite(test_size) or (test_size >= 1 and test_size != int(test_size)):
            raise InvalidInputError(f"test_size must be a fraction in (0, 1) or a whole number of rows, "
                                    f"got {test_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise InvalidInputError(f"seed must be an integer >= 0, got {seed!r}")
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


def _strings(what: str, values: Any) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise InvalidInputError(f"{what} must be a list of strings, got {type(values).__name__}")
    items = list(values)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInputError(f"{what}[{i}] is {type(item).__name__}; {what} must be strings")
    return [str(item) for item in items]


def _float_matrix(what: str, values: Any, dtype: type) -> np.ndarray:
    """``values`` as a float array; ragged rows, text or objects are an :class:`InvalidInputError`."""
    if values is None or isinstance(values, (str, bytes)):
        raise InvalidInputError(f"{what} must be a matrix of numbers, got {type(values).__name__}")
    try:
        array = np.asarray(values)
        if array.dtype.kind not in "biufO":  # text is not parsed; object arrays may hold None for unknown
            raise TypeError(f"dtype {array.dtype}")
        if array.dtype.kind == "O" and any(isinstance(v, (str, bytes, complex)) for v in array.ravel()):
            raise TypeError("text or complex values")
        return np.asarray(array, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged rows, strings, objects, complex numbers
        raise InvalidInputError(f"{what} must be a rectangular matrix of numbers ({exc})") from None


def _nanmean_columns(matrix: np.ndarray) -> np.ndarray:
    known = ~np.isnan(matrix)
    counts = known.sum(axis=0)
    sums = np.where(known, matrix, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


__all__ = ["RoutingDataset"]
