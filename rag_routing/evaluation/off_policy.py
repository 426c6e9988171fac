"""Off-policy evaluation: judge a new routing policy on logs of the old one, without running it.

Logs hold, per query, the context ``x`` (query features), the candidate the logging policy chose ``a``, the
reward it got ``r`` (``quality - λ·cost``) and the probability it had of choosing ``a``, ``μ(a|x)`` (bandit
routers record it in ``RoutingDecision.metadata["propensity"]``). For a target policy ``π``:

* **IPS** (inverse propensity scoring; Horvitz and Thompson 1952): ``mean(w·r)`` with ``w = π(a|x)/μ(a|x)``.
  Unbiased when every action ``π`` takes had ``μ > 0``, but its variance grows with the weights.
* **SNIPS** (self-normalised IPS; Swaminathan and Joachims 2015): ``sum(w·r) / sum(w)``; slightly biased,
  much steadier.
* **DM** (direct method): the mean under ``π`` of a reward model ``r̂(x, a)`` (ridge regression per
  candidate); low variance, biased when the model is wrong.
* **DR** (doubly robust; Dudík, Langford and Li 2011): ``mean(Σ_a π(a|x)·r̂(x,a) + w·(r - r̂(x,a)))``;
  unbiased if either the propensities or the reward model are right, and lower variance than IPS.

Standard errors are the sample standard deviation of the per-query terms over ``sqrt(n)`` (delta method for
SNIPS). Deterministic loggers (LinUCB: propensity 1) only support evaluating policies that agree with them.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((2000, 3))
    >>> truth = np.stack([X[:, 0], -X[:, 0]], axis=1)           # arm 0 is best when x0 > 0
    >>> actions = rng.integers(0, 2, 2000)                     # a uniform logging policy
    >>> logs = LoggedFeedback(X, actions, truth[np.arange(2000), actions] + 0.1 * rng.standard_normal(2000),
    ...                       np.full(2000, 0.5), n_actions=2)
    >>> report = evaluate_policy(logs, (X[:, 0] < 0).astype(int))       # the best policy
    >>> bool(abs(report.dr.value - np.abs(X[:, 0]).mean()) < 0.05)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError


@dataclass(frozen=True)
class LoggedFeedback:
    """Logged decisions of one policy (see module docstring).

    Attributes:
        contexts: ``(n, d)`` query features, or ``None`` (context-free logs: the reward model is a mean per arm).
        actions: ``(n,)`` chosen candidate indices.
        rewards: ``(n,)`` observed rewards.
        propensities: ``(n,)`` probability the logging policy gave the chosen candidate, in ``(0, 1]``.
        n_actions: number of candidates.
        candidates: optional candidate names.
    """

    contexts: np.ndarray | None
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    n_actions: int
    candidates: Sequence[str] | None = None

    def __post_init__(self) -> None:
        actions = np.asarray(self.actions).astype(np.int64).ravel()
        rewards = np.asarray(self.rewards, dtype=np.float64).ravel()
        propensities = np.asarray(self.propensities, dtype=np.float64).ravel()
        n = actions.size
        if n == 0 or rewards.shape != (n,) or propensities.shape != (n,):
            raise InvalidInputError(f"logs need as many rewards ({rewards.size}) and propensities "
                                    f"({propensities.size}) as actions ({n}), and at least one row")
        if self.n_actions < 1 or actions.min() < 0 or actions.max() >= self.n_actions:
            raise InvalidInputError(f"actions must be indices in [0, {self.n_actions})")
        if not np.isfinite(rewards).all():
            raise InvalidInputError("logged rewards must be finite")
        if not (np.isfinite(propensities) & (propensities > 0) & (propensities <= 1)).all():
            raise InvalidInputError("propensities must be in (0, 1]; log the probability of the chosen candidate")
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "rewards", rewards)
        object.__setattr__(self, "propensities", propensities)
        if self.contexts is not None:
            X = np.asarray(self.contexts, dtype=np.float64)
            if X.ndim != 2 or X.shape[0] != n or not np.isfinite(X).all():
                raise InvalidInputError(f"contexts must be a finite ({n}, d) matrix")
            object.__setattr__(self, "contexts", X)

    def __len__(self) -> int:
        return int(self.actions.size)


@dataclass(frozen=True)
class PolicyValue:
    """An estimate of a policy's mean reward per query, with its standard error."""

    method: str
    value: float
    std_error: float

    @property
    def ci95(self) -> tuple[float, float]:
        return (self.value - 1.96 * self.std_error, self.value + 1.96 * self.std_error)


