"""`RoutingShiftAlarm`: an alarm when a principal's routing distribution drifts from the reference.

Each principal's last ``window`` routes are compared with the reference distribution (the router's routes on
clean traffic, learned by :meth:`prepare`, or given) with Pearson's chi-square goodness-of-fit test. When the
p-value falls below ``alpha`` (and, with ``direction="expensive"``, the principal goes to the expensive
candidates *more* often than the reference), a :class:`RoutingAlarm` is recorded, ``on_alarm`` is called
once per episode, and with ``action="downgrade"`` / ``"refuse"`` the principal's expensive routes are
downgraded / refused while the alarm is active. The window counts what the *router* chose, before any
downgrade, so an alarm stays on as long as the traffic stays suspicious.

Example:
    >>> from rag_routing.decision import decide
    >>> alarm = RoutingShiftAlarm({"small": 0.8, "large": 0.2}, window=20, min_requests=10, alpha=0.01)
    >>> for d in decide([[0.1, 0.9]] * 12, [[0.01, 1.0]] * 12, ["small", "large"]):
    ...     _ = alarm.check_decision(d, "mallory")
    >>> alarm.active("mallory"), alarm.alarms[0].principal, alarm.alarms[0].requests
    (True, 'mallory', 10)
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from rag_routing.decision import RoutingDecision
from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router
from rag_routing.security.errors import RoutingAlarmError
from rag_routing.security.guards import RouteGuard, downgrade, expensive_set, note
from rag_routing.validation import check_choice


@dataclass(frozen=True)
class RoutingAlarm:
    """One alarm episode: who, when, and the evidence."""

    principal: str
    statistic: float
    p_value: float
    observed: dict[str, float]
    expected: dict[str, float]
    requests: int
    at: float = field(default_factory=time.time)


class RoutingShiftAlarm(RouteGuard):
    """Chi-square test of each principal's recent routes against a reference (see the module docstring).

    Parameters:
        reference: candidate -> share on clean traffic; ``None`` = learn it in :meth:`prepare`.
        window: routes per principal kept for the test.
        min_requests: no test before this many routes.
        alpha: significance level of one test (tests repeat per route: keep it small).
        direction: ``"expensive"`` (alarm only when expensive routes are over-represented) or ``"any"``.
        action: ``"observe"`` (record only), ``"downgrade"`` or ``"refuse"`` expensive routes while active.
        expensive: expensive candidate names (default: each decision's costliest candidate).
        on_alarm: called with the :class:`RoutingAlarm` when an episode starts.
    """

    name = "routing_shift_alarm"

    def __init__(self, reference: Mapping[str, float] | None = None, *, window: int = 50, min_requests: int = 20,
                 alpha: float = 1e-3, direction: str = "expensive", action: str = "observe",
                 expensive: Iterable[str] | None = None, on_alarm: Callable[[RoutingAlarm], None] | None = None):
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise InvalidInputError(f"window must be an integer >= 2, got {window!r}")
        if isinstance(min_requests, bool) or not isinstance(min_requests, int) or not 1 <= min_requests <= window:
            raise InvalidInputError(f"min_requests must be an integer in [1, window], got {min_requests!r}")
        if not isinstance(alpha, float) or not 0 < alpha < 1:
            raise InvalidInputError(f"alpha must be a float in (0, 1), got {alpha!r}")
        check_choice("direction", direction, ("expensive", "any"))
        if action not in ("observe", "downgrade", "refuse"):
            raise InvalidInputError(f"action must be 'observe', 'downgrade' or 'refuse', got {action!r}")
        self.reference = None if reference is None else self._check_reference(reference)
        self.window, self.min_requests, self.alpha = window, min_requests, alpha
        self.direction, self.action, self.on_alarm = direction, action, on_alarm
        self.expensive = None if expensive is None else frozenset(expensive)
        self.alarms: list[RoutingAlarm] = []
        self._recent: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=self.window))
        self._active: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def _check_reference(reference: Mapping[str, float]) -> dict[str, float]:
        shares = {str(k): float(v) for k, v in reference.items()}
        total = sum(shares.values())
        if not shares or any(not np.isfinite(v) or v < 0 for v in shares.values()) or total <= 0:
            raise InvalidInputError(f"reference must map candidates to shares >= 0 with a positive sum, "
                                    f"got {reference}")
        return {k: v / total for k, v in shares.items()}

    def prepare(self, router: Router, dataset: RoutingDataset) -> None:
        """Learn the reference: the router's route shares on ``dataset`` (clean traffic)."""
        if self.reference is not None:
            return
        chosen = router.route_indices(dataset)
        counts = np.bincount(chosen, minlength=len(router.candidates_))
        self.reference = self._check_reference(dict(zip(router.candidates_, counts.tolist())))

    def active(self, principal: str) -> bool:
        """Whether an alarm is active for ``principal``."""
        with self._lock:
            return principal in self._active

    def test(self, principal: str) -> tuple[float, float, dict[str, float]]:
        """(chi-square statistic, p-value, observed shares) of ``principal``'s current window."""
        from scipy.stats import chi2

        if self.reference is None:
            raise NotFittedError("RoutingShiftAlarm has no reference; pass one or call prepare(router, dataset)")
        with self._lock:
            recent = list(self._recent[principal])
        names = sorted(set(self.reference) | set(recent))
        n = len(recent)
        observed = np.array([recent.count(c) for c in names], dtype=np.float64)
        # A small floor keeps a candidate the reference never used from dividing by zero.
        ref = np.array([self.reference.get(c, 0.0) for c in names]) + 1e-3
        expected = n * ref / ref.sum()
        statistic = float(((observed - expected) ** 2 / expected).sum())
        p_value = float(chi2.sf(statistic, max(1, len(names) - 1)))
        return statistic, p_value, dict(zip(names, (observed / max(n, 1)).tolist()))

    def check_decision(self, decision: RoutingDecision, principal: str) -> RoutingDecision:
        expensive = expensive_set(decision, self.expensive)
        with self._lock:
            recent = self._recent[principal]
            recent.append(decision.candidate)
            n = len(recent)
        if n >= self.min_requests:
            self._update(principal, expensive, n)
        if principal not in self._active:
            return decision
        note(decision, self.name, "alarm")
        if decision.candidate not in expensive or self.action == "observe":
            return decision
        reason = f"routing of principal {principal!r} shifted towards expensive candidates (alarm active)"
        if self.action == "refuse":
            raise RoutingAlarmError(f"{reason}; the expensive route is refused until the traffic looks normal")
        out = downgrade(decision, expensive, reason, refuse=RoutingAlarmError)
        note(out, self.name, "downgraded", original=decision.candidate)
        return out

    def _update(self, principal: str, expensive: set[str], n: int) -> None:
        statistic, p_value, observed = self.test(principal)
        assert self.reference is not None
        shifted = p_value < self.alpha
        if shifted and self.direction == "expensive":
            shifted = sum(observed.get(c, 0.0) for c in expensive) > sum(self.reference.get(c, 0.0) for c in expensive)
        started = None
        with self._lock:
            if shifted and principal not in self._active:
                self._active.add(principal)
                started = RoutingAlarm(principal, statistic, p_value, observed, dict(self.reference), n)
                self.alarms.append(started)
            elif not shifted:
                self._active.discard(principal)
        if started is not None and self.on_alarm is not None:
            self.on_alarm(started)

    def reset(self, principal: str | None = None) -> None:
        """Forget ``principal``'s window and alarm (everyone's when ``None``)."""
        with self._lock:
            if principal is None:
                self._recent.clear()
                self._active.clear()
            else:
                self._recent.pop(principal, None)
                self._active.discard(principal)


__all__ = ["RoutingShiftAlarm", "RoutingAlarm"]
