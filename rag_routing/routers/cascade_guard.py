"""Cascades and judges under shift: notice when the judge no longer behaves as it did at calibration, and
never pay for several models to return a worse answer than the strongest one called.

A cascade trusts its judge; a judge trained on one task can be confidently wrong on another (on RouterBench,
trained on ARC-Challenge + Winogrande, the multi-choice cascade's judge scored the weakest model's out-of-domain
answers 0.96 on average and GPT-4's 0.007). Two guards, shared by :class:`~rag_routing.routers.cascade.CascadeRouter`
and :class:`~rag_routing.routers.multi_cascade.MultiChoiceCascade`:

* :class:`JudgeCalibration` keeps the judge's held-out scores of the first step at fit time (cross-fitted: each
  fold's judge scores rows it was not trained on). :meth:`JudgeCalibration.check` compares live (or test) scores
  with them — the acceptance rate at the threshold (a two-sided binomial test) and the whole distribution (a
  chi-square test on a ten-bin histogram, with a total-variation effect size). Both are label-free. When either rejects at ``level``, the cascade falls
  back to the *best fixed candidate*: the one with the best training-mean quality - λ·cost (what any
  pre-generation router falls back to out of support, :mod:`rag_routing.routers.support`).
* :func:`path_cap` bounds what a cascade may spend on one query: the most expensive single candidate's mean cost
  times ``1 + slack``; and :func:`keep_strongest` returns, among the answers paid for, the one of the candidate
  with the best training-mean quality whenever the judge would otherwise return a weaker candidate's answer
  after the strongest was paid for.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> cal = JudgeCalibration(rng.beta(5, 2, 500), threshold=0.5)
    >>> cal.check(rng.beta(5, 2, 200)).drifted
    False
    >>> shifted = cal.check(rng.beta(2, 5, 200))
    >>> shifted.drifted, shifted.acceptance_live < shifted.acceptance_calibration
    (True, True)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError


@dataclass(frozen=True)
class JudgeDrift:
    """The comparison of live judge scores with the calibration ones."""

    drifted: bool
    acceptance_calibration: float
    acceptance_live: float
    rate_p_value: float
    shape_distance: float
    shape_p_value: float
    n_live: int
    reason: str


#: Edges of the score histogram compared by the shape test (judge scores live in [0, 1]).
SCORE_BINS = np.linspace(0.0, 1.0, 11)


def shape_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Total-variation distance between the score histograms of ``a`` and ``b`` (ten bins of width 0.1) and the
    p-value of a chi-square test of homogeneity (Wilson-Hilferty approximation; no SciPy needed).

    Fixed bins, not a Kolmogorov-Smirnov test: a judge's held-out and in-sample confident scores (0.972 vs
    0.984) differ "significantly" for KS without meaning anything; a shift across bins is what changes decisions."""
    ha = np.histogram(np.clip(a, 0.0, 1.0), SCORE_BINS)[0].astype(float)
    hb = np.histogram(np.clip(b, 0.0, 1.0), SCORE_BINS)[0].astype(float)
    used = (ha + hb) > 0
    ha, hb = ha[used], hb[used]
    tv = 0.5 * float(np.abs(ha / ha.sum() - hb / hb.sum()).sum())
    k = ha.size - 1
    if k < 1:
        return tv, 1.0
    total = ha + hb
    expected_a, expected_b = total * ha.sum() / total.sum(), total * hb.sum() / total.sum()
    chi2 = float(((ha - expected_a) ** 2 / expected_a).sum() + ((hb - expected_b) ** 2 / expected_b).sum())
    z = ((chi2 / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return tv, float(0.5 * math.erfc(z / math.sqrt(2.0)))


def _binomial_two_sided(k: int, n: int, p: float) -> float:
    """Two-sided p-value of ``k`` successes in ``n`` trials at rate ``p`` (normal approximation, continuity
    corrected; exact enough for the windows used here)."""
    if n == 0:
        return 1.0
    p = min(max(p, 1e-6), 1 - 1e-6)
    z = (abs(k - n * p) - 0.5) / math.sqrt(n * p * (1 - p))
    return float(min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0))))