@dataclass(frozen=True)
class OffPolicyReport:
    """Every estimate of one target policy on one set of logs.

    Attributes:
        ips, snips, dm, dr: the estimates.
        effective_sample_size: ``sum(w)² / sum(w²)``: how many logged queries the estimate really rests on.
        max_weight: the largest importance weight (after clipping).
        match_rate: share of logged queries where the target policy would have chosen the logged action
            with probability > 0.
    """

    ips: PolicyValue
    snips: PolicyValue
    dm: PolicyValue
    dr: PolicyValue
    effective_sample_size: float
    max_weight: float
    match_rate: float

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for est in (self.ips, self.snips, self.dm, self.dr):
            out[est.method] = {"value": est.value, "std_error": est.std_error}
        out.update(effective_sample_size=self.effective_sample_size, max_weight=self.max_weight,
                   match_rate=self.match_rate)
        return out


class RidgeRewardModel:
    """``r̂(x, a)``: a ridge regression of the reward on ``[x, 1]`` per candidate (a mean without contexts).

    Candidates never logged get the overall mean reward.
    """

    def __init__(self, alpha: float = 1.0):
        if not alpha > 0:
            raise InvalidInputError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def fit(self, contexts: np.ndarray | None, actions: np.ndarray, rewards: np.ndarray,
            n_actions: int) -> RidgeRewardModel:
        X = self._design(contexts, len(actions))
        d = X.shape[1]
        self.coef_ = np.zeros((n_actions, d))
        self.coef_[:, -1] = rewards.mean()
        for a in range(n_actions):
            rows = actions == a
            if rows.any():
                Xa = X[rows]
                penalty = self.alpha * np.eye(d)
                penalty[-1, -1] = 1e-8  # the intercept is not shrunk
                self.coef_[a] = np.linalg.solve(Xa.T @ Xa + penalty, Xa.T @ rewards[rows])
        return self

    @staticmethod
    def _design(contexts: np.ndarray | None, n: int) -> np.ndarray:
        if contexts is None:
            return np.ones((n, 1))
        return np.hstack([contexts, np.ones((n, 1))])

    def predict(self, contexts: np.ndarray | None, n: int) -> np.ndarray:
        """``(n, n_actions)`` predicted rewards."""
        return self._design(contexts, n) @ self.coef_.T


PolicyLike = Any  # (n, m) probabilities | (n,) actions | callable(contexts) -> either | fitted Router


def target_probabilities(policy: PolicyLike, logs: LoggedFeedback, lam: float | None = None) -> np.ndarray:
    """``(n, m)`` probabilities the target ``policy`` gives each candidate on the logged contexts.

    ``policy`` may be a probability matrix, an array of chosen indices (a deterministic policy), a callable
    taking the contexts and returning either, or a fitted router (its greedy ``route_indices`` on the logged
    contexts, which must then be that router's features)."""
    n, m = len(logs), logs.n_actions
    if hasattr(policy, "route_indices"):
        if logs.contexts is None:
            raise InvalidInputError("a router policy needs logged contexts (its query features)")
        kwargs = {} if lam is None else {"lam": lam}
        policy = policy.route_indices(logs.contexts.astype(np.float32), **kwargs)
    elif callable(policy):
        policy = policy(logs.contexts)
    P = np.asarray(policy, dtype=np.float64)
    if P.shape == (n,):
        if not np.all((P >= 0) & (P < m) & (P == np.round(P))):
            raise InvalidInputError(f"target actions must be indices in [0, {m})")
        onehot = np.zeros((n, m))
        onehot[np.arange(n), P.astype(np.int64)] = 1.0
        return onehot
    if P.shape != (n, m) or not np.isfinite(P).all() or (P < 0).any() or not np.allclose(P.sum(axis=1), 1.0):
        raise InvalidInputError(f"target policy must give ({n},) actions or ({n}, {m}) probabilities summing to 1")
    return P


