"""`BanditRouter`: what every online router shares (survey §4.3): explore in ``route``, learn in ``update``.

A bandit is a :class:`~rag_routing.routers.base.Router`: ``fit`` warm-starts it from a
:class:`~rag_routing.evaluation.dataset.RoutingDataset` (or :meth:`BanditRouter.start` cold-starts it from
candidates and prices alone), ``predict_quality``/``route_indices`` give its current *greedy* estimates (so
the shared rule, budgets and λ sweeps work as for any router), and ``route`` *explores*: it may pick a
candidate other than the greedy one, and remembers each decision (a bounded LRU of pending decisions with the
context vector, the probability of the chosen arm and λ) until feedback arrives with
``update(decision_id, reward)`` or ``update(decision_id, quality=..., cost=...)``.

Rewards mix quality and cost with the decision rule's λ: ``reward = quality - λ·cost``. The learned quantity
is quality-like: ``target = reward + λ·predicted_cost``, i.e. the observed quality minus λ times the cost
surprise, so ``argmax target - λ·predicted_cost`` is the best expected reward. The recorded propensities
feed :mod:`rag_routing.evaluation.off_policy`.

With a :class:`~rag_routing.routers.bandits.store.BanditStateStore` (``store=`` or :meth:`use_store`) the
learned arrays live in the store: every decision reads them and every update is an atomic read-modify-write,
so several processes learn as one. Pending decisions stay in the process that routed them.
"""

from __future__ import annotations

import math
import threading
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from rag_routing.decision import RoutingDecision
from rag_routing.decision import _budget_column as budget_column
from rag_routing.errors import CorruptStateError, InvalidInputError, NoRouteError, UnknownCandidateError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.bandits.feedback import PendingDecision, PendingDecisions, rewards_from_feedback
from rag_routing.routers.bandits.store import Arrays, BanditStateStore
from rag_routing.routers.base import Router, RouterInput
from rag_routing.validation import check_float, check_int


def argmax_utility(S: np.ndarray, C: np.ndarray, lam: float, feasible: np.ndarray) -> np.ndarray:
    """The shared rule on ``S - λC`` over feasible arms; ties go to the cheaper arm, then the lower index."""
    U = np.where(feasible, S - lam * C, -np.inf)
    tied = U >= (U.max(axis=1) - 1e-12)[:, None]
    return np.where(tied & feasible, C, np.inf).argmin(axis=1)


