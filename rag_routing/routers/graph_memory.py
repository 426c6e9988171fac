"""The training graph a :class:`~rag_routing.routers.graph.GraphRouter` keeps: node features and observed
edges as plain numpy arrays, and :meth:`GraphMemory.build`, which turns them into the tensors of one forward
pass (:class:`~rag_routing.routers.graph_network.QueryGraph`); also the task nodes (:func:`assign_tasks`) and
nearest-neighbour search over the training queries (:func:`top_similar`).

Training queries are *context* nodes (their observed outcomes are edges to the candidates) or *target* nodes
(their outcomes are hidden: they are what the network predicts). New queries are always targets. Targets only
receive messages, so a prediction never depends on which other queries share its batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from rag_routing.errors import CorruptStateError, InvalidInputError

#: Metadata fields tried, in order, by ``task_key="auto"``.
TASK_KEYS = ("task", "eval_name", "subject", "category")
#: Added to a US $ cost before its logarithm, so that a free (local) model has a finite log-cost.
COST_EPS = 1e-8
#: Pseudo-outcomes that shrink a candidate's per-task mean quality towards its overall mean.
PRIOR_WEIGHT = 5.0
#: Rates are clipped to [RATE_CLIP, 1 - RATE_CLIP] before their logit.
RATE_CLIP = 0.02
#: Rows of queries compared with the memory at once when searching neighbours.
CHUNK = 1024


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def top_similar(queries: np.ndarray, memory: np.ndarray, k: int, *, exclude_self: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities ``(n, k)`` of each query's ``k`` most similar memory rows, best first
    (ties: lower index first); ``exclude_self`` skips row ``i`` for query ``i`` (queries == memory)."""
    k = min(k, len(memory) - int(exclude_self))
    n = len(queries)
    if k <= 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=np.float32)
    index, sims = np.empty((n, k), dtype=np.int64), np.empty((n, k), dtype=np.float32)
    for start in range(0, n, CHUNK):
        S = queries[start:start + CHUNK] @ memory.T
        if exclude_self:
            rows = np.arange(len(S))
            S[rows, rows + start] = -np.inf
        top = np.argpartition(-S, k - 1, axis=1)[:, :k] if k < S.shape[1] else np.tile(np.arange(k), (len(S), 1))
        order = np.lexsort((top, -np.take_along_axis(S, top, axis=1)), axis=1)
        index[start:start + CHUNK] = np.take_along_axis(top, order, axis=1)
        sims[start:start + CHUNK] = np.take_along_axis(S, index[start:start + CHUNK], axis=1)
    return index, sims


def task_field(metadata: Sequence[Mapping[str, Any]], task_key: str | None) -> str | None:
    """The metadata field that names each query's task: ``task_key``, or with ``"auto"`` the first of
    :data:`TASK_KEYS` that every row has as text, with 2 or more values and at most one per two rows."""
    if task_key is None:
        return None
    for key in TASK_KEYS if task_key == "auto" else (task_key,):
        values = [m.get(key) for m in metadata]
        if all(isinstance(v, str) and v for v in values) and 2 <= len(set(values)) <= len(values) / 2:
            return key
    if task_key != "auto":
        raise InvalidInputError(f"task_key {task_key!r} must be a text field of every training query's metadata "
                                "with at least 2 distinct values; use 'auto' or None to cluster")
    return None


def assign_tasks(features: np.ndarray, metadata: Sequence[Mapping[str, Any]], task_key: str | None, n_tasks: int,
                 seed: int) -> tuple[np.ndarray, list[str], str | None]:
    """(task of each query, task names, the metadata field used or ``None``): the values of the task field, else
    at most ``n_tasks`` k-means clusters of the features."""
    key = task_field(metadata, task_key)
    if key is not None:
        names = sorted({str(m[key]) for m in metadata})
        lookup = {n: i for i, n in enumerate(names)}
        return np.array([lookup[str(m[key])] for m in metadata], dtype=np.int64), names, key
    from sklearn.cluster import KMeans

    k = min(n_tasks, len(np.unique(features.round(6), axis=0)))
    if k < 2:
        return np.zeros(len(features), dtype=np.int64), ["cluster-0"], None
    labels = KMeans(n_clusters=k, random_state=seed, n_init=3).fit_predict(features).astype(np.int64)
    used = np.unique(labels)
    return np.searchsorted(used, labels), [f"cluster-{i}" for i in range(len(used))], None