def _value(method: str, terms: np.ndarray) -> PolicyValue:
    se = float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("nan")
    return PolicyValue(method, float(terms.mean()), se)


def evaluate_policy(logs: LoggedFeedback, policy: PolicyLike, *, lam: float | None = None,
                    reward_model: RidgeRewardModel | Callable[[], RidgeRewardModel] | None = None,
                    max_weight: float | None = None, folds: int = 1, seed: int = 0) -> OffPolicyReport:
    """IPS, SNIPS, DM and DR estimates of ``policy``'s mean reward per query on ``logs``.

    Parameters:
        logs: the logging policy's decisions.
        policy: the target policy (see :func:`target_probabilities`); ``lam`` is passed to a router policy.
        reward_model: the model behind DM and DR (default: :class:`RidgeRewardModel` with ``alpha=1``).
        max_weight: clip importance weights at this value (bias for variance; ``None``: no clipping).
        folds: ``> 1`` cross-fits the reward model (each fold predicted by a model fitted on the others).
        seed: fold assignment.
    """
    n = len(logs)
    P = target_probabilities(policy, logs, lam)
    rows = np.arange(n)
    pi_logged = P[rows, logs.actions]
    w = pi_logged / logs.propensities
    if max_weight is not None:
        if not max_weight > 0:
            raise InvalidInputError(f"max_weight must be > 0, got {max_weight}")
        w = np.minimum(w, max_weight)
    r = logs.rewards
    R_hat = _reward_predictions(logs, reward_model, folds, seed)
    dm_terms = (P * R_hat).sum(axis=1)
    dr_terms = dm_terms + w * (r - R_hat[rows, logs.actions])
    ips_terms = w * r
    total_w = float(w.sum())
    if total_w > 0:
        snips_value = float(ips_terms.sum() / total_w)
        snips_se = float(np.sqrt(np.mean((w * (r - snips_value)) ** 2)) / w.mean() / np.sqrt(n))
    else:
        snips_value, snips_se = float("nan"), float("nan")
    ess = total_w ** 2 / float((w ** 2).sum()) if total_w > 0 else 0.0
    return OffPolicyReport(ips=_value("ips", ips_terms), snips=PolicyValue("snips", snips_value, snips_se),
                           dm=_value("dm", dm_terms), dr=_value("dr", dr_terms), effective_sample_size=ess,
                           max_weight=float(w.max()), match_rate=float((pi_logged > 0).mean()))


def _reward_predictions(logs: LoggedFeedback, reward_model: Any, folds: int, seed: int) -> np.ndarray:
    def make() -> RidgeRewardModel:
        if reward_model is None:
            return RidgeRewardModel()
        return reward_model() if callable(reward_model) and not hasattr(reward_model, "fit") else reward_model

    n, m, X = len(logs), logs.n_actions, logs.contexts
    if folds <= 1:
        return make().fit(X, logs.actions, logs.rewards, m).predict(X, n)
    if folds > n:
        raise InvalidInputError(f"folds={folds} exceeds the {n} logged rows")
    fold = np.random.default_rng(seed).permutation(n) % folds
    R_hat = np.zeros((n, m))
    for k in range(folds):
        train, test = fold != k, fold == k
        model = make().fit(None if X is None else X[train], logs.actions[train], logs.rewards[train], m)
        R_hat[test] = model.predict(None if X is None else X[test], int(test.sum()))
    return R_hat


__all__ = ["LoggedFeedback", "PolicyValue", "OffPolicyReport", "RidgeRewardModel", "target_probabilities",
           "evaluate_policy"]
