"""Contextual bandits over query embeddings (survey §4.3.2, MetaLLM): which candidate is best *for this query*.

* :class:`LinUCBRouter` — per-candidate ridge regression of the target on the query's context vector, with an
  upper-confidence bonus (Li et al. 2010, "A contextual-bandit approach to personalized news article
  recommendation"); MetaLLM (Nguyen et al. 2024) routes LLMs with this kind of linear contextual bandit.
* :class:`ThompsonRouter` — the same Bayesian linear model, exploring by posterior sampling (Agrawal and Goyal
  2013, "Thompson sampling for contextual bandits with linear payoffs").

Context vectors: the router's featurizer output, optionally reduced to ``n_components`` dimensions by PCA
(fitted on the ``fit``/``start`` queries) or a fixed seeded random projection, L2-normalised, plus a constant
1 (bias). Each candidate keeps ``A^-1`` (``(d, d)``), ``b`` and ``θ = A^-1 b``; an update is a
Sherman-Morrison rank-one change of ``A^-1`` (O(d²)), and scoring every candidate is one batched product.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.routers.bandits.base import BanditRouter, argmax_utility
from rag_routing.routers.bandits.store import Arrays
from rag_routing.validation import check_choice, check_float, check_int

#: Rows used to fit the PCA projection (a seeded sample when there are more).
PCA_MAX_ROWS = 20_000


class LinearBandit(BanditRouter):
    """Shared state and context features of :class:`LinUCBRouter` and :class:`ThompsonRouter`.

    Parameters:
        regularization: ridge prior ``A = regularization·I`` (larger: slower, steadier learning).
        projection: ``"pca"``, ``"random"`` or ``None`` (use the features as they are).
        n_components: target dimension of the projection (the bias adds one). PCA needs more fitting queries
            than this; with fewer, the seeded random projection is used.
        **kwargs: see :class:`~rag_routing.routers.bandits.base.BanditRouter`.
    """

    def __init__(self, *, regularization: float = 1.0, projection: str | None = "pca", n_components: int = 64,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.regularization = check_float("regularization", regularization, open_low=True)
        self.projection = None if projection is None else check_choice("projection", projection, ("pca", "random"))
        self.n_components = check_int("n_components", n_components)

    # ------------------------------------------------------------------ context
    def _setup_context(self, features: np.ndarray | None) -> None:
        F = np.asarray(features, dtype=np.float64)
        n, D = F.shape
        k = min(self.n_components, D)
        self.context_mean_ = np.zeros(D)
        if self.projection is None or k == D:
            self.context_components_ = np.eye(D)
        elif self.projection == "pca" and n > k:
            rng = np.random.default_rng(self.seed)
            rows = F if n <= PCA_MAX_ROWS else F[rng.choice(n, PCA_MAX_ROWS, replace=False)]
            self.context_mean_ = rows.mean(axis=0)
            self.context_components_ = np.linalg.svd(rows - self.context_mean_, full_matrices=False)[2][:k]
        else:
            self.context_components_ = np.random.default_rng(self.seed).standard_normal((k, D)) / np.sqrt(k)

    @property
    def dim_(self) -> int:
        """Length of a context vector (projected dimensions + bias)."""
        return int(self.context_components_.shape[0]) + 1

    def _context(self, features: np.ndarray | None) -> np.ndarray:
        F = np.asarray(features, dtype=np.float64)
        if F.shape[1] != self.context_components_.shape[1]:
            raise InvalidInputError(f"features are {F.shape[1]}-d; this router was fitted on "
                                    f"{self.context_components_.shape[1]}-d features")
        Z = (F - self.context_mean_) @ self.context_components_.T
        Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
        return np.hstack([Z, np.ones((len(Z), 1))])

    def _context_state(self) -> tuple[dict[str, Any], Arrays]:
        return {}, {"mean": self.context_mean_, "components": self.context_components_}

    def _set_context_state(self, config: dict[str, Any], arrays: Arrays) -> None:
        try:
            self.context_mean_ = np.asarray(arrays["mean"], dtype=np.float64)
            self.context_components_ = np.asarray(arrays["components"], dtype=np.float64)
        except KeyError as exc:
            raise CorruptStateError(f"saved bandit lacks its context projection ({exc})") from exc
        if self.context_components_.ndim != 2 or self.context_components_.shape[1] != self.context_mean_.shape[0]:
            raise CorruptStateError("saved context projection has inconsistent shapes")

    # ------------------------------------------------------------------ ridge state
    def _init_state(self, n_arms: int) -> Arrays:
        d = self.dim_
        return {"A_inv": np.tile(np.eye(d) / self.regularization, (n_arms, 1, 1)), "b": np.zeros((n_arms, d)),
                "theta": np.zeros((n_arms, d)), "counts": np.zeros(n_arms)}

    def _warm(self, state: Arrays, X: np.ndarray | None, targets: np.ndarray) -> None:
        assert X is not None
        eye = self.regularization * np.eye(self.dim_)
        for arm in range(targets.shape[1]):
            known = ~np.isnan(targets[:, arm])
            Xk, y = X[known], targets[known, arm]
            A_inv = np.linalg.inv(eye + Xk.T @ Xk)
            state["A_inv"][arm] = (A_inv + A_inv.T) / 2
            state["b"][arm] = Xk.T @ y
            state["theta"][arm] = state["A_inv"][arm] @ state["b"][arm]
            state["counts"][arm] = known.sum()

    def _estimate(self, state: Arrays, X: np.ndarray | None, n: int) -> np.ndarray:
        return X @ state["theta"].T

    def _width(self, state: Arrays, X: np.ndarray) -> np.ndarray:
        """``sqrt(x^T A_a^-1 x)`` for every row and arm: the posterior standard deviation up to scale."""
        quad = (np.matmul(X[None, :, :], state["A_inv"]) * X[None, :, :]).sum(axis=2).T  # (n, m)
        return np.sqrt(np.maximum(quad, 0.0))

    def _learn_one(self, state: Arrays, arm: int, x: np.ndarray | None, target: float, reward: float) -> None:
        A_inv = state["A_inv"][arm]
        v = A_inv @ x
        A_inv -= np.outer(v, v) / (1.0 + x @ v)
        state["b"][arm] += target * x
        state["theta"][arm] = A_inv @ state["b"][arm]
        state["counts"][arm] += 1

    @property
    def theta_(self) -> np.ndarray:
        """``(n_candidates, d)`` current ridge coefficients."""
        self._check_fitted()
        with self._lock:
            return self._current_state()["theta"].copy()


class LinUCBRouter(LinearBandit):
    """LinUCB with disjoint linear models (Li et al. 2010), the contextual bandit of MetaLLM (Nguyen et al.
    2024).

    Routes by the shared rule on the optimistic estimate ``θ_a·x + alpha·sqrt(x^T A_a^-1 x)``: a candidate
    little tried on queries like this one gets a bonus. Deterministic given the history (propensity 1).

    Parameters:
        alpha: width of the confidence bonus (0 = greedy ridge regression).
        **kwargs: see :class:`LinearBandit`.

    Example:
        >>> import numpy as np
        >>> from rag_routing.embeddings import PrecomputedFeaturizer
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> E = np.array([[1.0, 0.0], [0.0, 1.0]] * 50, dtype=np.float32)   # two kinds of query
        >>> ds = RoutingDataset([f"q{i}" for i in range(100)], ["a", "b"], np.full((100, 2), np.nan),
        ...                     np.full((100, 2), 0.01)).with_embeddings(E, "toy")
        >>> router = LinUCBRouter(featurizer=PrecomputedFeaturizer("toy")).start(["a", "b"], [0.01, 0.01], ds)
        >>> for x in E:                      # "a" is right on the first kind of query, "b" on the second
        ...     d = router.route(x[None, :])[0]
        ...     _ = router.update(d.decision_id, quality=float(d.index == int(x[1])))
        >>> router.route_indices(np.eye(2, dtype=np.float32)).tolist()
        [0, 1]
    """

    name = "linucb"

    def __init__(self, *, alpha: float = 0.5, **kwargs: Any):
        super().__init__(**kwargs)
        self.alpha = check_float("alpha", alpha)

    def _policy(self, state: Arrays, X: np.ndarray | None, C: np.ndarray, lam: float,
                feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert X is not None
        scores = self._estimate(state, X, len(X)) + self.alpha * self._width(state, X)
        return argmax_utility(scores, C, lam, feasible), np.ones(len(X))


class ThompsonRouter(LinearBandit):
    """Linear Thompson sampling (Agrawal and Goyal 2013): Bayesian linear regression per candidate.

    For each query draws every candidate's score from its posterior ``N(θ_a·x, scale²·x^T A_a^-1 x)`` and
    routes by the shared rule on the draws. The probability of the chosen candidate (for off-policy
    evaluation) is estimated from ``n_propensity_samples`` further draws, counting the real one.

    Parameters:
        scale: posterior scale ``v`` (larger explores more).
        n_propensity_samples: Monte-Carlo draws per query for the propensity.
        **kwargs: see :class:`LinearBandit`.

    Example:
        >>> import numpy as np
        >>> from rag_routing.embeddings import PrecomputedFeaturizer
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> E = np.array([[1.0, 0.0], [0.0, 1.0]] * 100, dtype=np.float32)
        >>> ds = RoutingDataset([f"q{i}" for i in range(200)], ["a", "b"], np.full((200, 2), np.nan),
        ...                     np.full((200, 2), 0.01)).with_embeddings(E, "toy")
        >>> router = ThompsonRouter(featurizer=PrecomputedFeaturizer("toy"), seed=1).start(["a", "b"], 0.01, ds)
        >>> arms, _ = router.act(E)
        >>> _ = router.learn(E, arms, quality=(arms == E[:, 1]).astype(float))
        >>> router.route_indices(np.eye(2, dtype=np.float32)).tolist()
        [0, 1]
    """

    name = "thompson"

    def __init__(self, *, scale: float = 0.3, n_propensity_samples: int = 100, **kwargs: Any):
        super().__init__(**kwargs)
        self.scale = check_float("scale", scale)
        self.n_propensity_samples = check_int("n_propensity_samples", n_propensity_samples, low=0)

    def _policy(self, state: Arrays, X: np.ndarray | None, C: np.ndarray, lam: float,
                feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert X is not None
        mean = self._estimate(state, X, len(X))
        sd = self.scale * self._width(state, X)
        draw = mean + sd * self.rng_.standard_normal(mean.shape)
        chosen = argmax_utility(draw, C, lam, feasible)
        S = self.n_propensity_samples
        if S == 0:
            return chosen, np.full(len(X), np.nan)
        draws = mean[:, None, :] + sd[:, None, :] * self.rng_.standard_normal((len(X), S, mean.shape[1]))
        U = np.where(feasible[:, None, :], draws - lam * C[:, None, :], -np.inf)
        wins = (U.argmax(axis=2) == chosen[:, None]).sum(axis=1)
        return chosen, (wins + 1.0) / (S + 1.0)


__all__ = ["LinearBandit", "LinUCBRouter", "ThompsonRouter"]
