"""`FeedbackSanitizer`: rate-limit, clip and outlier-filter untrusted feedback before an online router learns.

An online router (a bandit) learns from whoever sends feedback; a poisoning campaign (many fake rewards that
favour one candidate; Zhao et al. 2025, survey §5.2.5) steers it. The sanitizer stands in front of the
router's ``update``:

1. **rate limit**: at most ``max_updates`` accepted updates per principal per ``window_seconds``;
2. **clipping**: the value sent (``quality``, or ``reward``) is clipped to ``clip`` (e.g. ``[0, 1]``), so one
   message cannot carry the weight of thousands;
3. **outlier filter**: the value is compared with the recent accepted values for the same candidate
   (median and MAD); farther than ``outlier_z`` robust standard deviations (``1.4826·MAD``, floored at
   ``min_scale``) is rejected. It matters for unbounded rewards (``clip=None``); with clipped 0/1 rewards the
   floor keeps honest values in, and clipping plus the rate limit are the brake on a campaign.

``trusted`` principals (e.g. your own evaluation pipeline) skip the rate limit and the outlier filter (values
are still clipped). Route through :meth:`route` so the sanitizer knows which candidate each decision chose;
feedback for a decision it has not seen is still rate-limited and clipped.

Example:
    >>> from rag_routing.routers.bandits import EpsilonGreedyRouter
    >>> bandit = EpsilonGreedyRouter(epsilon=0.0, lam=1.0).start(["small", "large"], cost=[0.01, 0.2])
    >>> guard = FeedbackSanitizer(bandit, max_updates=2, window_seconds=60, clip=(0.0, 1.0))
    >>> verdicts = [guard.update(guard.route(["q"])[0].decision_id, quality=50.0, principal="mallory")
    ...             for _ in range(3)]
    >>> [(v.accepted, v.reason) for v in verdicts]
    [(True, 'clipped'), (True, 'clipped'), (False, 'rate_limited')]
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag_routing.decision import RoutingDecision
from rag_routing.errors import InvalidInputError
from rag_routing.security.identities import NewKeyPool


@dataclass(frozen=True)
class FeedbackVerdict:
    """What happened to one piece of feedback: ``reason`` is ``"accepted"``, ``"clipped"`` (accepted after
    clipping), ``"rate_limited"`` or ``"outlier"``; ``value`` is what the router learned from (``None`` if
    rejected)."""

    accepted: bool
    reason: str
    principal: str
    value: float | None = None


def _finite(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class FeedbackSanitizer:
    """Rate limit, clipping and outlier filter in front of an online router's ``update`` (see the module
    docstring).

    Parameters:
        router: an online router with ``route`` and ``update(decision_id, reward=None, *, quality, cost)``.
        max_updates, window_seconds: accepted updates per untrusted principal per sliding window.
        clip: ``(low, high)`` bounds of the value sent (``quality`` or ``reward``); ``None`` = no clipping.
        outlier_z: robust z-score beyond which a value is rejected; ``None`` = no outlier filter.
        min_history: accepted values needed for a candidate before the outlier filter applies.
        history: accepted values remembered per candidate.
        min_scale: floor of the robust standard deviation (so a run of identical values does not make
            every different value an outlier); default a quarter of the ``clip`` range (then 0/1 rewards
            are never outliers: clipping and the rate limit bound them), or 0.05 without clipping.
        trusted: principals that skip the rate limit and the outlier filter.
        max_tracked: decisions remembered from :meth:`route` (oldest forgotten first).
        clock: monotonic seconds (injectable for tests).
        identities: a :class:`~rag_routing.security.identities.NewKeyPool`: feedback from keys without standing
            shares one rate limit, so a campaign spread over many fresh keys gets one key's updates (share the
            pool with the ``GuardedRouter`` in front of the same router, so routes build standing too).
    """

    def __init__(self, router: Any, *, max_updates: int = 100, window_seconds: float = 3600.0,
                 clip: tuple[float, float] | None = (0.0, 1.0), outlier_z: float | None = 4.0,
                 min_history: int = 20, history: int = 500, min_scale: float | None = None, trusted: Iterable[str] = (),
                 max_tracked: int = 100_000, clock: Callable[[], float] = time.monotonic,
                 identities: NewKeyPool | None = None):
        if not callable(getattr(router, "update", None)) or not callable(getattr(router, "route", None)):
            raise InvalidInputError(f"FeedbackSanitizer wraps an online router with route() and update(); got "
                                    f"{type(router).__name__}")
        if isinstance(max_updates, bool) or not isinstance(max_updates, int) or max_updates < 0:
            raise InvalidInputError(f"max_updates must be an integer >= 0, got {max_updates!r}")
        if not isinstance(window_seconds, (int, float)) or not 0 < window_seconds < math.inf:
            raise InvalidInputError(f"window_seconds must be a positive number, got {window_seconds!r}")
        if clip is not None and (len(clip) != 2 or not all(math.isfinite(c) for c in clip) or clip[0] > clip[1]):
            raise InvalidInputError(f"clip must be (low, high) with low <= high, got {clip!r}")
        if outlier_z is not None and not outlier_z > 0:
            raise InvalidInputError(f"outlier_z must be > 0 or None, got {outlier_z!r}")
        if identities is not None and not isinstance(identities, NewKeyPool):
            raise InvalidInputError(f"identities must be a NewKeyPool, got {type(identities).__name__}")
        self.identities = identities
        self.router, self.max_updates, self.window_seconds = router, max_updates, float(window_seconds)
        if min_scale is None:
            min_scale = 0.25 * (clip[1] - clip[0]) if clip is not None and clip[1] > clip[0] else 0.05
        self.clip, self.outlier_z, self.min_history, self.min_scale = clip, outlier_z, min_history, min_scale
        self.trusted = frozenset(trusted)
        self.clock = clock
        self._accepted: dict[str, deque[float]] = defaultdict(deque)
        self._values: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=history))
        self._chosen: OrderedDict[str, str] = OrderedDict()
        self._max_tracked = max_tracked
        self._lock = threading.Lock()
        self.counts: dict[str, int] = defaultdict(int)

    def route(self, X: Any, *args: Any, **kwargs: Any) -> list[RoutingDecision]:
        """The router's ``route``, remembering which candidate each decision chose."""
        decisions = self.router.route(X, *args, **kwargs)
        with self._lock:
            for d in decisions:
                self._chosen[d.decision_id] = d.candidate
            while len(self._chosen) > self._max_tracked:
                self._chosen.popitem(last=False)
        return decisions

    def _rate_limited(self, principal: str, now: float) -> bool:
        used = self._accepted[principal]
        while used and used[0] <= now - self.window_seconds:
            used.popleft()
        return len(used) >= self.max_updates

    def _is_outlier(self, candidate: str | None, value: float) -> bool:
        if self.outlier_z is None or candidate is None:
            return False
        seen = self._values[candidate]
        if len(seen) < self.min_history:
            return False
        history = np.fromiter(seen, dtype=np.float64)
        median = float(np.median(history))
        scale = max(1.4826 * float(np.median(np.abs(history - median))), self.min_scale)
        return abs(value - median) / scale > self.outlier_z

    def update(self, decision_id: str, reward: float | None = None, *, quality: float | None = None,
               cost: float | None = None, principal: str) -> FeedbackVerdict:
        """Check one piece of feedback and, if it passes, hand it (clipped) to the router's ``update``."""
        if not isinstance(principal, str) or not principal:
            raise InvalidInputError("feedback needs the principal that sent it (principal='<key or user>')")
        reward, quality, cost = _finite(reward, "reward"), _finite(quality, "quality"), _finite(cost, "cost")
        if (reward is None) == (quality is None):
            raise InvalidInputError("pass exactly one of reward=... or quality=...")
        value = reward if reward is not None else quality
        assert value is not None
        clipped = value if self.clip is None else min(max(value, self.clip[0]), self.clip[1])
        trusted = principal in self.trusted
        # Keys without standing share one rate limit (the pool's name): many fresh keys weigh as one.
        acting = principal if trusted or self.identities is None else self.identities.observe(principal)
        with self._lock:
            candidate = self._chosen.get(decision_id) if isinstance(decision_id, str) else None
            now = self.clock()
            if not trusted and self._rate_limited(acting, now):
                return self._verdict(False, "rate_limited", principal)
            if not trusted and self._is_outlier(candidate, clipped):
                return self._verdict(False, "outlier", principal)
        if reward is not None:
            self.router.update(decision_id, clipped)
        else:
            self.router.update(decision_id, quality=clipped, cost=cost)
        with self._lock:
            if not trusted:
                self._accepted[acting].append(now)
            if candidate is not None:
                self._values[candidate].append(clipped)
                self._chosen.pop(decision_id, None)
            return self._verdict(True, "clipped" if clipped != value else "accepted", principal, clipped)

    def _verdict(self, accepted: bool, reason: str, principal: str, value: float | None = None) -> FeedbackVerdict:
        self.counts[reason] += 1  # called with the lock held
        return FeedbackVerdict(accepted, reason, principal, value)

    def __getattr__(self, name: str) -> Any:
        # Everything else (predict_quality, route_indices, candidates_, ...) is the router's.
        if name == "router":
            raise AttributeError(name)
        return getattr(self.router, name)


__all__ = ["FeedbackSanitizer", "FeedbackVerdict"]