def neighbour_edges(neighbours: np.ndarray, sims: np.ndarray, position: np.ndarray, k: int, offset: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source node, destination node, similarity) of the first ``k`` neighbours of each row that are context
    nodes (``position[row] >= 0``); row ``i`` is query node ``offset + i``."""
    ok = neighbours >= 0
    ok[ok] = position[neighbours[ok]] >= 0
    keep = ok & (np.cumsum(ok, axis=1) <= k)
    r, c = np.nonzero(keep)
    return position[neighbours[r, c]], r + offset, sims[r, c]


@dataclass
class GraphMemory:
    """Training queries, tasks and candidates of a fitted GraphRouter (arrays aligned with its candidates)."""

    features: np.ndarray          # (n, d) L2-normalised query features
    quality: np.ndarray           # (n, m) quality scaled to [0, 1]; NaN = unknown (no edge)
    log_cost: np.ndarray          # (n, m) z-scored log US $ per call (a candidate's mean where unknown)
    task: np.ndarray              # (n,) task node of each query
    neighbours: np.ndarray        # (n, K) most similar other training queries, best first
    neighbour_sims: np.ndarray    # (n, K) their cosine similarities
    task_centroids: np.ndarray    # (T, d) mean features of each task's queries
    candidate_text: np.ndarray    # (m, d') embedded candidate descriptions
    candidate_log_cost: np.ndarray  # (m,) z-scored log mean US $ per call

    def candidate_nodes(self) -> np.ndarray:
        return np.hstack([self.candidate_text, self.candidate_log_cost[:, None]]).astype(np.float32)

    def build(self, context: np.ndarray, targets: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], k: int,
              hide: np.ndarray | None = None) -> Any:
        """The :class:`QueryGraph` of ``context`` training rows (outcomes visible) followed by target query
        nodes ``targets = (features, task, neighbour rows, neighbour similarities)``. ``hide``: an ``(len(context), m)`` mask
        of observed outcomes to leave out (a candidate "just added" with few or no outcomes)."""
        import torch

        from rag_routing.routers.graph_network import QueryGraph

        x, tasks, nbr, nbr_sims = targets
        n_ctx, n_tgt = len(context), len(x)
        n_tasks, m = len(self.task_centroids), len(self.candidate_text)
        position = np.full(len(self.features), -1, dtype=np.int64)
        position[context] = np.arange(n_ctx)
        task_of = np.concatenate([self.task[context], tasks]).astype(np.int64)
        Q = self.quality[context]
        seen = ~np.isnan(Q)
        if hide is not None:
            seen &= ~hide
        qi, mi = np.nonzero(seen)
        outcome = np.stack([Q[qi, mi], self.log_cost[context][qi, mi]], axis=1)
        member = np.zeros((n_ctx, n_tasks), dtype=np.float32)
        member[np.arange(n_ctx), task_of[:n_ctx]] = 1.0
        counts, sums = member.T @ seen, member.T @ np.where(seen, Q, 0.0)
        means = sums / np.maximum(counts, 1.0)
        ti, tm = np.divmod(np.arange(n_tasks * m), m)
        on_task = np.stack([counts[ti, tm] > 0, means[ti, tm], self.candidate_log_cost[tm]], axis=1)
        offset = self._task_rates(counts, sums)[tasks]
        s1, d1, w1 = neighbour_edges(self.neighbours[context], self.neighbour_sims[context], position, k, 0)
        s2, d2, w2 = neighbour_edges(nbr, nbr_sims, position, k, n_ctx)

        def t(a: np.ndarray, dtype: Any = torch.float32) -> Any:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)

        def edge(src: np.ndarray, dst: np.ndarray, feat: np.ndarray) -> tuple[Any, Any, Any]:
            return t(src, torch.long), t(dst, torch.long), t(np.asarray(feat, dtype=np.float32).reshape(len(src), -1))

        ones = np.ones(n_ctx + n_tgt, dtype=np.float32)
        nodes = {"query": t(np.vstack([self.features[context], x])), "task": t(self.task_centroids),
                 "candidate": t(self.candidate_nodes())}
        edges = {
            "query_task": edge(np.arange(n_ctx), task_of[:n_ctx], ones[:n_ctx]),
            "task_query": edge(task_of, np.arange(n_ctx + n_tgt), ones),
            "query_candidate": edge(qi, mi, outcome),
            "candidate_query": edge(mi, qi, outcome),
            "candidate_task": edge(tm, ti, on_task),
            "task_candidate": edge(ti, tm, on_task),
            "query_query": edge(np.concatenate([s1, s2]), np.concatenate([d1, d2]), np.concatenate([w1, w2])),
        }
        return QueryGraph(nodes, edges, t(np.log(offset / (1.0 - offset))))

    @staticmethod
    def _task_rates(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
        """``(T, m)`` each candidate's mean quality per task, shrunk towards its overall mean (``PRIOR_WEIGHT``
        pseudo-outcomes); a candidate without any outcome gets the mean of the others. Clipped to (0, 1)."""
        seen = counts.sum(axis=0) > 0
        overall = np.where(seen, sums.sum(axis=0) / np.maximum(counts.sum(axis=0), 1.0), 0.0)
        if seen.any():
            overall[~seen] = overall[seen].mean()
        else:
            overall[:] = 0.5
        rates = (sums + PRIOR_WEIGHT * overall[None, :]) / (counts + PRIOR_WEIGHT)
        return np.clip(rates, RATE_CLIP, 1.0 - RATE_CLIP)

    # ------------------------------------------------------------------ candidates
    def add_candidate(self, text_vector: np.ndarray, log_cost_z: float) -> None:
        n = len(self.features)
        self.quality = np.hstack([self.quality, np.full((n, 1), np.nan, dtype=np.float32)])
        self.log_cost = np.hstack([self.log_cost, np.full((n, 1), log_cost_z, dtype=np.float32)])
        self.candidate_text = np.vstack([self.candidate_text, text_vector.reshape(1, -1)]).astype(np.float32)
        self.candidate_log_cost = np.append(self.candidate_log_cost, np.float32(log_cost_z)).astype(np.float32)

    def add_queries(self, features: np.ndarray, task: np.ndarray, quality: np.ndarray, log_cost: np.ndarray) -> None:
        """Append context queries (e.g. a new candidate's anchors) and recompute every neighbour list."""
        self.features = np.vstack([self.features, features]).astype(np.float32)
        self.task = np.concatenate([self.task, task]).astype(np.int64)
        self.quality = np.vstack([self.quality, quality]).astype(np.float32)
        self.log_cost = np.vstack([self.log_cost, log_cost]).astype(np.float32)
        self._reindex()

    def drop_candidate(self, j: int) -> None:
        """Forget candidate ``j``, and the queries left without any outcome (e.g. its anchors)."""
        keep = np.delete(np.arange(len(self.candidate_text)), j)
        self.quality, self.log_cost = self.quality[:, keep], self.log_cost[:, keep]
        self.candidate_text, self.candidate_log_cost = self.candidate_text[keep], self.candidate_log_cost[keep]
        known = ~np.isnan(self.quality).all(axis=1)
        if not known.all():
            self.features, self.task = self.features[known], self.task[known]
            self.quality, self.log_cost = self.quality[known], self.log_cost[known]
            self._reindex()

    def _reindex(self) -> None:
        self.neighbours, self.neighbour_sims = top_similar(self.features, self.features, self.neighbours.shape[1],
                                                           exclude_self=True)

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_candidates: int) -> GraphMemory:
        try:
            memory = cls(**{f.name: np.asarray(arrays[f.name]) for f in fields(cls)})
        except KeyError as exc:
            raise CorruptStateError(f"saved graph lacks the array {exc}") from exc
        n, m = memory.quality.shape if memory.quality.ndim == 2 else (-1, -1)
        ok = (m == n_candidates and memory.log_cost.shape == (n, m) and memory.features.shape[0] == n
              and memory.task.shape == (n,) and memory.neighbours.shape[0] == n
              and memory.neighbours.shape == memory.neighbour_sims.shape
              and len(memory.candidate_text) == m and memory.candidate_log_cost.shape == (m,)
              and (n == 0 or (0 <= memory.task.min() and memory.task.max() < len(memory.task_centroids)))
              and (memory.neighbours.size == 0 or memory.neighbours.max() < n))
        if not ok:
            raise CorruptStateError(f"saved graph arrays do not fit together or with {n_candidates} candidates")
        return memory


__all__ = ["GraphMemory", "TASK_KEYS", "assign_tasks", "task_field", "top_similar", "neighbour_edges",
           "normalise_rows", "COST_EPS"]
