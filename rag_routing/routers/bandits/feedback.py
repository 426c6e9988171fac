"""Feedback plumbing of the bandit routers: decisions waiting for a reward, and rewards from feedback.

:class:`PendingDecisions` is a bounded LRU (with an optional time-to-live) of what ``update`` needs about each
decision made by ``route``: the chosen arm, its context vector, the probability the policy gave it, λ and the
predicted cost. :func:`rewards_from_feedback` turns ``reward=`` or ``quality=``/``cost=`` into rewards
``quality - λ·cost``, refusing NaN and infinity.

Example:
    >>> pending = PendingDecisions(max_pending=2)
    >>> for i in range(3):
    ...     pending.add(f"d{i}", PendingDecision(0, None, 1.0, 0.0, 0.0, created=0.0))
    >>> len(pending), "d0" in pending
    (2, False)
    >>> rewards_from_feedback(None, [1.0], [0.02], lam=np.array([10.0]), predicted_cost=np.array([0.01])).tolist()
    [0.8]
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError


class UnknownDecisionError(InvalidInputError):
    """Feedback for a decision this router does not hold (never routed here, already updated, or expired)."""


@dataclass(frozen=True)
class PendingDecision:
    """What ``update`` needs about a decision made by ``route``."""

    arm: int
    context: np.ndarray | None
    propensity: float
    lam: float
    predicted_cost: float
    created: float


class PendingDecisions:
    """Decisions awaiting feedback: least recently made forgotten first beyond ``max_pending``; older than
    ``ttl_s`` seconds (``None``: no limit) refused. Not thread-safe on its own: the router holds its lock."""

    def __init__(self, max_pending: int, ttl_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.max_pending = max_pending
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: OrderedDict[str, PendingDecision] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, decision_id: object) -> bool:
        return decision_id in self._items

    def add(self, decision_id: str, pending: PendingDecision) -> None:
        self._items[decision_id] = pending
        while len(self._items) > self.max_pending:
            self._items.popitem(last=False)

    def get(self, decision_id: str) -> PendingDecision:
        """The pending decision, or :class:`UnknownDecisionError` saying why there is none."""
        if not isinstance(decision_id, str):
            raise InvalidInputError(f"decision ids are strings (RoutingDecision.decision_id), got "
                                    f"{type(decision_id).__name__}")
        pending = self._items.get(decision_id)
        if pending is not None and self.ttl_s is not None and self.clock() - pending.created > self.ttl_s:
            del self._items[decision_id]
            raise UnknownDecisionError(f"decision {decision_id!r} expired: feedback must arrive within "
                                       f"pending_ttl_s={self.ttl_s} s of routing")
        if pending is None:
            raise UnknownDecisionError(
                f"unknown decision id {decision_id!r}: not routed by this router, already updated, or evicted "
                f"(max_pending={self.max_pending}); send feedback to the process that routed it")
        return pending

    def pop(self, decision_id: str) -> PendingDecision:
        pending = self.get(decision_id)
        del self._items[decision_id]
        return pending

    def clear(self) -> None:
        self._items.clear()

    def drop_arm(self, arm: int) -> None:
        """Forget decisions that chose ``arm`` and renumber those above it (the arm was removed)."""
        kept: OrderedDict[str, PendingDecision] = OrderedDict()
        for key, p in self._items.items():
            if p.arm != arm:
                kept[key] = p if p.arm < arm else replace(p, arm=p.arm - 1)
        self._items = kept


def finite(values: Any, what: str) -> np.ndarray:
    """``values`` as a flat float array, or :class:`InvalidInputError` if any is NaN or infinite."""
    try:
        array = np.asarray(values, dtype=np.float64).ravel()
    except (ValueError, TypeError):
        raise InvalidInputError(f"{what} must be numbers, got {values!r}") from None
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{what} must be finite numbers (got NaN or infinity); send the observed value")
    return array


def rewards_from_feedback(reward: Any, quality: Any, cost: Any, lam: np.ndarray,
                          predicted_cost: np.ndarray) -> np.ndarray:
    """``reward`` as given, or ``quality - λ·cost`` (``cost`` defaults to the predicted cost)."""
    if reward is not None:
        if quality is not None or cost is not None:
            raise InvalidInputError("pass either reward or quality (and optionally cost), not both")
        return finite(reward, "reward")
    if quality is None:
        raise InvalidInputError("no feedback: pass reward=..., or quality=... (and cost=... in US $)")
    q = finite(quality, "quality")
    c = predicted_cost if cost is None else finite(cost, "cost")
    if (c < 0).any():
        raise InvalidInputError("cost must be >= 0 US $")
    return q - lam * c


__all__ = ["UnknownDecisionError", "PendingDecision", "PendingDecisions", "finite", "rewards_from_feedback"]
