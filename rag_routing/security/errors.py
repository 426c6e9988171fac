"""Typed errors of the control-plane guards (all :class:`~rag_routing.errors.RagRoutingError` subclasses)."""

from __future__ import annotations

from rag_routing.errors import BudgetExceededError, InvalidInputError


class QuotaExceededError(BudgetExceededError):
    """A principal used up its quota of expensive routes and the guard refuses rather than downgrades."""


class SuspiciousQueryError(InvalidInputError):
    """A query looks adversarial (e.g. a confounder gadget) and the guard is set to refuse it."""


class RoutingAlarmError(BudgetExceededError):
    """A principal's routing distribution shifted (an alarm is active) and the guard refuses expensive routes."""


__all__ = ["QuotaExceededError", "SuspiciousQueryError", "RoutingAlarmError"]