class JudgeCalibration:
    """Held-out judge scores at fit time, and the label-free check of live scores against them.

    Args:
        scores: the judge's held-out scores of the first step on the training rows.
        threshold: the acceptance threshold in force.
        level: significance of each test (the rate test and the KS test).
        min_live: fewer live scores than this: never drifted.
        min_gap: the acceptance rates, or the score histograms (total variation), must also differ by at least
            this much.
        in_sample: the final judge's scores of the same rows (it was trained on them). In distribution, live
            scores of the final judge lie between its held-out and in-sample scores, so the gaps between those
            two (plus 0.05) raise ``min_gap`` where they are larger: a confident judge is not a drifted one.
    """

    def __init__(self, scores: np.ndarray, threshold: float, *, level: float = 1e-3, min_live: int = 30,
                 min_gap: float = 0.15, in_sample: np.ndarray | None = None):
        self.scores = np.asarray(scores, dtype=np.float64).ravel()
        self.scores = self.scores[np.isfinite(self.scores)]
        if self.scores.size < 2:
            raise InvalidInputError("a judge calibration needs at least two held-out scores")
        self.threshold, self.level, self.min_live, self.min_gap = float(threshold), level, min_live, min_gap
        self.rate_gap = self.shape_gap = float(min_gap)
        if in_sample is not None:
            own = np.asarray(in_sample, dtype=np.float64).ravel()
            own = own[np.isfinite(own)]
            if own.size >= 2:
                self.shape_gap = max(self.shape_gap, shape_test(self.scores, own)[0] + 0.05)
                self.rate_gap = max(self.rate_gap, abs(float((own >= self.threshold).mean())
                                                       - self.acceptance()) + 0.05)

    def acceptance(self, threshold: float | None = None) -> float:
        return float((self.scores >= (self.threshold if threshold is None else threshold)).mean())

    def check(self, live: Any, threshold: float | None = None) -> JudgeDrift:
        """Compare ``live`` first-step scores with the calibration ones (see the module docstring)."""
        t = self.threshold if threshold is None else float(threshold)
        x = np.asarray(live, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        base = self.acceptance(t)
        if x.size < self.min_live:
            return JudgeDrift(False, base, float("nan"), 1.0, 0.0, 1.0, int(x.size),
                              f"{x.size} live judge scores < {self.min_live}: no comparison yet")
        rate = float((x >= t).mean())
        rate_p = _binomial_two_sided(int((x >= t).sum()), x.size, base)
        d, shape_p = shape_test(self.scores, x)
        by_rate = rate_p < self.level and abs(rate - base) >= self.rate_gap
        by_shape = shape_p < self.level and d >= self.shape_gap
        reason = (f"judge acceptance {rate:.0%} live vs {base:.0%} at calibration (p = {rate_p:.2g}); score "
                  f"histogram distance {d:.2f} (p = {shape_p:.2g}) over {x.size} answers")
        return JudgeDrift(by_rate or by_shape, base, rate, rate_p, d, shape_p, int(x.size), reason)

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"threshold": self.threshold, "level": self.level, "min_live": self.min_live,
                 "min_gap": self.min_gap, "rate_gap": self.rate_gap, "shape_gap": self.shape_gap},
                {"scores": self.scores})

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> JudgeCalibration:
        cal = cls(arrays["scores"], float(config["threshold"]), level=float(config["level"]),
                  min_live=int(config["min_live"]), min_gap=float(config["min_gap"]))
        cal.rate_gap = float(config.get("rate_gap", cal.min_gap))
        cal.shape_gap = float(config.get("shape_gap", cal.min_gap))
        return cal


class LiveJudgeWindow:
    """The last ``size`` first-step judge scores of an online cascade, checked against its calibration."""

    def __init__(self, size: int = 200):
        self.scores: deque[float] = deque(maxlen=size)
        self.drift: JudgeDrift | None = None

    def add(self, score: float, calibration: JudgeCalibration | None, threshold: float) -> JudgeDrift | None:
        self.scores.append(float(score))
        if calibration is not None and (self.drift is None or not self.drift.drifted):
            self.drift = calibration.check(np.asarray(self.scores), threshold)
        return self.drift

    @property
    def drifted(self) -> bool:
        return bool(self.drift is not None and self.drift.drifted)


def fixed_candidate(prior: np.ndarray, mean_cost: np.ndarray, lam: float, budget: float | None = None) -> int:
    """Index of the best fixed candidate: best training-mean quality - λ·cost (within ``budget``; ties to the
    cheaper)."""
    from rag_routing.decision import select

    return int(select(np.asarray(prior)[None, :], np.asarray(mean_cost)[None, :], lam,
                      None if budget is None else np.array([budget]), fallback=int(np.argmin(mean_cost)))[0])


def fixed_operating_points(test: Any, prior: np.ndarray, mean_cost: np.ndarray) -> Any:
    """The policy with no per-query signal on ``test``: for each λ of a grid, the best fixed candidate
    (an :class:`~rag_routing.evaluation.sweep.OperatingPoints`; ``test``'s candidates in ``prior``'s order)."""
    from rag_routing.evaluation.sweep import OperatingPoints, lambda_grid, realised

    lams = lambda_grid(np.asarray(prior)[None, :], np.asarray(mean_cost)[None, :])
    chosen = np.array([fixed_candidate(prior, mean_cost, float(lam)) for lam in lams])
    choices = np.repeat(chosen[:, None], len(test), axis=1)
    cost, quality = realised(test, choices)
    return OperatingPoints(lams=lams, choices=choices, cost=cost, quality=quality)


def path_cap(mean_cost: np.ndarray, slack: float) -> float:
    """Most a cascade may spend on one query: the most expensive single candidate's mean cost x (1 + slack)."""
    return float(np.max(mean_cost)) * (1.0 + float(slack))


def keep_strongest(called: np.ndarray, judged_best: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Per query, the candidate whose answer is returned: the judge's choice, unless a candidate with a higher
    training-mean quality was called too (paid for) — then the strongest called one.

    ``called``: ``(n, m)`` bool, who answered; ``judged_best``: ``(n,)`` the judge's choice; ``prior``: ``(m,)``.
    """
    strength = np.where(called, prior[None, :], -np.inf)
    strongest = strength.argmax(axis=1)
    weaker = prior[judged_best] < prior[strongest]
    return np.where(weaker, strongest, judged_best)


__all__ = ["JudgeCalibration", "JudgeDrift", "LiveJudgeWindow", "shape_test", "fixed_candidate",
           "fixed_operating_points", "path_cap", "keep_strongest"]
