"""Thresholds for judges: a target escalation rate, or the most escalation a budget pays for.

A cascade escalates an answer when its judge score is *below* the threshold. Ramírez et al. (2024) set the
token-margin threshold from a budget ("call the large model for the x % least certain answers"); AutoMix and
FrugalGPT tune it on a validation set. Both are here, computed on scores of a calibration set:

* :func:`threshold_for_escalation`: the threshold that escalates ``target`` of the answers (as close as ties
  allow);
* :func:`threshold_for_budget`: the highest threshold (the most escalation, so the best quality) whose mean
  cost per query stays within the budget;
* :func:`escalation_rate`: the share a threshold escalates.

Example:
    >>> scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    >>> t = threshold_for_escalation(scores, 0.3); t, escalation_rate(scores, t)
    (0.4, 0.3)
    >>> threshold_for_budget(scores, budget=1.5, accept_cost=1.0, escalate_cost=2.0)  # 20 % escalated; 30 % costs 1.6
    0.3
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError


def _scores(scores: Any) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0 or not np.isfinite(values).all():
        raise InvalidInputError("calibration needs a non-empty array of finite judge scores")
    return values


def _candidates(values: np.ndarray) -> np.ndarray:
    """Every threshold that makes a difference: the distinct scores, plus one above the maximum."""
    unique = np.unique(values)
    return np.concatenate([unique, [np.nextafter(unique[-1], np.inf)]])


def escalation_rate(scores: Any, threshold: float) -> float:
    """Share of scores below ``threshold`` (the answers a cascade would escalate)."""
    return float((_scores(scores) < threshold).mean())


def threshold_for_escalation(scores: Any, target: float) -> float:
    """The threshold whose escalation rate is closest to ``target`` (ties: the lower threshold)."""
    values = _scores(scores)
    if not 0.0 <= target <= 1.0:
        raise InvalidInputError(f"the target escalation rate must be in [0, 1], got {target}")
    options = _candidates(values)
    rates = (values[None, :] < options[:, None]).mean(axis=1)
    return float(options[int(np.argmin(np.abs(rates - target)))])


def threshold_for_budget(scores: Any, budget: float, accept_cost: Any = 0.0, escalate_cost: Any = 0.0) -> float:
    """The highest threshold whose mean cost ``accept_cost + escalated * escalate_cost`` fits ``budget``.

    Parameters:
        scores: judge scores of the first answer, one per calibration query.
        budget: mean US $ per query allowed.
        accept_cost: $ every query pays (the first call and the judge); scalar or per query.
        escalate_cost: extra $ of an escalated query; scalar or per query.

    Raises:
        InvalidInputError: when even escalating nothing costs more than the budget.
    """
    values = _scores(scores)
    base = np.broadcast_to(np.asarray(accept_cost, dtype=np.float64), values.shape)
    extra = np.broadcast_to(np.asarray(escalate_cost, dtype=np.float64), values.shape)
    if not (np.isfinite(base).all() and np.isfinite(extra).all()) or (base < 0).any() or (extra < 0).any():
        raise InvalidInputError("costs must be finite and >= 0")
    options = _candidates(values)
    cost = base.mean() + ((values[None, :] < options[:, None]) * extra[None, :]).mean(axis=1)
    fits = np.flatnonzero(cost <= budget + 1e-15)
    if fits.size == 0:
        raise InvalidInputError(f"even accepting every first answer costs {cost.min():.6g} $ per query on "
                                f"average, above the budget {budget:.6g} $; raise the budget or start cheaper")
    return float(options[int(fits.max())])


__all__ = ["threshold_for_escalation", "threshold_for_budget", "escalation_rate"]
