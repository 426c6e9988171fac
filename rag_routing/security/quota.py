"""`ExpensiveRouteQuota`: at most N expensive routes per principal in a sliding time window.

A confounder gadget (Shafran et al. 2025) makes every query of an attacker look hard, so every query goes to
the expensive model. A per-principal quota on expensive routes caps what one key can make the operator spend,
whatever the router believes: past the quota a route is downgraded to the best cheaper candidate under the
decision's own rule, or refused with :class:`~rag_routing.security.errors.QuotaExceededError`.

The window lives in this process (one lock); for a fleet of servers, give each a share of the quota or put
a :class:`~rag_routing.ledger.budget.Budget` in expensive-route units on a shared store.

Example:
    >>> from rag_routing.decision import decide
    >>> quota = ExpensiveRouteQuota(max_routes=1, window_seconds=60)
    >>> d = decide([[0.1, 0.9], [0.1, 0.9]], [[0.01, 1.0]] * 2, ["small", "large"])
    >>> [quota.check_decision(x, "mallory").candidate for x in d], quota.remaining("mallory")
    (['large', 'small'], 0)
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

from rag_routing.decision import RoutingDecision
from rag_routing.errors import InvalidInputError
from rag_routing.security.errors import QuotaExceededError
from rag_routing.security.guards import RouteGuard, downgrade, expensive_set, note
from rag_routing.validation import check_choice


class ExpensiveRouteQuota(RouteGuard):
    """Per-principal quota of expensive routes over a sliding window (see the module docstring).

    Parameters:
        max_routes: expensive routes allowed per principal per window.
        window_seconds: the sliding window.
        expensive: candidate names that count as expensive (default: each decision's costliest candidate).
        action: ``"downgrade"`` (route to the best cheaper candidate) or ``"refuse"`` (raise).
        limits: per-principal overrides of ``max_routes``.
        clock: seconds, monotonic (injectable for tests).
    """

    name = "expensive_route_quota"

    def __init__(self, max_routes: int, window_seconds: float = 3600.0, *, expensive: Iterable[str] | None = None,
                 action: str = "downgrade", limits: dict[str, int] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        for who, limit in {"max_routes": max_routes, **(limits or {})}.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise InvalidInputError(f"quota for {who!r} must be an integer >= 0, got {limit!r}")
        if not isinstance(window_seconds, (int, float)) or not 0 < window_seconds < math.inf:
            raise InvalidInputError(f"window_seconds must be a positive number, got {window_seconds!r}")
        check_choice("action", action, ("downgrade", "refuse"))
        self.max_routes, self.window_seconds, self.action = max_routes, float(window_seconds), action
        self.expensive = None if expensive is None else frozenset(expensive)
        self.limits = dict(limits or {})
        self.clock = clock
        self._used: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def limit(self, principal: str) -> int:
        return self.limits.get(principal, self.max_routes)

    def _expire(self, used: deque[float], now: float) -> None:
        while used and used[0] <= now - self.window_seconds:
            used.popleft()

    def remaining(self, principal: str) -> int:
        """Expensive routes ``principal`` may still take in the current window."""
        with self._lock:
            used = self._used[principal]
            self._expire(used, self.clock())
            return max(0, self.limit(principal) - len(used))

    def check_decision(self, decision: RoutingDecision, principal: str) -> RoutingDecision:
        expensive = expensive_set(decision, self.expensive)
        if decision.candidate not in expensive:
            return decision
        with self._lock:
            used = self._used[principal]
            now = self.clock()
            self._expire(used, now)
            if len(used) < self.limit(principal):
                used.append(now)
                return decision
        reason = (f"principal {principal!r} used its quota of {self.limit(principal)} expensive routes per "
                  f"{self.window_seconds:g} s")
        if self.action == "refuse":
            raise QuotaExceededError(f"{reason}; wait for the window to pass or ask for a larger quota")
        out = downgrade(decision, expensive, reason, refuse=QuotaExceededError)
        note(out, self.name, "downgraded", original=decision.candidate)
        return out

    def reset(self, principal: str | None = None) -> None:
        """Forget the window of ``principal`` (of everyone when ``None``)."""
        with self._lock:
            if principal is None:
                self._used.clear()
            else:
                self._used.pop(principal, None)


__all__ = ["ExpensiveRouteQuota"]
