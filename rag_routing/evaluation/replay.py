"""Replay evaluation of online routers: stream a RoutingDataset through a bandit, one query at a time.

Every candidate's outcome on every query is in the dataset, so the bandit's choice can be scored without
calling any model: at step ``t`` the bandit picks a candidate for query ``q_t``, receives the reward
``quality - λ·cost`` of that candidate on that query, and learns from it before the next query (the
full-information "supervised-to-bandit" replay of Bietti, Agarwal and Langford 2021). The result holds, per
step, the choice, its probability, the reward, and two regrets:

* against the **oracle**: the best reward on each query in hindsight;
* against the **best fixed candidate in hindsight**: the single candidate with the largest total reward on
  the streamed queries (what "always the best model" would have earned had one known which it was).

Rows with an unknown outcome (NaN quality) for any candidate are left out (the oracle needs them all); an
unknown cost is the candidate's mean cost. The order is a seeded permutation. A bandit that is not fitted is
started cold: it sees the stream's queries (to fit its featurizer or projection) and mean costs, never the
outcomes.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.bandits import EpsilonGreedyRouter
    >>> rng = np.random.default_rng(0)
    >>> ds = RoutingDataset([f"q{i}" for i in range(500)], ["weak", "strong"],
    ...                     (rng.random((500, 2)) < [0.5, 0.9]).astype(float), np.tile([0.0, 0.001], (500, 1)))
    >>> result = replay(EpsilonGreedyRouter(epsilon=0.05), ds, lam=100.0, seed=0)
    >>> result.candidates[result.best_fixed], bool(result.regret_vs_best_fixed[-1] < 30)
    ('strong', True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.off_policy import LoggedFeedback


@dataclass(frozen=True)
class ReplayStream:
    """The streamed queries (dataset rows in stream order) and every candidate's reward on them."""

    dataset: RoutingDataset
    rows: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    rewards: np.ndarray
    lam: float
    n_dropped: int

    def __len__(self) -> int:
        return int(self.rows.size)


def make_stream(dataset: RoutingDataset, lam: float, n: int | None = None, seed: int = 0,
                shuffle: bool = True) -> ReplayStream:
    """The first ``n`` rows (of a seeded permutation when ``shuffle``) with known outcomes, and their rewards."""
    if not (np.isfinite(lam) and lam >= 0):
        raise InvalidInputError(f"lam must be a finite number >= 0, got {lam}")
    known = ~np.isnan(dataset.quality).any(axis=1)
    order = np.random.default_rng(seed).permutation(len(dataset)) if shuffle else np.arange(len(dataset))
    order = order[known[order]]
    if n is not None:
        if n < 1 or n > order.size:
            raise InvalidInputError(f"n={n} but only {order.size} rows have every outcome known")
        order = order[:n]
    if order.size == 0:
        raise InvalidInputError("no row has every candidate's outcome known; nothing to replay")
    Q = dataset.quality[order]
    mean_cost = np.nan_to_num(dataset.mean_cost(), nan=0.0)
    C = np.where(np.isnan(dataset.cost[order]), mean_cost, dataset.cost[order])
    return ReplayStream(dataset, order, Q, C, Q - lam * C, float(lam), int((~known).sum()))


@dataclass(frozen=True)
class ReplayResult:
    """One policy's replay (see module docstring); arrays are per step, in stream order."""

    policy: str
    candidates: list[str]
    lam: float
    rows: np.ndarray
    arms: np.ndarray
    propensities: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    rewards: np.ndarray
    oracle_rewards: np.ndarray
    best_fixed: int
    best_fixed_rewards: np.ndarray
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cumulative_reward(self) -> np.ndarray:
        return np.cumsum(self.rewards)

    @property
    def regret(self) -> np.ndarray:
        """Cumulative regret against the oracle (best reward per query in hindsight)."""
        return np.cumsum(self.oracle_rewards - self.rewards)

    @property
    def regret_vs_best_fixed(self) -> np.ndarray:
        """Cumulative regret against the best fixed candidate in hindsight (negative: the policy beat it)."""
        return np.cumsum(self.best_fixed_rewards - self.rewards)

    def shares(self) -> dict[str, float]:
        """Share of the queries routed to each candidate."""
        counts = np.bincount(self.arms, minlength=len(self.candidates)) / len(self.arms)
        return dict(zip(self.candidates, counts.round(4).tolist()))

    def summary(self) -> dict[str, Any]:
        return {"policy": self.policy, "steps": int(self.arms.size), "lam": self.lam,
                "total_reward": float(self.rewards.sum()), "mean_quality": float(self.quality.mean()),
                "mean_cost_usd": float(self.cost.mean()), "regret_vs_oracle": float(self.regret[-1]),
                "regret_vs_best_fixed": float(self.regret_vs_best_fixed[-1]),
                "best_fixed": self.candidates[self.best_fixed], "shares": self.shares(),
                "seconds": round(self.seconds, 3)}

    def to_logs(self, contexts: np.ndarray | None = None) -> LoggedFeedback:
        """These decisions as off-policy logs (``contexts``: the streamed queries' features, in stream order)."""
        if np.isnan(self.propensities).any():
            raise InvalidInputError(f"{self.policy} did not record propensities; it cannot serve as a logger")
        return LoggedFeedback(contexts, self.arms, self.rewards, self.propensities, len(self.candidates),
                              list(self.candidates))


