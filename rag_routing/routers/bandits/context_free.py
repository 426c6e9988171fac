"""Context-free bandits (survey §4.3.1): one estimate per candidate, whatever the query.

* :class:`EpsilonGreedyRouter` — Q-values (mean reward per candidate; Kaelbling et al. 1996) with
  ε-greedy exploration, the Q-learning option of PickLLM (Sikeridis et al. 2024).
* :class:`LinearRewardInactionRouter` — PickLLM's stochastic learning automaton: action probabilities updated
  with the linear reward-inaction scheme L_R-I (Narendra and Thathachar 1974).

Both converge to the candidate that is best *on average*; they cannot route a query by its content (use
:mod:`~rag_routing.routers.bandits.linear` for that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.routers.bandits.base import BanditRouter, argmax_utility
from rag_routing.routers.bandits.store import Arrays
from rag_routing.validation import check_float


def _random_feasible(rng: np.random.Generator, feasible: np.ndarray) -> np.ndarray:
    """A uniformly random feasible arm per row."""
    return np.where(feasible, rng.random(feasible.shape), -1.0).argmax(axis=1)


class EpsilonGreedyRouter(BanditRouter):
    """ε-greedy over Q-values (Sikeridis et al. 2024, PickLLM; Sutton and Barto 2018 §2.2-2.4).

    Estimates each candidate's mean target (quality minus λ times the cost surprise) as a running mean; with
    probability ``epsilon`` routes to a uniformly random candidate within budget, otherwise to the best by
    the shared rule. With ``initial_value=None`` every candidate is tried once before any exploitation.

    Parameters:
        epsilon: exploration probability in [0, 1].
        step_size: ``None`` for sample averages, or a constant in (0, 1] that tracks drifting rewards.
        initial_value: prior Q-value of untried candidates (``None``: try each once first; estimate 0 until then).
        **kwargs: see :class:`~rag_routing.routers.bandits.base.BanditRouter`.

    Example:
        >>> router = EpsilonGreedyRouter(epsilon=0.1, lam=1.0).start(["small", "large"], cost=[0.01, 0.2])
        >>> for _ in range(200):
        ...     d = router.route(["any question"])[0]
        ...     _ = router.update(d.decision_id, quality=1.0 if d.candidate == "large" else 0.5)
        >>> router.predict_quality(["any question"]).round(2).tolist()
        [[0.5, 1.0]]
        >>> router.route_indices(["any question"]).tolist()      # 1.0 - 0.2 > 0.5 - 0.01
        [1]
    """

    name = "epsilon_greedy"
    uses_features: ClassVar[bool] = False

    def __init__(self, *, epsilon: float = 0.1, step_size: float | None = None, initial_value: float | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.epsilon = check_float("epsilon", epsilon, high=1.0)
        self.step_size = None if step_size is None else check_float("step_size", step_size, high=1.0,
                                                                     open_low=True)
        self.initial_value = None if initial_value is None else check_float("initial_value", initial_value,
                                                                             low=-np.inf)

    def _init_state(self, n_arms: int) -> Arrays:
        start = 0.0 if self.initial_value is None else self.initial_value
        return {"values": np.full(n_arms, start), "counts": np.zeros(n_arms)}

    def _warm(self, state: Arrays, X: np.ndarray | None, targets: np.ndarray) -> None:
        known = ~np.isnan(targets)
        counts = known.sum(axis=0).astype(np.float64)
        sums = np.where(known, targets, 0.0).sum(axis=0)
        state["values"] = np.where(counts > 0, sums / np.maximum(counts, 1), state["values"])
        state["counts"] = counts

    def _estimate(self, state: Arrays, X: np.ndarray | None, n: int) -> np.ndarray:
        return np.broadcast_to(state["values"], (n, len(state["values"]))).copy()

    def _policy(self, state: Arrays, X: np.ndarray | None, C: np.ndarray, lam: float,
                feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = C.shape[0]
        greedy = argmax_utility(self._estimate(state, X, n), C, lam, feasible)
        explore = self.rng_.random(n) < self.epsilon
        chosen = np.where(explore, _random_feasible(self.rng_, feasible), greedy)
        k = feasible.sum(axis=1)
        propensity = self.epsilon / k + (1.0 - self.epsilon) * (chosen == greedy)
        if self.initial_value is None:  # untried arms first, deterministically (cheapest untried)
            untried = feasible & (state["counts"] == 0)[None, :]
            first = untried.any(axis=1)
            chosen = np.where(first, np.where(untried, C, np.inf).argmin(axis=1), chosen)
            propensity = np.where(first, 1.0, propensity)
        return chosen, propensity

    def _learn_one(self, state: Arrays, arm: int, x: np.ndarray | None, target: float, reward: float) -> None:
        state["counts"][arm] += 1
        rate = 1.0 / state["counts"][arm] if self.step_size is None else self.step_size
        state["values"][arm] += rate * (target - state["values"][arm])


class LinearRewardInactionRouter(BanditRouter):
    """PickLLM's stochastic learning automaton (Sikeridis et al. 2024) with the L_R-I scheme (Narendra and
    Thathachar 1974).

    Keeps a probability per candidate and samples the route from it. After feedback, the reward is scaled to
    ``β = clip((reward - lo) / (hi - lo), 0, 1)`` with ``reward_bounds = (lo, hi)`` and the probabilities move
    towards the chosen candidate, ``p ← p + a·β·(e_chosen - p)``; a zero reward changes nothing (inaction).
    ``predict_quality`` reports each candidate's running mean target (for sweeps); routing uses the
    probabilities. Warm start replays the automaton over the dataset's rows in a seeded order.

    Parameters:
        learning_rate: ``a`` in (0, 1]; small values converge slowly but to the best candidate more surely.
        reward_bounds: ``(lo, hi)`` of the reward ``quality - λ·cost`` (rewards outside are clipped).
        **kwargs: see :class:`~rag_routing.routers.bandits.base.BanditRouter`.

    Example:
        >>> router = LinearRewardInactionRouter(learning_rate=0.1, seed=0).start(["a", "b"], cost=[0.0, 0.0])
        >>> for _ in range(300):
        ...     d = router.route(["q"])[0]
        ...     _ = router.update(d.decision_id, reward=float(d.candidate == "b"))
        >>> float(router.probabilities_[1]) > 0.95
        True
    """

    name = "lri"
    uses_features: ClassVar[bool] = False

    def __init__(self, *, learning_rate: float = 0.05, reward_bounds: Sequence[float] = (0.0, 1.0), **kwargs: Any):
        super().__init__(**kwargs)
        self.learning_rate = check_float("learning_rate", learning_rate, high=1.0, open_low=True)
        bounds = tuple(float(b) for b in reward_bounds)
        if len(bounds) != 2 or not np.isfinite(bounds).all() or bounds[0] >= bounds[1]:
            raise InvalidInputError(f"reward_bounds must be (lo, hi) with lo < hi, got {reward_bounds!r}")
        self.reward_bounds = bounds

    @property
    def probabilities_(self) -> np.ndarray:
        """Current action probabilities, one per candidate."""
        self._check_fitted()
        with self._lock:
            return self._current_state()["probabilities"].copy()

    def _init_state(self, n_arms: int) -> Arrays:
        return {"probabilities": np.full(n_arms, 1.0 / n_arms), "values": np.zeros(n_arms),
                "counts": np.zeros(n_arms)}

    def _add_arm(self, state: Arrays) -> None:
        m = len(state["probabilities"]) + 1
        super()._add_arm(state)
        state["probabilities"][:-1] *= 1.0 - 1.0 / m
        state["probabilities"][-1] = 1.0 / m

    def _remove_arm(self, state: Arrays, arm: int) -> None:
        super()._remove_arm(state, arm)
        total = state["probabilities"].sum()
        m = len(state["probabilities"])
        state["probabilities"] = state["probabilities"] / total if total > 0 else np.full(m, 1.0 / m)

    def _warm(self, state: Arrays, X: np.ndarray | None, targets: np.ndarray) -> None:
        known = ~np.isnan(targets)
        counts = known.sum(axis=0).astype(np.float64)
        state["values"] = np.where(counts > 0, np.where(known, targets, 0.0).sum(axis=0) / np.maximum(counts, 1), 0.0)
        state["counts"] = counts
        rng = np.random.default_rng(self.seed)
        rewards = targets - self.lam * self.mean_cost_[None, :]
        for row in rng.permutation(len(targets)):
            arm = int(rng.choice(len(state["probabilities"]), p=state["probabilities"]))
            if known[row, arm]:
                self._reinforce(state, arm, float(rewards[row, arm]))

    def _estimate(self, state: Arrays, X: np.ndarray | None, n: int) -> np.ndarray:
        return np.broadcast_to(state["values"], (n, len(state["values"]))).copy()

    def _policy(self, state: Arrays, X: np.ndarray | None, C: np.ndarray, lam: float,
                feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        P = np.where(feasible, state["probabilities"][None, :], 0.0)
        total = P.sum(axis=1, keepdims=True)
        # An automaton that has put all its mass on arms outside the budget samples uniformly among the rest.
        P = np.where(total > 0, P / np.where(total > 0, total, 1.0), feasible / feasible.sum(axis=1, keepdims=True))
        u = self.rng_.random((len(P), 1))
        chosen = np.minimum((np.cumsum(P, axis=1) < u).sum(axis=1), P.shape[1] - 1)
        chosen = np.where(feasible[np.arange(len(P)), chosen], chosen, P.argmax(axis=1))
        return chosen, P[np.arange(len(P)), chosen]

    def _reinforce(self, state: Arrays, arm: int, reward: float) -> None:
        lo, hi = self.reward_bounds
        beta = min(max((reward - lo) / (hi - lo), 0.0), 1.0)
        p = state["probabilities"]
        p -= self.learning_rate * beta * p
        p[arm] += self.learning_rate * beta
        p /= p.sum()  # guards against rounding drift

    def _learn_one(self, state: Arrays, arm: int, x: np.ndarray | None, target: float, reward: float) -> None:
        state["counts"][arm] += 1
        state["values"][arm] += (target - state["values"][arm]) / state["counts"][arm]
        self._reinforce(state, arm, reward)


__all__ = ["EpsilonGreedyRouter", "LinearRewardInactionRouter"]