class BanditRouter(Router):
    """Base class of the online routers (see module docstring).

    Parameters:
        seed: seeds exploration; the same inputs in the same order give the same choices.
        warm_start: ``fit`` learns from the dataset's outcomes (False: only its candidates, costs, queries).
        max_pending: decisions remembered for ``update`` (least recently made are forgotten first).
        pending_ttl_s: seconds a decision waits for feedback (``None``: no limit).
        store: a :class:`BanditStateStore` holding the learned arrays (shared by processes); not saved.
        state_key: the key of this router's state in the store.
        **kwargs: ``lam``, ``budget``, ``fallback``, ``featurizer`` (see :class:`Router`).
    """

    #: True: the router learns from feedback after each decision.
    online: ClassVar[bool] = True

    def __init__(self, *, seed: int = 0, warm_start: bool = True, max_pending: int = 10_000,
                 pending_ttl_s: float | None = None, store: BanditStateStore | None = None,
                 state_key: str = "default", **kwargs: Any):
        super().__init__(**kwargs)
        self.seed = check_int("seed", seed, low=0)
        self.warm_start = bool(warm_start)
        self.max_pending = check_int("max_pending", max_pending)
        self.pending_ttl_s = None if pending_ttl_s is None else check_float("pending_ttl_s", pending_ttl_s,
                                                                             open_low=True)
        if not isinstance(state_key, str) or not state_key:
            raise InvalidInputError("state_key must be a non-empty string")
        self.state_key = state_key
        self._store = store
        self._pending = PendingDecisions(self.max_pending, self.pending_ttl_s)
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        # Copies (copy.deepcopy, pickle) get their own lock and no store: a copy must not write shared state.
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_store"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ subclass hooks
    def _setup_context(self, features: np.ndarray | None) -> None:
        """Fit whatever maps raw features to context vectors (contextual bandits)."""

    def _context(self, features: np.ndarray | None) -> np.ndarray | None:
        """Context vectors ``(n, d)`` for raw features; ``None`` for context-free bandits."""
        return None

    @abstractmethod
    def _init_state(self, n_arms: int) -> Arrays:
        """Prior state for ``n_arms`` arms; every array's first axis is the arm."""

    @abstractmethod
    def _warm(self, state: Arrays, X: np.ndarray | None, targets: np.ndarray) -> None:
        """Learn from full-information ``targets`` ``(n, m)`` (NaN = unknown) in place."""

    @abstractmethod
    def _estimate(self, state: Arrays, X: np.ndarray | None, n: int) -> np.ndarray:
        """``(n, m)`` greedy target estimates."""

    @abstractmethod
    def _policy(self, state: Arrays, X: np.ndarray | None, C: np.ndarray, lam: float,
                feasible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exploring choice per row and its probability (every row has a feasible arm)."""

    @abstractmethod
    def _learn_one(self, state: Arrays, arm: int, x: np.ndarray | None, target: float, reward: float) -> None:
        """Update ``state`` in place with one observation."""

    def _add_arm(self, state: Arrays) -> None:
        prior = self._init_state(1)
        for key, value in prior.items():
            state[key] = np.concatenate([state[key], value])

    def _remove_arm(self, state: Arrays, arm: int) -> None:
        for key in list(state):
            state[key] = np.delete(state[key], arm, axis=0)

    def _context_state(self) -> tuple[dict[str, Any], Arrays]:
        return {}, {}

    def _set_context_state(self, config: dict[str, Any], arrays: Arrays) -> None:
        """Restore what :meth:`_context_state` returned."""

    # ------------------------------------------------------------------ fitting
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self._setup_context(features)
        state = self._init_state(len(self.candidates_))
        if self.warm_start:
            cost = np.where(np.isnan(dataset.cost), self.mean_cost_, dataset.cost)
            targets = dataset.quality - self.lam * (cost - self.mean_cost_)
            if (~np.isnan(targets)).any():
                self._warm(state, self._context(features), targets)
        with self._lock:
            self.rng_ = np.random.default_rng(self.seed)
            self.state_ = state
            self._pending.clear()
            if self._store is not None:
                self._store.put(self.store_key, state)

    def start(self, candidates: Sequence[str], cost: Sequence[float] | np.ndarray,
              queries: Sequence[str] | RoutingDataset | None = None) -> BanditRouter:
        """Cold start: no outcomes yet, only the candidates, their expected US $ per call and (for contextual
        bandits) some queries to fit the featurizer and projection on. Returns ``self``."""
        names = list(candidates)
        if isinstance(queries, RoutingDataset):
            base = queries
        else:
            if queries is None:
                if self.uses_features:
                    raise InvalidInputError(f"{type(self).__name__} needs queries (or a RoutingDataset with "
                                            "embeddings) to fit its context features on")
                queries = ["cold start"]
            texts = list(queries)
            base = RoutingDataset(texts, names, np.zeros((len(texts), len(names))), np.zeros((len(texts), len(names))))
        costs = np.broadcast_to(np.asarray(cost, dtype=np.float64), (len(base), len(names)))
        empty = RoutingDataset(base.queries, names, np.full((len(base), len(names)), np.nan), costs,
                               embeddings=base.embeddings, embedding_model=base.embedding_model)
        return self.fit(empty)

    # ------------------------------------------------------------------ state access
    @property
    def store_key(self) -> str:
        return f"rag_routing:bandit:{self.name}:{self.state_key}"

    def _check_state(self, state: Arrays, where: str) -> Arrays:
        m = len(self.candidates_)
        expected = self._init_state(m)
        for key, prior in expected.items():
            if key not in state or np.shape(state[key]) != prior.shape:
                raise CorruptStateError(f"{where}: bandit state {key!r} has shape "
                                        f"{np.shape(state.get(key))}, expected {prior.shape} for {m} candidates "
                                        "(was the pool changed elsewhere? reload the router)")
        return {k: np.asarray(state[k], dtype=prior.dtype) for k, prior in expected.items()}

    def _current_state(self) -> Arrays:
        if self._store is None:
            return self.state_
        shared = self._store.get(self.store_key)
        if shared is None:
            self._store.put(self.store_key, self.state_)
            return self.state_
        self.state_ = self._check_state(shared, f"store key {self.store_key!r}")
        return self.state_

    def _mutate(self, change: Any) -> None:
        """Apply ``change(state)`` (in place) to the local state or, atomically, to the shared one."""
        if self._store is None:
            change(self.state_)
            return

        def step(current: Arrays | None) -> Arrays:
            state = self._check_state(current, self.store_key) if current is not None else \
                {k: v.copy() for k, v in self.state_.items()}
            change(state)
            return state

        self.state_ = self._store.update(self.store_key, step)

    def use_store(self, store: BanditStateStore, state_key: str | None = None) -> BanditRouter:
        """Keep the learned state in ``store`` from now on: adopt what it holds under this router's key, or
        put the local state there if the key is empty. Returns ``self``."""
        self._check_fitted()
        with self._lock:
            self._store = store
            if state_key is not None:
                self.state_key = state_key
            self._current_state()
        return self

    # ------------------------------------------------------------------ prediction and exploration
    def _inputs(self, X: RouterInput) -> tuple[np.ndarray | None, int]:
        features = self.features(X) if self.uses_features else None
        n = features.shape[0] if features is not None else self._n_rows(X)
        return self._context(features), n

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        n = features.shape[0] if features is not None else self._n_rows(X)
        with self._lock:
            return self._estimate(self._current_state(), self._context(features), n)

    def _choose(self, state: Arrays, ctx: np.ndarray | None, n: int, lam: float,
                budget: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        numeric = isinstance(lam, (int, float, np.integer, np.floating)) and not isinstance(lam, bool)
        if not (numeric and math.isfinite(lam) and lam >= 0):
            raise InvalidInputError(f"lam must be a finite number >= 0, got {lam!r}")
        C = np.broadcast_to(self.mean_cost_, (n, len(self.candidates_)))
        feasible = np.ones(C.shape, dtype=bool)
        if budget is not None:
            B = np.broadcast_to(budget_column(budget, n), (n, 1))[:, 0]  # a typed error for any other shape
            if np.isnan(B).any() or (B < 0).any():
                raise InvalidInputError("budget must be >= 0 (use None for no budget)")
            feasible = C <= B[:, None]
        rows = feasible.any(axis=1)
        chosen = np.zeros(n, dtype=np.int64)
        propensity = np.ones(n)
        if not rows.all():
            if self.fallback is None:
                bad = np.flatnonzero(~rows)
                raise NoRouteError(f"{bad.size} queries have no candidate within the budget (rows "
                                   f"{bad[:5].tolist()}...); raise the budget or declare a fallback")
            chosen[~rows] = self._candidate_position(self.fallback)
        if rows.any():
            sub = None if ctx is None else ctx[rows]
            chosen[rows], propensity[rows] = self._policy(state, sub, C[rows], float(lam), feasible[rows])
        return chosen, propensity, feasible

    def _support_fallback(self, X: RouterInput, S: np.ndarray, lam: float, feasible: np.ndarray,
                          chosen: np.ndarray, propensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-support queries (:mod:`rag_routing.routers.support`) go greedily, without exploring, to the
        prior choice: every candidate's training-mean quality under the same λ and budget. Changes ``chosen``
        and ``propensity`` in place; returns ``(estimates with the prior in those rows, p-values)``."""
        from rag_routing.routers.support import apply_guards

        if not self.uses_features:
            return S, np.full(S.shape[0], np.nan)
        S_guarded, p = apply_guards(self, S, self.features(X), self._texts(X))
        out = (np.nan_to_num(p, nan=1.0) < self.guard_settings.alpha) & feasible.any(axis=1)
        if out.any():
            C = np.broadcast_to(self.mean_cost_, S.shape)
            chosen[out] = argmax_utility(S_guarded, C, lam, feasible)[out]
            propensity[out] = 1.0
        return S_guarded, p

    def act(self, X: RouterInput, lam: float | None = None,
            budget: float | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exploring choice per query and the probability the policy gave it, without remembering anything
        (the fast path of :func:`~rag_routing.evaluation.replay.replay`; pair it with :meth:`learn`)."""
        self._check_fitted()
        ctx, n = self._inputs(X)
        lam = self.lam if lam is None else lam
        with self._lock:
            state = self._current_state()
            chosen, propensity, feasible = self._choose(state, ctx, n, lam, self.budget if budget is None else budget)
            S = self._estimate(state, ctx, n)
        self._support_fallback(X, S, float(lam), feasible, chosen, propensity)
        return chosen, propensity

    def route(self, X: RouterInput, lam: float | None = None,
              budget: float | np.ndarray | None = None) -> list[RoutingDecision]:
        """Explore: one :class:`RoutingDecision` per query, remembered for :meth:`update`.

        ``metadata`` holds ``propensity`` (probability of the chosen candidate), ``explored`` (it differs from
        the greedy choice) and ``greedy`` (the greedy candidate)."""
        self._check_fitted()
        lam = self.lam if lam is None else lam
        budget = self.budget if budget is None else budget
        ctx, n = self._inputs(X)
        names = self.candidates_
        with self._lock:
            state = self._current_state()
            chosen, propensity, feasible = self._choose(state, ctx, n, lam, budget)
            S, p = self._support_fallback(X, self._estimate(state, ctx, n), float(lam), feasible, chosen,
                                          propensity)
            C = np.broadcast_to(self.mean_cost_, S.shape)
            greedy = argmax_utility(S, C, lam, feasible)
            budgets = None if budget is None else np.broadcast_to(np.asarray(budget, dtype=float), (n,))
            decisions = []
            for row, j in enumerate(chosen.tolist()):
                is_fallback = not feasible[row].any()
                explored = j != int(greedy[row]) and not is_fallback
                how = "explored" if explored else "greedy"
                reason = (f"{names[j]!r} ({how}, p={propensity[row]:.3g}) by {type(self).__name__}: estimated "
                          f"{S[row, j]:.4g} - {lam:.4g}·{C[row, j]:.4g}")
                if is_fallback:
                    reason = f"no candidate within budget {budgets[row]:.6g} $; declared fallback {names[j]!r}"
                decision = RoutingDecision(
                    candidate=names[j], index=j, quality=dict(zip(names, S[row].tolist())),
                    cost=dict(zip(names, C[row].tolist())), lam=float(lam),
                    budget=None if budgets is None else float(budgets[row]), reason=reason, router=self.name,
                    fallback=is_fallback,
                    metadata={"propensity": float(propensity[row]), "explored": bool(explored),
                              "greedy": names[int(greedy[row])]})
                self._pending.add(decision.decision_id, PendingDecision(
                    j, None if ctx is None else ctx[row].copy(), float(propensity[row]), float(lam),
                    float(C[row, j]), self._pending.clock()))
                decisions.append(decision)
        from rag_routing.routers.support import annotate

        return annotate(self, decisions, p)

    # ------------------------------------------------------------------ feedback
    @property
    def n_pending(self) -> int:
        """Decisions waiting for feedback."""
        return len(self._pending)

    def update(self, decision_id: str, reward: float | None = None, *, quality: float | None = None,
               cost: float | None = None) -> float:
        """Feedback for a decision made by :meth:`route`; returns the reward learned from.

        Either ``reward`` (already ``quality - λ·cost``) or ``quality`` with the observed ``cost`` in US $
        (default: the predicted cost of the chosen candidate). λ is the one the decision was made with."""
        self._check_fitted()
        with self._lock:
            pending = self._pending.get(decision_id)
            r = rewards_from_feedback(reward, quality, cost, np.array([pending.lam]),
                                      np.array([pending.predicted_cost]))
            if r.size != 1:
                raise InvalidInputError("update takes one reward per decision")
            self._pending.pop(decision_id)
            ctx = None if pending.context is None else pending.context[None, :]
            self._apply(np.array([pending.arm]), ctx, r, np.array([pending.lam]), np.array([pending.predicted_cost]))
        return float(r[0])

    def learn(self, X: RouterInput, arms: Sequence[int | str] | np.ndarray, rewards: Any = None, *,
              quality: Any = None, cost: Any = None, lam: float | None = None) -> np.ndarray:
        """Learn from observations without pending decisions: candidate ``arms`` (indices or names) were run
        on the queries ``X`` and gave ``rewards`` (or ``quality`` and ``cost``). Returns the rewards used."""
        self._check_fitted()
        ctx, n = self._inputs(X)
        idx = np.array([self._candidate_position(a) if isinstance(a, str) else int(a) for a in np.ravel(arms)])
        if idx.shape != (n,):
            raise InvalidInputError(f"{idx.size} arms for {n} queries")
        if ((idx < 0) | (idx >= len(self.candidates_))).any():
            raise UnknownCandidateError(f"arm indices out of range for {len(self.candidates_)} candidates")
        lam_value = self.lam if lam is None else lam
        lams = np.full(n, float(lam_value))
        predicted = self.mean_cost_[idx]
        r = rewards_from_feedback(rewards, quality, cost, lams, predicted)
        if r.shape != (n,):
            raise InvalidInputError(f"{r.size} rewards for {n} queries")
        with self._lock:
            self._apply(idx, ctx, r, lams, predicted)
        return r

    def _apply(self, arms: np.ndarray, ctx: np.ndarray | None, rewards: np.ndarray, lams: np.ndarray,
               predicted: np.ndarray) -> None:
        targets = rewards + lams * predicted

        def change(state: Arrays) -> None:
            for i, arm in enumerate(arms.tolist()):
                self._learn_one(state, arm, None if ctx is None else ctx[i], float(targets[i]), float(rewards[i]))

        self._mutate(change)

    # ------------------------------------------------------------------ candidate pool
    def add_candidate(self, name: str, outcomes: Sequence[float] | np.ndarray | None = None,
                      queries_or_features: RouterInput | None = None, *, cost: float) -> BanditRouter:
        """A new arm, with the prior state; ``cost`` is its expected US $ per call. With ``outcomes`` (its
        quality on ``queries_or_features``, e.g. anchor queries; NaN = unknown) it also learns from those,
        as :class:`~rag_routing.routers.similarity.ClusterRouter.add_candidate` does. Returns ``self``."""
        self._check_fitted()
        if not isinstance(name, str) or not name or name in self.candidates_:
            raise InvalidInputError(f"candidate name must be new and non-empty; got {name!r}")
        cost = check_float("cost", cost)
        if outcomes is not None and queries_or_features is None:
            raise InvalidInputError("outcomes need the queries (or features) they were measured on")
        with self._lock:
            self._mutate(self._add_arm)
            self.candidates_ = [*self.candidates_, name]
            self.mean_cost_ = np.append(self.mean_cost_, cost)
        if outcomes is not None:
            y = np.asarray(outcomes, dtype=np.float64).ravel()
            known = ~np.isnan(y)
            X = queries_or_features
            if not known.all():
                X = self._rows(X, np.flatnonzero(known))
            self.learn(X, [name] * int(known.sum()), quality=y[known], cost=np.full(int(known.sum()), cost))
        return self

    @staticmethod
    def _rows(X: RouterInput, rows: np.ndarray) -> RouterInput:
        if isinstance(X, RoutingDataset):
            return X.subset(rows)
        if isinstance(X, np.ndarray):
            return X[rows]
        items = [X] if isinstance(X, str) else list(X)
        return [items[i] for i in rows]

    def remove_candidate(self, name: str) -> BanditRouter:
        """Forget arm ``name``; pending decisions that chose it can no longer be updated."""
        self._check_fitted()
        j = self._candidate_position(name)
        if len(self.candidates_) == 1 or self.fallback == name:
            raise InvalidInputError(f"cannot remove {name!r}: it is the last candidate or the fallback")
        with self._lock:
            self._mutate(lambda state: self._remove_arm(state, j))
            self.candidates_ = [c for c in self.candidates_ if c != name]
            self.mean_cost_ = np.delete(self.mean_cost_, j)
            self._pending.drop_arm(j)
        return self

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        with self._lock:
            state = self._current_state()
            config, context = self._context_state()
            arrays = {f"arm.{k}": v for k, v in state.items()}
            arrays.update({f"context.{k}": v for k, v in context.items()})
            return {"rng": self.rng_.bit_generator.state, **config}, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self._set_context_state(config, {k[8:]: v for k, v in arrays.items() if k.startswith("context.")})
        state = {k[4:]: v for k, v in arrays.items() if k.startswith("arm.")}
        self.state_ = self._check_state(state, "saved router")
        self.rng_ = np.random.default_rng(self.seed)
        try:
            self.rng_.bit_generator.state = config["rng"]
        except (TypeError, ValueError, KeyError) as exc:
            raise CorruptStateError(f"saved random-generator state is malformed ({exc})") from exc


__all__ = ["BanditRouter", "argmax_utility"]