def _result(name: str, stream: ReplayStream, arms: np.ndarray, propensities: np.ndarray, seconds: float,
            candidates: list[str]) -> ReplayResult:
    steps = np.arange(len(stream))
    totals = stream.rewards.sum(axis=0)
    best = int(np.lexsort((stream.cost.mean(axis=0), -totals))[0])  # ties: the cheaper one
    return ReplayResult(name, candidates, stream.lam, stream.rows, arms, propensities,
                        stream.quality[steps, arms], stream.cost[steps, arms], stream.rewards[steps, arms],
                        stream.rewards.max(axis=1), best, stream.rewards[:, best], seconds)


def replay(bandit: Any, dataset: RoutingDataset | ReplayStream, lam: float | None = None, n: int | None = None,
           seed: int = 0, *, batch_size: int = 1, name: str | None = None) -> ReplayResult:
    """Stream ``dataset`` through ``bandit`` (a :class:`~rag_routing.routers.bandits.BanditRouter`).

    Parameters:
        bandit: fitted (warm-started) or not (started cold, see module docstring). It is changed in place.
        dataset: the outcomes, or a :class:`ReplayStream` already made (its λ is then used).
        lam: λ of ``reward = quality - λ·cost`` and of the bandit's decisions (default: the bandit's).
        n: number of queries streamed (default: all with known outcomes).
        seed: order of the stream.
        batch_size: queries routed before the feedback of the batch is learned (1: fully sequential).
        name: label of the result (default: the bandit's short name).
    """
    if isinstance(dataset, ReplayStream):
        stream = dataset
    else:
        stream = make_stream(dataset, float(bandit.lam if lam is None else lam), n, seed)
    if not getattr(bandit, "is_fitted", False):
        bandit.start(stream.dataset.candidates, np.nan_to_num(stream.dataset.mean_cost(), nan=0.0), stream.dataset)
    missing = [c for c in bandit.candidates_ if c not in stream.dataset.candidates]
    if missing:
        raise InvalidInputError(f"the dataset has no outcomes for the bandit's candidates {missing}")
    cols = [stream.dataset.candidate_index(c) for c in bandit.candidates_]
    stream = ReplayStream(stream.dataset.select_candidates(bandit.candidates_), stream.rows, stream.quality[:, cols],
                          stream.cost[:, cols], stream.rewards[:, cols], stream.lam, stream.n_dropped)
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    if bandit.uses_features:
        inputs = bandit.features(stream.dataset.subset(stream.rows))
    else:
        inputs = np.zeros((len(stream), 1), dtype=np.float32)  # context-free: only the row count matters
    arms = np.zeros(len(stream), dtype=np.int64)
    propensities = np.zeros(len(stream))
    start = time.perf_counter()
    for lo in range(0, len(stream), batch_size):
        hi = min(lo + batch_size, len(stream))
        X = inputs[lo:hi]
        chosen, p = bandit.act(X, lam=stream.lam)
        arms[lo:hi], propensities[lo:hi] = chosen, p
        bandit.learn(X, chosen, stream.rewards[np.arange(lo, hi), chosen], lam=stream.lam)
    seconds = time.perf_counter() - start
    return _result(name or bandit.name, stream, arms, propensities, seconds, list(bandit.candidates_))


def replay_fixed(dataset: RoutingDataset | ReplayStream, arm: int | str | None = None, lam: float = 0.0,
                 n: int | None = None, seed: int = 0, name: str | None = None) -> ReplayResult:
    """Always the same candidate (``None``: the best fixed one in hindsight, "always-best")."""
    stream = dataset if isinstance(dataset, ReplayStream) else make_stream(dataset, lam, n, seed)
    candidates = list(stream.dataset.candidates)
    if arm is None:
        arm = int(np.lexsort((stream.cost.mean(axis=0), -stream.rewards.sum(axis=0)))[0])
        name = name or "always-best"
    index = stream.dataset.candidate_index(arm) if isinstance(arm, str) else int(arm)
    arms = np.full(len(stream), index, dtype=np.int64)
    return _result(name or f"always:{candidates[index]}", stream, arms, np.ones(len(stream)), 0.0, candidates)


def replay_random(dataset: RoutingDataset | ReplayStream, lam: float = 0.0, n: int | None = None,
                  seed: int = 0) -> ReplayResult:
    """Uniformly random candidates (seeded)."""
    stream = dataset if isinstance(dataset, ReplayStream) else make_stream(dataset, lam, n, seed)
    m = stream.dataset.n_candidates
    arms = np.random.default_rng(seed + 1).integers(0, m, len(stream))
    return _result("random", stream, arms, np.full(len(stream), 1.0 / m), 0.0, list(stream.dataset.candidates))


def replay_oracle(dataset: RoutingDataset | ReplayStream, lam: float = 0.0, n: int | None = None,
                  seed: int = 0) -> ReplayResult:
    """The best candidate for every query in hindsight (ties: the cheaper one); regret 0 by definition."""
    stream = dataset if isinstance(dataset, ReplayStream) else make_stream(dataset, lam, n, seed)
    best = stream.rewards.max(axis=1, keepdims=True)
    arms = np.where(stream.rewards >= best - 1e-12, stream.cost, np.inf).argmin(axis=1)
    return _result("oracle", stream, arms, np.ones(len(stream)), 0.0, list(stream.dataset.candidates))


__all__ = ["ReplayStream", "ReplayResult", "make_stream", "replay", "replay_fixed", "replay_random",
           "replay_oracle"]
