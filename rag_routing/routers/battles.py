"""Pairwise "battles" between candidates, computed in bounded memory (shared by SW ranking and Eagle's Elo).

On a training query, for every pair of candidates with known outcomes, the better one wins (a tie is half a win
each, or ignored). The routers need, per new query, the (weighted) sums of these battles over its nearest
training queries. Materialising an ``(n_train, m, m)`` table of battles costs ``n·m²`` memory (7 GB at 100,000
rows and 50 candidates); here battles are recomputed from the ``(n_train, m)`` outcomes for one block of queries
at a time, so memory is ``O(n·m + block·k·m²)`` with a fixed block budget, and the work stays ``O(n·k·m²)``.
While the table is small (at most ``TABLE_BYTES``, e.g. 100,000 rows x 10 candidates) it is built, block by
block, and summed by one sparse product, which routes several times faster than recomputing.

Example:
    >>> import numpy as np
    >>> Y = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> wins, counts = neighbour_battles(Y, np.array([[0, 1]]), np.ones((1, 2)), "half")
    >>> wins[0].tolist(), counts[0].tolist()
    ([[0.0, 1.5], [0.5, 0.0]], [[0.0, 2.0], [2.0, 0.0]])
"""

from __future__ import annotations

import numpy as np

#: Elements of the ``(block, k, m, m)`` temporaries allowed at once (~ 16 MB of float64 each).
BLOCK_ELEMENTS = 2_000_000
#: Largest precomputed ``(n, 2·m²)`` battle table kept; beyond it battles are recomputed per neighbourhood.
TABLE_BYTES = 256 * 2**20


def battles(Y: np.ndarray, ties: str) -> tuple[np.ndarray, np.ndarray]:
    """``(score, mask)``, both ``(..., m, m)``: ``score[i, j]`` is 1 if candidate i beat j, 0.5 for a tie, 0 if it
    lost; ``mask`` marks pairs i != j with both outcomes known (and, with ``ties="ignore"``, different)."""
    known = ~np.isnan(Y)
    diff = Y[..., :, None] - Y[..., None, :]
    mask = known[..., :, None] & known[..., None, :]
    mask &= ~np.eye(Y.shape[-1], dtype=bool)
    tie = diff == 0
    if ties == "ignore":
        mask &= ~tie
    score = np.where(diff > 0, 1.0, np.where(tie, 0.5, 0.0))
    return np.where(mask, score, 0.0), mask


def battle_table(Y: np.ndarray, ties: str, max_bytes: int | None = None) -> np.ndarray | None:
    """``(n, 2·m²)`` float64 rows ``[scores | masks]`` of every training query, built block by block, or ``None``
    when it would exceed ``max_bytes`` (default ``TABLE_BYTES``)."""
    n, m = Y.shape
    if n * 2 * m * m * 8 > (TABLE_BYTES if max_bytes is None else max_bytes):
        return None
    table = np.empty((n, 2 * m * m))
    block = max(1, BLOCK_ELEMENTS // (m * m))
    for start in range(0, n, block):
        score, mask = battles(Y[start : start + block].astype(np.float64, copy=False), ties)
        rows = len(score)
        table[start : start + rows, : m * m] = score.reshape(rows, -1)
        table[start : start + rows, m * m :] = mask.reshape(rows, -1)
    return table


def neighbour_battles(Y: np.ndarray, idx: np.ndarray, weights: np.ndarray, ties: str,
                      table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(wins, counts)``, both ``(n_queries, m, m)``: ``wins[q] = sum_j weights[q, j] * score(Y[idx[q, j]])`` and
    ``counts[q]`` the same sum of the battle masks. Entries with ``idx < 0`` are ignored. With ``table`` (from
    :func:`battle_table`) the sums are one sparse product; without, battles are recomputed in blocks."""
    n, k = idx.shape
    m = Y.shape[1]
    if table is not None:
        from rag_routing.routers.neighbours import neighbour_sums

        played = neighbour_sums(weights, idx, table)
        return played[:, : m * m].reshape(n, m, m), played[:, m * m :].reshape(n, m, m)
    wins = np.zeros((n, m, m))
    counts = np.zeros((n, m, m))
    block = max(1, BLOCK_ELEMENTS // max(1, k * m * m))
    for start in range(0, n, block):
        rows = idx[start : start + block]
        valid = rows >= 0
        w = np.where(valid, weights[start : start + block], 0.0)
        score, mask = battles(Y[np.where(valid, rows, 0)].astype(np.float64, copy=False), ties)
        wins[start : start + block] = np.einsum("bk,bkij->bij", w, score)
        counts[start : start + block] = np.einsum("bk,bkij->bij", w, mask)
    return wins, counts


def battle_totals(Y: np.ndarray, ties: str) -> np.ndarray:
    """``(m, m)`` sum of every training query's battle scores (the unweighted global tally)."""
    m = Y.shape[1]
    total = np.zeros((m, m))
    block = max(1, BLOCK_ELEMENTS // max(1, m * m))
    for start in range(0, len(Y), block):
        total += battles(Y[start : start + block].astype(np.float64, copy=False), ties)[0].sum(0)
    return total


__all__ = ["battles", "battle_table", "neighbour_battles", "battle_totals", "BLOCK_ELEMENTS", "TABLE_BYTES"]
