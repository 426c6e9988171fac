"""`DriftMonitor`: notice when a router's traffic is no longer what it was trained on — without labels.

The monitor keeps a window of the most recent decisions. Two signals:

* **support** (needs no labels): the share of queries whose support p-value
  (:meth:`rag_routing.routers.base.Router.support`) is below ``alpha``. In distribution that share is at most about
  ``alpha`` (the p-values are conformal); the alarm is raised when a one-sided binomial test says the window's
  share is above ``alpha`` at level ``level`` (and at least ``min_share``).
* **quality** (when feedback arrives): the chosen candidate's predicted quality against the observed one; the
  alarm is raised when the mean shortfall exceeds ``max_shortfall`` by more than ``z`` standard errors.

An alarm is a :class:`DriftAlarm` event passed to every observer (``on_alarm`` callbacks) and logged as a warning;
with ``switch_to_fallback=True`` it also sends every later query of the router to its prior choice (the best fixed
candidate under the same λ and budget, :func:`rag_routing.routers.support.force_prior`) until :meth:`reset`.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.similarity import KNNRouter
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(300, 8)).astype(np.float32)
    >>> ds = RoutingDataset([f"q{i}" for i in range(300)], ["a", "b"], (rng.random((300, 2)) < 0.7).astype(float),
    ...                     np.tile([0.001, 0.01], (300, 1)), embeddings=E, embedding_model="vectors")
    >>> from rag_routing.embeddings import PrecomputedFeaturizer
    >>> router = KNNRouter(featurizer=PrecomputedFeaturizer("vectors")).fit(ds)
    >>> monitor = DriftMonitor(router, window=100, switch_to_fallback=True)
    >>> _ = monitor.route(rng.normal(size=(100, 8)).astype(np.float32))
    >>> monitor.alarmed
    False
    >>> _ = monitor.route(rng.normal(loc=3.0, size=(100, 8)).astype(np.float32))   # a task it never saw
    >>> later = monitor.route(rng.normal(size=(1, 8)).astype(np.float32))
    >>> monitor.alarmed, monitor.alarms[0].kind, later[0].metadata["prior_forced"]
    (True, 'support', True)
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag_routing.decision import RoutingDecision
from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.routers.support import force_prior, guard_state

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftAlarm:
    """What the monitor saw when it raised the alarm."""

    kind: str  # "support" or "quality"
    message: str
    share_out_of_support: float
    window: int
    p_value: float
    switched_to_fallback: bool
    details: dict[str, Any] = field(default_factory=dict)


def binomial_tail(count: int, n: int, p: float) -> float:
    """``P(X >= count)`` for ``X ~ Binomial(n, p)`` (exact sum in log space)."""
    if count <= 0:
        return 1.0
    if count > n:
        return 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p)
            + (n - k) * math.log1p(-p) for k in range(count, n + 1)]
    top = max(logs)
    return float(min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs)))


class DriftMonitor:
    """A window of recent decisions of one router, with alarms (see module docstring).

    Args:
        router: a fitted router with a support estimate (any guarded learned router).
        window: decisions kept.
        alpha: a query with support p-value below it counts as out of support (default: the router's).
        level: significance of the binomial test on the window's out-of-support share.
        min_share: the share must also reach this before an alarm (guards against tiny excesses on big windows).
        min_queries: no alarm before this many decisions are in the window.
        max_shortfall: tolerated mean (predicted - observed) quality of the chosen candidates.
        min_feedback: feedback pairs needed before the quality alarm can fire.
        z: standard errors of the quality test.
        switch_to_fallback: on alarm, send every later query to the prior choice (until :meth:`reset`).
        on_alarm: callbacks ``f(alarm)``; more with :meth:`subscribe`.
    """

    def __init__(self, router: Any, *, window: int = 200, alpha: float | None = None, level: float = 1e-3,
                 min_share: float = 0.1, min_queries: int = 30, max_shortfall: float = 0.1, min_feedback: int = 30,
                 z: float = 3.0, switch_to_fallback: bool = False,
                 on_alarm: Iterable[Callable[[DriftAlarm], Any]] = ()):
        if not getattr(router, "is_fitted", False):
            raise NotFittedError("fit the router before monitoring it")
        if guard_state(router) is None or guard_state(router).support is None:
            raise InvalidInputError(f"{type(router).__name__} has no support estimate (it reads no query features, "
                                    "learns online, or was fitted with GuardSettings(support=False))")
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise InvalidInputError(f"window must be an integer >= 2, got {window!r}")
        self.router, self.window = router, window
        self.alpha = float(router.guard_settings.alpha if alpha is None else alpha)
        if not 0 < self.alpha < 1 or not 0 < level < 1:
            raise InvalidInputError("alpha and level must be in (0, 1)")
        self.level, self.min_share, self.min_queries = float(level), float(min_share), int(min_queries)
        self.max_shortfall, self.min_feedback, self.z = float(max_shortfall), int(min_feedback), float(z)
        self.switch_to_fallback = bool(switch_to_fallback)
        self._observers: list[Callable[[DriftAlarm], Any]] = list(on_alarm)
        self._p: deque[float] = deque(maxlen=window)
        self._predicted: dict[str, float] = {}
        self._gaps: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.alarms: list[DriftAlarm] = []

    # ------------------------------------------------------------------ input
    def subscribe(self, callback: Callable[[DriftAlarm], Any]) -> None:
        """Call ``callback(alarm)`` on every alarm."""
        self._observers.append(callback)

    def route(self, X: Any, lam: float | None = None, budget: Any = None) -> list[RoutingDecision]:
        """Route ``X`` with the router and observe the decisions; returns them."""
        decisions = self.router.route(X, lam, budget)
        self.observe(decisions)
        return decisions

    def observe(self, decisions: Iterable[RoutingDecision]) -> DriftAlarm | None:
        """Add decisions (their ``metadata["support_p"]``) to the window; returns the alarm raised, if any."""
        with self._lock:
            for d in decisions:
                p = d.metadata.get("support_p")
                if p is not None:
                    self._p.append(float(p))
                self._predicted[d.decision_id] = float(d.quality.get(d.candidate, np.nan))
                if len(self._predicted) > 4 * self.window:  # forget the oldest pending decisions
                    self._predicted.pop(next(iter(self._predicted)))
        return self._check_support()

    def observe_p_values(self, p_values: Iterable[float]) -> DriftAlarm | None:
        """Add support p-values directly (e.g. from ``router.support(X)``)."""
        with self._lock:
            self._p.extend(float(p) for p in p_values)
        return self._check_support()

    def feedback(self, decision_id: str, observed_quality: float) -> DriftAlarm | None:
        """The observed quality of an earlier decision's answer (optional: the support alarm needs none)."""
        with self._lock:
            predicted = self._predicted.pop(decision_id, None)
            if predicted is None or not np.isfinite(predicted):
                return None
            self._gaps.append(predicted - float(observed_quality))
        return self._check_quality()

    # ------------------------------------------------------------------ state
    @property
    def share_out_of_support(self) -> float:
        """Share of the window's queries with p-value below ``alpha`` (NaN when empty)."""
        values = np.asarray(self._p)
        return float((values < self.alpha).mean()) if values.size else float("nan")

    @property
    def alarmed(self) -> bool:
        return bool(self.alarms)

    def summary(self) -> dict[str, Any]:
        gaps = np.asarray(self._gaps)
        return {"window": len(self._p), "share_out_of_support": self.share_out_of_support, "alpha": self.alpha,
                "feedback": int(gaps.size), "mean_shortfall": float(gaps.mean()) if gaps.size else None,
                "alarms": len(self.alarms), "fallback_forced": bool(getattr(guard_state(self.router), "forced", 0))}

    def reset(self, *, restore_routing: bool = True) -> None:
        """Empty the window and the alarms; ``restore_routing`` ends a forced fallback."""
        with self._lock:
            self._p.clear()
            self._gaps.clear()
            self._predicted.clear()
            self.alarms.clear()
        if restore_routing:
            force_prior(self.router, False)

    # ------------------------------------------------------------------ alarms
    def _check_support(self) -> DriftAlarm | None:
        n = len(self._p)
        if n < self.min_queries:
            return None
        count = int((np.asarray(self._p) < self.alpha).sum())
        share, tail = count / n, binomial_tail(count, n, self.alpha)
        if tail >= self.level or share < self.min_share:
            return None
        message = (f"{share:.0%} of the last {n} queries are out of the router's support (expected about "
                   f"{self.alpha:.0%}; binomial p = {tail:.2g}): its traffic no longer looks like its training data")
        return self._raise("support", message, share, tail, {"count": count})

    def _check_quality(self) -> DriftAlarm | None:
        gaps = np.asarray(self._gaps)
        if gaps.size < self.min_feedback:
            return None
        mean, se = float(gaps.mean()), float(gaps.std(ddof=1) / math.sqrt(gaps.size)) if gaps.size > 1 else 0.0
        if mean - self.max_shortfall <= self.z * se:
            return None
        message = (f"the chosen candidates' observed quality is {mean:.3f} below the predicted on the last "
                   f"{gaps.size} answers with feedback (tolerance {self.max_shortfall:g})")
        return self._raise("quality", message, self.share_out_of_support, float("nan"),
                           {"mean_shortfall": mean, "standard_error": se})

    def _raise(self, kind: str, message: str, share: float, p_value: float,
               details: dict[str, Any]) -> DriftAlarm | None:
        if any(a.kind == kind for a in self.alarms):  # once per kind until reset()
            return None
        if self.switch_to_fallback:
            force_prior(self.router, True)
            message += "; every query now goes to the best fixed candidate (reset() to route per query again)"
        alarm = DriftAlarm(kind, message, share, len(self._p), p_value, self.switch_to_fallback, details)
        self.alarms.append(alarm)
        logger.warning("drift alarm (%s) on %s: %s", kind, type(self.router).__name__, message)
        for callback in list(self._observers):
            callback(alarm)
        return alarm


__all__ = ["DriftMonitor", "DriftAlarm", "binomial_tail"]
