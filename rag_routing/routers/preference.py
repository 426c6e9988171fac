"""Preference-based routers (survey §4.1.3): pairwise "battles" between candidates on similar past queries.

Both routers turn the outcome matrix into battles: on every training query, for every pair of candidates with
known outcomes, the better one wins (equal outcomes are a tie, counted as half a win each, or ignored).

* :class:`SWRankingRouter` — similarity-weighted Bradley-Terry (RouteLLM's ``sw_ranking``, Ong et al. 2025),
  generalised from two to N candidates.
* :class:`EloRouter` — Eagle (Zhao et al. 2024): a global Elo over all battles plus a local Elo over the query's
  nearest neighbours, mixed as ``P * global + (1 - P) * local``.

Both output, per candidate, its expected score against the rest of the field (mean win probability against
each other candidate, ties counting half), a number in [0, 1] that the shared ``S - λ·C`` rule can use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import RouterInput
from rag_routing.routers.battles import BLOCK_ELEMENTS, battle_table, battle_totals, battles, neighbour_battles
from rag_routing.routers.neighbours import MemoryRouter
from rag_routing.validation import check_choice, check_float, check_int


def win_probability_against_field(P: np.ndarray) -> np.ndarray:
    """``(n, m)`` mean over j != i of ``P[:, i, j]`` (0.5 when there is a single candidate)."""
    m = P.shape[-1]
    if m == 1:
        return np.full(P.shape[:-1], 0.5)
    off = P * (1 - np.eye(m))
    return off.sum(-1) / (m - 1)


def bradley_terry(W: np.ndarray, prior: np.ndarray, alpha: float, n_iter: int = 25) -> np.ndarray:
    """Weighted Bradley-Terry strengths for many problems at once by damped Newton steps.

    ``W[q, i, j]``: weighted wins of i over j in problem q (half a win each for a tie). Maximises
    ``sum W_ij log sigmoid(b_i - b_j) - alpha/2 ||b - prior||^2`` for every q; the ridge towards ``prior``
    (``(q, m)`` or ``(m,)``) makes the problem strictly concave, so each step is one batched ``m x m`` solve.
    """
    W = np.asarray(W, dtype=np.float64)
    n, m, _ = W.shape
    prior = np.broadcast_to(prior, (n, m)).astype(np.float64)
    beta = prior.copy()
    N = W + np.swapaxes(W, 1, 2)
    eye = np.eye(m)
    for _ in range(n_iter):
        p = 1.0 / (1.0 + np.exp(beta[:, None, :] - beta[:, :, None]))  # p[q, i, j] = sigmoid(b_i - b_j)
        grad = (W - N * p).sum(2) - alpha * (beta - prior)
        h = N * p * (1 - p)
        A = eye * (h.sum(2) + alpha)[:, :, None] - h  # negative Hessian: weighted Laplacian + alpha I
        step = np.linalg.solve(A, grad[:, :, None])[:, :, 0]
        beta += np.clip(step, -2.0, 2.0)
        if np.abs(step).max(initial=0.0) < 1e-7:
            break
    return beta


class SWRankingRouter(MemoryRouter):
    """Similarity-weighted Bradley-Terry ranking (Ong et al. 2025, RouteLLM ``sw_ranking``), N candidates.

    Estimates, per query, Bradley-Terry strengths of all candidates from the battles of similar training queries
    (weights ``exp(gamma * (s - s_max))``, s = cosine similarity), and reports each one's win probability
    against the field.

    RouteLLM refits a logistic regression over all battles for every query (weights ``10 ** (s / s_max)``). Here
    only the ``k`` most similar training queries (FAISS) take part, so the weighted win counts of a query are one
    sparse product, and all queries' Bradley-Terry problems are solved together by batched Newton steps. A ridge
    ``alpha`` towards the global (unweighted) strengths keeps the fit finite when a neighbourhood is one-sided.

    Parameters:
        k: neighbouring training queries used per query.
        gamma: sharpness of the similarity weighting (RouteLLM's weighting is ``gamma = ln 10 / s_max``).
        alpha: ridge strength, in units of the most similar neighbour's weight.
        ties: ``"half"`` (a tie is half a win for each, as RouteLLM) or ``"ignore"``.
        n_iter: maximum Newton steps.
        ivf_threshold, nprobe, **kwargs: see :class:`~rag_routing.routers.neighbours.MemoryRouter`.

    Example:
        >>> import numpy as np
        >>> from rag_routing.embeddings import PrecomputedFeaturizer
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> E = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
        >>> ds = RoutingDataset(["a1", "a2", "b1", "b2"], ["A", "B"], [[1, 0], [1, 0], [0, 1], [0, 1]],
        ...                     np.ones((4, 2))).with_embeddings(E / np.linalg.norm(E, axis=1, keepdims=True), "toy")
        >>> router = SWRankingRouter(k=2, featurizer=PrecomputedFeaturizer("toy")).fit(ds)
        >>> router.route_indices(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)).tolist()
        [0, 1]
    """

    name = "sw_ranking"

    def __init__(self, *, k: int = 200, gamma: float = 5.0, alpha: float = 1.0, ties: str = "half",
                 n_iter: int = 25, **kwargs: Any):
        super().__init__(**kwargs)
        self.k = check_int("k", k)
        self.gamma = check_float("gamma", gamma)
        self.alpha = check_float("alpha", alpha, open_low=True)
        self.ties = check_choice("ties", ties, ("half", "ignore"))
        self.n_iter = check_int("n_iter", n_iter)

    def _prepare(self) -> None:
        # Global strengths: one Bradley-Terry fit over every battle, a weak ridge fixing the scale's origin. The
        # battles themselves are never stored (n x m x m): each query's neighbourhood recomputes its own.
        m = self.train_quality_.shape[1]
        self._battles = battle_table(self.train_quality_, self.ties)  # None when too large: recomputed per query
        totals = battle_totals(self.train_quality_, self.ties)
        self.global_strength_ = bradley_terry(totals[None], np.zeros(m), alpha=1.0, n_iter=50)[0]

    def strengths(self, X: RouterInput) -> np.ndarray:
        """``(n, m)`` per-query Bradley-Terry strengths (natural-log odds scale)."""
        self._check_fitted()
        return self._strengths(self.features(X))

    def _strengths(self, features: np.ndarray) -> np.ndarray:
        sims, idx = self.index_.search(features, self.k)
        weights = np.exp(self.gamma * (sims - sims[:, :1]))
        W, _ = neighbour_battles(self.train_quality_, idx, weights, self.ties, self._battles)
        return bradley_terry(W, self.global_strength_, self.alpha, self.n_iter)

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        beta = self._strengths(features)
        P = 1.0 / (1.0 + np.exp(beta[:, None, :] - beta[:, :, None]))
        return win_probability_against_field(P)


class EloRouter(MemoryRouter):
    """Eagle: global plus local Elo (Zhao, Jin and Mao 2024, "Eagle: Efficient training-free router for
    multi-LLM inference").

    Estimates each candidate's expected score against the field from ``P * global + (1 - P) * local`` Elo
    ratings: global from all training battles, local from the battles of the query's ``n_neighbors`` nearest
    training queries, starting from the global ratings. Training-free: :meth:`update` adds feedback.

    Vectorised across queries: the local pass runs ``ceil(n_neighbors / period)`` Elo rating periods, each
    updating every query's ratings at once from ``period`` neighbours' battles scored against the ratings at
    the period's start (``period=1`` is classic sequential Elo). Periods go from the farthest neighbours to the
    nearest, so the closest have the last word. The global pass is sequential Elo over the training queries in
    a seeded random order (``seed``); :meth:`update` continues it. Defaults (N=200, K=4) were tuned on RouteLLM
    MMLU training folds; the paper's N=20, K=32 are weaker there (and noisier: K=32 Elo drifts with order).

    Parameters:
        n_neighbors: N, neighbours in the local Elo.
        p_global: P, weight of the global ratings.
        k_factor: Elo K (rating points per unit surprise); ties: ``"half"`` or ``"ignore"``.
        period: neighbours per local rating period (1 = fully sequential; larger = fewer, batched steps).
        seed: order of the global pass.
        ivf_threshold, nprobe, **kwargs: see :class:`~rag_routing.routers.neighbours.MemoryRouter`.

    Example:
        >>> import numpy as np
        >>> from rag_routing.embeddings import PrecomputedFeaturizer
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> E = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
        >>> ds = RoutingDataset(["a1", "a2", "b1", "b2"], ["A", "B"], [[1, 0], [1, 0], [0, 1], [0, 1]],
        ...                     np.ones((4, 2))).with_embeddings(E / np.linalg.norm(E, axis=1, keepdims=True), "toy")
        >>> router = EloRouter(n_neighbors=2, featurizer=PrecomputedFeaturizer("toy")).fit(ds)
        >>> router.route_indices(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)).tolist()
        [0, 1]
    """

    name = "elo"
    #: Elo's rating scale: a 400-point gap means 10:1 odds.
    SCALE = 400.0
    INITIAL_RATING = 1000.0

    def __init__(self, *, n_neighbors: int = 200, p_global: float = 0.5, k_factor: float = 4.0,
                 period: int = 20, ties: str = "half", seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.n_neighbors = check_int("n_neighbors", n_neighbors)
        self.p_global = check_float("p_global", p_global, 0.0, 1.0)
        self.k_factor = check_float("k_factor", k_factor, open_low=True)
        self.period = check_int("period", period)
        self.ties = check_choice("ties", ties, ("half", "ignore"))
        self.seed = check_int("seed", seed, low=0)

    def _expected(self, R: np.ndarray) -> np.ndarray:
        """``E[..., i, j]``: expected score of i against j."""
        return 1.0 / (1.0 + 10.0 ** ((R[..., None, :] - R[..., :, None]) / self.SCALE))

    def _prepare(self) -> None:
        self._battles = battle_table(self.train_quality_, self.ties)  # None when too large: recomputed per query

    def _step(self, R: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """One rating period: ``scores``/``counts`` (n, m, m) are the summed scores and counts of the period's
        battles, all scored against the ratings ``R`` (n, m) at the start of the period."""
        return R + self.k_factor * (scores - counts * self._expected(R)).sum(-1)

    def _global_pass(self, R: np.ndarray, rows: np.ndarray) -> np.ndarray:
        Y = self.train_quality_.astype(np.float64)
        R = R[None].copy()
        block = max(1, BLOCK_ELEMENTS // Y.shape[1] ** 2)
        for start in range(0, len(rows), block):  # battles of a block of rows at a time: bounded memory
            scores, masks = battles(Y[rows[start : start + block]], self.ties)
            for score, mask in zip(scores, masks):  # sequential Elo, one training query at a time
                R = self._step(R, score[None], mask[None])
        return R[0]

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        super()._fit(features, dataset)
        order = np.random.default_rng(self.seed).permutation(len(self.train_quality_))
        self.global_elo_ = self._global_pass(np.full(len(self.candidates_), self.INITIAL_RATING), order)

    def _on_update(self, first_new_row: int) -> None:
        self._prepare()
        self.global_elo_ = self._global_pass(self.global_elo_, np.arange(first_new_row, len(self.train_quality_)))

    def ratings(self, X: RouterInput) -> np.ndarray:
        """``(n, m)`` combined Elo ratings ``P * global + (1 - P) * local``."""
        self._check_fitted()
        return self._ratings(self.features(X))

    def _ratings(self, features: np.ndarray) -> np.ndarray:
        _, idx = self.index_.search(features, self.n_neighbors)
        local = np.tile(self.global_elo_, (len(features), 1))
        for start in reversed(range(0, idx.shape[1], self.period)):  # farthest first: the nearest have the last word
            block = idx[:, start : start + self.period]
            scores, counts = neighbour_battles(self.train_quality_, block, np.ones(block.shape), self.ties,
                                               self._battles)
            local = self._step(local, scores, counts)
        return self.p_global * self.global_elo_ + (1 - self.p_global) * local

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        return win_probability_against_field(self._expected(self._ratings(features)))

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config, arrays = super()._get_state()
        return config, {**arrays, "global_elo": self.global_elo_}

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(config, arrays)
        self.global_elo_ = np.asarray(arrays["global_elo"], dtype=np.float64)


__all__ = ["SWRankingRouter", "EloRouter", "bradley_terry", "battles"]
