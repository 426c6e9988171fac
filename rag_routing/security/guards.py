"""`GuardedRouter`: any router behind a chain of control-plane guards, with a ``principal`` on every route.

Routers are the control plane of an LLM system (Shafran et al. 2025, "Rerouting LLM routers"): whoever can
steer them steers the spend. A guard sees each query before routing (:meth:`RouteGuard.check_query`: it may
strip a suspicious suffix, flag it or refuse it) and each decision after (:meth:`RouteGuard.check_decision`:
it may count it, raise an alarm, downgrade it to a cheaper candidate or refuse it). What every guard did is
written to ``decision.metadata["guards"]``, so the ledger and the HTTP server can show it.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.baselines import BestSingleRouter
    >>> from rag_routing.security import ExpensiveRouteQuota
    >>> ds = RoutingDataset(["q1", "q2"], ["small", "large"], [[0.0, 1.0], [0.0, 1.0]], [[0.1, 1.0]] * 2)
    >>> guarded = GuardedRouter(BestSingleRouter().fit(ds), [ExpensiveRouteQuota(max_routes=1)])
    >>> [d.candidate for d in guarded.route(["a", "b", "c"], principal="mallory")]
    ['large', 'small', 'small']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from rag_routing.decision import RoutingDecision
from rag_routing.errors import InvalidInputError, NoRouteError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput, validate_queries
from rag_routing.security.identities import NewKeyPool

DEFAULT_PRINCIPAL = "anonymous"


class RouteGuard:
    """Base class of guards: override :meth:`check_query`, :meth:`check_decision` and/or :meth:`prepare`."""

    name = "guard"

    def prepare(self, router: Router, dataset: RoutingDataset) -> None:
        """Learn what clean traffic looks like (called by :meth:`GuardedRouter.fit`); default: nothing."""

    def check_query(self, query: str, principal: str) -> tuple[str, dict[str, Any] | None]:
        """The query to route (possibly cleaned) and a note of what was done (``None``: nothing)."""
        return query, None

    def check_decision(self, decision: RoutingDecision, principal: str) -> RoutingDecision:
        """The decision to act on (possibly downgraded; raise a typed error to refuse)."""
        return decision


def note(decision: RoutingDecision, guard: str, action: str, **detail: Any) -> None:
    """Append what ``guard`` did to ``decision.metadata["guards"]``."""
    decision.metadata.setdefault("guards", []).append({"guard": guard, "action": action, **detail})


def expensive_set(decision: RoutingDecision, names: Iterable[str] | None) -> set[str]:
    """``names``, or the candidate with the highest predicted cost in ``decision`` when ``names`` is None."""
    if names is not None:
        return set(names)
    return {max(decision.cost, key=decision.cost.__getitem__)}


def downgrade(decision: RoutingDecision, forbidden: set[str], reason: str, *,
              refuse: type[Exception] = NoRouteError) -> RoutingDecision:
    """The best candidate outside ``forbidden`` under the decision's own rule (``S - λC`` within budget).

    Raises ``refuse`` (a typed error) when every allowed candidate is over the budget or none is left.
    """
    allowed = [c for c in decision.quality if c not in forbidden
               and (decision.budget is None or decision.cost[c] <= decision.budget)]
    if not allowed:
        raise refuse(f"{reason}; no cheaper candidate is left to downgrade to")
    best = max(allowed, key=lambda c: (decision.quality[c] - decision.lam * decision.cost[c], -decision.cost[c]))
    names = list(decision.quality)
    out = replace(decision, candidate=best, index=names.index(best), metadata=dict(decision.metadata),
                  reason=f"{reason}; downgraded from {decision.candidate!r} to {best!r}")
    out.metadata["downgraded_from"] = decision.candidate
    return out


class GuardedRouter(Router):
    """A router behind guards (see the module docstring); a :class:`Router` itself.

    Parameters:
        router: the router to protect (fitted, or fitted by :meth:`fit`).
        guards: applied in order: every ``check_query`` before routing, every ``check_decision`` after.
        default_principal: the principal of calls that name none.
        identities: a :class:`~rag_routing.security.identities.NewKeyPool`: keys without standing reach the
            guards as one shared principal, so a campaign spread over many fresh keys meets one key's limits.
    """

    name = "guarded"
    uses_features = False

    def __init__(self, router: Router, guards: Sequence[RouteGuard] = (), *,
                 default_principal: str = DEFAULT_PRINCIPAL, identities: NewKeyPool | None = None):
        if not isinstance(router, Router):
            raise InvalidInputError(f"GuardedRouter wraps a Router, got {type(router).__name__}")
        for guard in guards:
            if not isinstance(guard, RouteGuard):
                raise InvalidInputError(f"guards must be RouteGuard instances, got {type(guard).__name__}")
        super().__init__(lam=router.lam, budget=router.budget, fallback=router.fallback)
        self.router = router
        if identities is not None and not isinstance(identities, NewKeyPool):
            raise InvalidInputError(f"identities must be a NewKeyPool, got {type(identities).__name__}")
        self.guards = list(guards)
        self.default_principal = default_principal
        self.identities = identities

    # -- the wrapped router's state ---------------------------------------------------------------------------
    @property
    def candidates_(self) -> list[str]:  # type: ignore[override]
        if not self.router.is_fitted:
            raise AttributeError("candidates_")
        return self.router.candidates_

    @property
    def mean_cost_(self) -> np.ndarray:  # type: ignore[override]
        return self.router.mean_cost_

    def fit(self, dataset: RoutingDataset, calibration: RoutingDataset | None = None) -> GuardedRouter:
        """Fit the wrapped router on ``dataset``, then let every guard learn clean traffic from
        ``calibration`` (default ``dataset``; prefer held-out queries: memory-based routers route their own
        training queries optimistically, which would bias a routing-shift reference)."""
        self.router.fit(dataset)
        self.prepare(dataset if calibration is None else calibration)
        return self

    def prepare(self, dataset: RoutingDataset) -> GuardedRouter:
        """Let every guard learn clean traffic from ``dataset`` (the wrapped router is already fitted)."""
        self.router._check_fitted()
        for guard in self.guards:
            guard.prepare(self.router, dataset)
        return self

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:  # pragma: no cover
        raise NotImplementedError  # fit() is overridden

    # -- guarded inputs -----------------------------------------------------------------------------------------
    def clean(self, X: RouterInput, principal: str | None = None) -> tuple[RouterInput, list[list[dict[str, Any]]]]:
        """``X`` after every guard's ``check_query`` and, per query, the notes of what was done."""
        principal = principal or self.default_principal
        if isinstance(X, np.ndarray):
            return X, [[] for _ in range(1 if X.ndim == 1 else X.shape[0])]
        queries = X.queries if isinstance(X, RoutingDataset) else validate_queries(X)
        cleaned, notes = [], []
        for query in queries:
            per_query = []
            for guard in self.guards:
                query, done = guard.check_query(query, principal)
                if done is not None:
                    per_query.append({"guard": guard.name, **done})
            cleaned.append(query)
            notes.append(per_query)
        if isinstance(X, RoutingDataset):
            if cleaned == X.queries:
                return X, notes
            return replace(X, queries=cleaned, embeddings=None, embedding_model=None), notes
        return cleaned, notes

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        cleaned, _ = self.clean(X)
        return self.router.predict_quality(cleaned)

    def predict_cost(self, X: RouterInput) -> np.ndarray:
        return self.router.predict_cost(X)

    def support(self, X: RouterInput) -> np.ndarray:
        """The wrapped router's support p-values of the cleaned queries."""
        return self.router.support(self.clean(X)[0])

    def out_of_support(self, X: RouterInput, alpha: float | None = None) -> np.ndarray:
        """The wrapped router's out-of-support flags of the cleaned queries."""
        return self.router.out_of_support(self.clean(X)[0], alpha)

    # -- guarded routes -----------------------------------------------------------------------------------------
    def route(self, X: RouterInput, lam: float | None = None, budget: float | np.ndarray | None = None, *,
              principal: str | None = None) -> list[RoutingDecision]:
        """Route ``X`` for ``principal``: guards clean the queries, the router decides, guards check decisions."""
        principal = principal or self.default_principal
        if not isinstance(principal, str):
            raise InvalidInputError(f"principal must be a string, got {type(principal).__name__}")
        self._check_fitted()
        n_queries = self._n_rows(X)
        acting = principal if self.identities is None else self.identities.observe(principal, max(1, n_queries))
        cleaned, notes = self.clean(X, acting)
        lam = self.lam if lam is None else lam
        budget = self.budget if budget is None else budget
        decisions = self.router.route(cleaned, lam, budget)
        out = []
        for decision, query_notes in zip(decisions, notes):
            decision.router = f"guarded:{decision.router}"
            if query_notes:
                decision.metadata.setdefault("guards", []).extend(query_notes)
            for guard in self.guards:
                decision = guard.check_decision(decision, acting)
            decision.metadata["principal"] = principal
            if acting != principal:
                decision.metadata["acting_as"] = acting
            out.append(decision)
        return out

    def route_one(self, query: str, lam: float | None = None, budget: float | None = None, *,
                  principal: str | None = None) -> RoutingDecision:
        return self.route([query], lam, budget, principal=principal)[0]

    def route_indices(self, X: RouterInput, lam: float | None = None, budget: float | np.ndarray | None = None,
                      *, principal: str | None = None) -> np.ndarray:
        return np.array([d.index for d in self.route(X, lam, budget, principal=principal)], dtype=np.int64)

    def save(self, path: Any) -> Any:
        raise InvalidInputError("save the wrapped router (guarded.router.save(path)); guards hold live "
                                "per-principal state and are rebuilt at start-up")

    def __repr__(self) -> str:
        return f"GuardedRouter({self.router!r}, guards={[g.name for g in self.guards]})"


__all__ = ["GuardedRouter", "RouteGuard", "downgrade", "note", "expensive_set", "DEFAULT_PRINCIPAL"]
