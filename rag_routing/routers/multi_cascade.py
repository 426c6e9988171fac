"""`MultiChoiceCascade`: after each answer, pick the next candidate among all remaining with the shared rule.

Dekoninck et al. 2025 ("A unified approach to routing and cascading for LLMs"): each step chooses, with
:func:`rag_routing.decision.select`, between stopping and every remaining candidate, from beliefs that start at a
pre-generation router's prior and are updated by the judge's scores on the answers so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag_routing.decision import select
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.sweep import OperatingPoints, realised
from rag_routing.ledger.scope import current_ledger
from rag_routing.routers.base import Router, RouterInput
from rag_routing.routers.cascade import CascadeRouter, _Run
from rag_routing.routers.cascade_guard import JudgeCalibration, keep_strongest, path_cap
from rag_routing.routers.cascade_replay import _logit, _sigmoid, cost_quality_front
from rag_routing.routers.judges import Judge


class MultiChoiceCascade(CascadeRouter):
    """After each answer, pick the next candidate among all remaining ones by the shared rule (Dekoninck et al.
    2025). Estimates each remaining candidate's quality — a pre-generation prior updated with the judge's scores
    of the answers seen — and stops when the best answer so far beats ``quality - λ·cost`` of every remaining
    candidate that fits the budget.

    Args:
        candidates, judge, budget, featurizer, max_tokens, system_prompt: as :class:`CascadeRouter`.
        quality: online prior quality per candidate name (default: the fitted prior).
        prior: the pre-generation router whose ``predict_quality`` is the per-query prior (a registry name
            such as ``"cluster"``, a Router, or ``None`` for each candidate's mean training quality).
        lam: λ of the rule (quality units per US $); :meth:`operating_points` sweeps it.
        threshold: also stop as soon as a score reaches it (``None``: only the rule decides).
        pool: candidate names considered offline (default: the training cost-quality front).
        n_orders, n_bins: random call orders per training query for the judge; score bins of the belief update.

    Guards (:mod:`rag_routing.routers.cascade_guard`): one query never costs more than the priciest candidate
    times ``1 + path_slack``; when a stronger candidate (higher training-mean quality) than the judge's pick was
    paid for, its answer is returned; a judge whose first-call scores drift from calibration sends every query
    to the best fixed candidate.
    """

    name = "multi_cascade"
    #: Spend per query at most the priciest candidate's cost times ``1 + path_slack``.
    path_slack: float = 0.25

    def __init__(self, candidates: Sequence[Any] | None = None, *, judge: Judge | None = None,
                 quality: dict[str, float] | None = None, prior: Any = "cluster", lam: float = 0.0,
                 threshold: float | None = None, pool: Sequence[str] | None = None, budget: float | None = None,
                 fallback: str | None = None, featurizer: Any = None, max_tokens: int = 256,
                 system_prompt: str | None = None, n_orders: int = 2, n_bins: int = 4, n_folds: int = 3,
                 n_lambdas: int = 60, seed: int = 0):
        super().__init__(candidates, judge=judge, threshold=threshold, order=pool, lam=lam, budget=budget,
                         fallback=fallback, featurizer=featurizer, max_tokens=max_tokens,
                         system_prompt=system_prompt, n_folds=n_folds, seed=seed)
        self.quality, self.prior, self.pool = quality, prior, None if pool is None else list(pool)
        self.n_orders, self.n_bins, self.n_lambdas = n_orders, n_bins, n_lambdas

    def get_params(self) -> dict[str, Any]:
        return {"quality": self.quality, "prior": self.prior if isinstance(self.prior, str) else None,
                "lam": self.lam, "threshold": self.threshold, "pool": self.pool, "budget": self.budget,
                "fallback": self.fallback, "max_tokens": self.max_tokens, "n_orders": self.n_orders,
                "n_bins": self.n_bins, "n_folds": self.n_folds, "n_lambdas": self.n_lambdas, "seed": self.seed}

    # ------------------------------------------------------------------ online
    def _accept_at(self) -> float:
        return np.inf if self.threshold is None else float(self.threshold)

    def _is_last(self, run: _Run, name: str) -> bool:
        return run.fixed is not None  # otherwise every answer is judged: the scores choose what to return

    def _names(self) -> list[str]:
        return self._online_order()  # the fitted pool when the live models cover it: its beliefs apply

    def _remaining(self, run: _Run, cap: float | None = None) -> float | None:
        left = [] if self.budget is None else [self.budget - run.spent]
        if cap is not None:
            left.append(cap - run.spent)
        ledger = current_ledger()
        if ledger is not None and ledger.budget is not None:
            left.append(ledger.budget.remaining().usd)
        return max(0.0, min(left)) if left else None

    def _next_step(self, run: _Run) -> str | None:
        handled, step = self._drift_step(run)
        if handled:
            return step
        if run.reason:
            return None
        names = self._names()
        if run.quality is None:
            run.quality = self._beliefs_for(run.query, names)
        judged = {a.candidate: a.score for a in run.attempts}
        S, C = np.full((1, len(names) + 1), -1e9), np.zeros((1, len(names) + 1))
        if judged:
            S[0, 0] = max(-1.0 if v is None else v for v in judged.values())
        for k, name in enumerate(names):
            if name not in judged:
                S[0, k + 1] = _sigmoid(run.quality[k])
                C[0, k + 1] = self.clients_[name].estimate_usd(self._messages(run), self.max_tokens)
        every = [self.clients_[n].estimate_usd(self._messages(run), self.max_tokens) for n in names]
        left = self._remaining(run, path_cap(np.array(every), self.path_slack))
        choice = int(select(S, C, self.lam, None if left is None else np.array([left]))[0])
        if choice:
            return names[choice - 1]
        untried = [k for k, n in enumerate(names) if n not in judged]
        if not untried:
            run.reason = "every candidate answered"
        elif left is not None and all(C[0, k + 1] > left for k in untried):
            run.reason, run.by_budget = f"budget: no remaining candidate fits the ${left:.6g} left", True
        else:
            run.reason = (f"stop: the best answer so far (judge score {S[0, 0]:.3g}) beats quality - λ·cost of "
                          f"every remaining candidate (λ = {self.lam:g})")
        return None

    def _beliefs_for(self, query: str, names: list[str]) -> np.ndarray:
        if self.quality is not None:
            missing = [n for n in names if n not in self.quality]
            if missing:
                raise InvalidInputError(f"quality= has no prior for {missing}")
            return _logit(np.array([self.quality[n] for n in names], dtype=np.float64))
        if not self.is_fitted:
            raise InvalidInputError("pass quality={name: expected quality} or fit the cascade on a dataset first")
        return self._prior_logits([query])[0]

    def _update(self, run: _Run, name: str, score: float | None) -> None:
        names = self._names()
        if score is not None and run.quality is not None and names == getattr(self, "order_", None):
            run.quality = self._posterior(run.quality[None, :], names.index(name), np.array([score]))[0]

    # ------------------------------------------------------------------ beliefs
    def _prior_logits(self, X: RouterInput) -> np.ndarray:
        pool = [self.candidates_.index(n) for n in self.order_]
        if getattr(self, "prior_router_", None) is None:
            p = np.broadcast_to(self.prior_[pool], (self._n_rows(X), len(pool)))
        else:
            p = self.prior_router_.predict_quality(X)[:, [self.prior_router_.candidates_.index(n) for n in self.order_]]
        return _logit(p)

    def _posterior(self, logits: np.ndarray, k: int, scores: np.ndarray) -> np.ndarray:
        """Naive-Bayes update of every candidate's logit after candidate ``k`` was judged ``scores``."""
        bins = np.searchsorted(self.edges_[k], scores)
        return logits + _logit(self.table_[k, bins, :]) - _logit(self.base_)[None, :]

    def _specs(self, i: int) -> list[tuple[str, list[str]]]:
        rng, seen, specs = np.random.default_rng(self.seed + i), set(), []
        for _ in range(self.n_orders):
            order = [self.order_[j] for j in rng.permutation(len(self.order_))]
            for k, name in enumerate(order):
                key = (name, tuple(sorted(order[:k])))
                if key not in seen:
                    seen.add(key)
                    specs.append((name, order[:k]))
        return specs

    # ------------------------------------------------------------------ offline
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self.prior_ = np.nan_to_num(dataset.mean_quality(), nan=0.0)
        names = self.pool or [dataset.candidates[j] for j in cost_quality_front(dataset)]
        for name in names:
            dataset.candidate_index(name)
        self.order_ = list(names)
        self.prior_router_ = self._fit_prior(dataset)
        pool = [dataset.candidate_index(n) for n in names]
        folds = np.random.default_rng(self.seed).permutation(len(dataset)) % max(2, self.n_folds)
        first = np.zeros((len(dataset), len(names)))
        for fold in np.unique(folds):
            judge = self._train_judge(dataset, features, np.flatnonzero(folds != fold))
            held = np.flatnonzero(folds == fold).tolist()
            for k, name in enumerate(names):
                first[held, k] = self.judge_scores(dataset, held, name, [[]] * len(held), features, judge)
        Y = dataset.quality[:, pool]
        self.base_ = np.clip(np.nanmean(Y, axis=0), 0.02, 0.98)
        qs = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        self.edges_ = np.stack([np.quantile(first[:, k], qs) for k in range(len(names))])
        self.table_ = np.zeros((len(names), self.n_bins, len(names)))
        for k in range(len(names)):
            bins = np.searchsorted(self.edges_[k], first[:, k])
            for b in range(self.n_bins):
                rows = Y[bins == b]
                known = ~np.isnan(rows)
                self.table_[k, b] = (np.where(known, rows, 0).sum(0) + 5 * self.base_) / (known.sum(0) + 5)
        self.table_ = np.clip(self.table_, 0.02, 0.98)
        self.judge_ = self._train_judge(dataset, features, np.arange(len(dataset)))
        responses = dataset.responses or []
        self.judge_calibration_ = {}
        for k, name in enumerate(names):
            known = [i for i in range(len(dataset)) if responses[i][pool[k]] is not None]
            if len(known) >= 2:
                held_out = np.full(len(dataset), np.nan)
                held_out[known] = first[known, k]
                self.judge_calibration_[name] = JudgeCalibration(
                    first[known, k], 0.5 if self.threshold is None else float(self.threshold),
                    in_sample=self._in_sample(dataset, features, name, held_out))

    def _fit_prior(self, dataset: RoutingDataset) -> Router | None:
        if self.prior is None:
            return None
        if isinstance(self.prior, Router):
            return self.prior if self.prior.is_fitted else self.prior.fit(dataset)
        from rag_routing.routers.registry import create_router

        return create_router(str(self.prior), featurizer=self.featurizer_).fit(dataset)

    def replay(self, test: RoutingDataset, lam: float, features: np.ndarray | None = None,
               prior_logits: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The cascade on ``test``'s recorded answers at ``lam``: (returned candidate index, $ paid) per query."""
        names, n = self.order_, len(test)
        pool = np.array([test.candidate_index(c) for c in names])
        logits = self._prior_logits(test) if prior_logits is None else prior_logits.copy()
        scores, spent = np.full((n, len(names)), np.nan), np.zeros(n)
        called: list[list[str]] = [[] for _ in range(n)]
        active, estimate = np.ones(n, dtype=bool), self.mean_cost_[[self.candidates_.index(c) for c in names]]
        for _ in range(len(names)):
            rows = np.flatnonzero(active)
            if rows.size == 0:
                break
            untried = np.isnan(scores[rows])
            S = np.where(untried, _sigmoid(logits[rows]), -1e9)
            best = np.where(untried.all(axis=1), -1e9, np.nanmax(np.where(untried, -1.0, scores[rows]), axis=1))
            S, C = np.column_stack([best, S]), np.column_stack([np.zeros(rows.size), np.where(untried, estimate, 0.0)])
            left = np.maximum(path_cap(estimate, self.path_slack) - spent[rows], 0.0)
            if self.budget is not None:
                left = np.minimum(left, np.maximum(self.budget - spent[rows], 0.0))
            choice = select(S, C, lam, left)
            active[rows[choice == 0]] = False
            for k, name in enumerate(names):
                at = rows[choice == k + 1]
                if at.size == 0:
                    continue
                spent[at] += np.nan_to_num(test.cost[at, pool[k]], nan=0.0)
                s = self.judge_scores(test, at.tolist(), name, [called[i] for i in at], features)
                scores[at, k] = s
                logits[at] = self._posterior(logits[at], k, s)
                for i in at:
                    called[i].append(name)
                if self.threshold is not None:
                    active[at[s >= self.threshold]] = False
        returned = np.nanargmax(np.where(np.isnan(scores), -np.inf, scores), axis=1)
        prior = self.prior_[[self.candidates_.index(c) for c in names]]
        return pool[keep_strongest(~np.isnan(scores), returned, prior)], spent

    def operating_points(self, test: RoutingDataset, thresholds: np.ndarray | None = None) -> OperatingPoints:
        """The cascade replayed on ``test`` for a grid of λ (``lams``); mean cost counts every call."""
        self._check_fitted()
        test = test.select_candidates(self.candidates_)
        if test.responses is None:
            raise InvalidInputError("replaying a cascade needs the test set's recorded responses")
        features = self.features(test) if self.uses_features else None
        fallback = self._drifted_points(test, features)
        if fallback is not None:
            return fallback
        prior = self._prior_logits(test)
        pool_cost = self.mean_cost_[[self.candidates_.index(c) for c in self.order_]]
        lams = np.concatenate([[0.0], np.geomspace(1e-3 / pool_cost.max(), 1e2 / max(pool_cost.min(), 1e-12),
                                                   self.n_lambdas)])
        runs = [self.replay(test, float(lam), features, prior) for lam in lams]
        choices = np.stack([r[0] for r in runs])
        _, quality = realised(test, choices)
        return OperatingPoints(lams=lams, choices=choices, cost=np.array([r[1].mean() for r in runs]),
                               quality=quality)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if getattr(self, "prior_router_", None) is not None:
            raise InvalidInputError("saving a MultiChoiceCascade with a prior router is not supported; "
                                    "use prior=None or refit")
        config, arrays = super()._get_state()
        return config, {**arrays, "base": self.base_, "edges": self.edges_, "table": self.table_}

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(config, arrays)
        self.prior_router_ = None
        self.base_, self.edges_, self.table_ = (np.asarray(arrays[k], float) for k in ("base", "edges", "table"))



__all__ = ["MultiChoiceCascade"]
