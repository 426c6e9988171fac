"""Score one router on a test set: its λ sweep through the metrics of :mod:`.metrics`.

:class:`Reference` holds what every row of a table is measured against (the cost range for AIQ, the best
single candidate, the strong and weak model of a two-candidate set); :func:`evaluate_router` and
:func:`evaluate_single` turn a router or a fixed candidate into a :class:`~.report.RouterResult`.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.baselines import OracleRouter
    >>> ds = RoutingDataset(["a", "b", "c", "d"], ["weak", "strong"],
    ...                     np.array([[1, 1], [0, 1], [1, 0], [0, 0]]), np.tile([1.0, 10.0], (4, 1)))
    >>> ref = Reference.from_test(ds)
    >>> ref.strong, ref.best_single
    ('strong', 'weak')
    >>> result = evaluate_router(OracleRouter().fit(ds), ds, ref, kind="baseline")
    >>> result.max_quality, result.saving_vs_best_single
    (0.75, 0.0)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.metrics import (
    CPT_LEVELS,
    aiq,
    apgr,
    cost_to_reach,
    cpt,
    non_decreasing_hull,
    routellm_curve,
)
from rag_routing.evaluation.report import RouterResult
from rag_routing.evaluation.sweep import DEFAULT_N_LAMBDAS, OperatingPoints, fixed_choice, sweep_router
from rag_routing.routers.base import Router


@dataclass(frozen=True)
class Reference:
    """What a table's rows are compared with, computed once from the test set.

    Attributes:
        single_cost, single_quality: each candidate's mean test cost and quality (known outcomes only).
        cost_range: ``(min, max)`` of ``single_cost``: the AIQ integration range, the same for every row.
        best_single: the candidate with the best mean test quality; several tied on quality: the cheapest of
            them (then the first listed).
        strong, weak: for two candidates, the more and the less expensive one.
    """

    candidates: tuple[str, ...]
    single_cost: np.ndarray
    single_quality: np.ndarray
    cost_range: tuple[float, float]
    best_single: str
    strong: str | None
    weak: str | None

    @classmethod
    def from_test(cls, test: RoutingDataset) -> Reference:
        cost = np.nan_to_num(test.mean_cost(), nan=0.0)
        quality = np.nan_to_num(test.mean_quality(), nan=0.0)
        best = int(np.lexsort((cost, -quality))[0])
        strong = weak = None
        if test.n_candidates == 2:
            s = int(np.lexsort((-quality, -cost))[0])
            strong, weak = test.candidates[s], test.candidates[1 - s]
        return cls(tuple(test.candidates), cost, quality, (float(cost.min()), float(cost.max())),
                   test.candidates[best], strong, weak)

    @property
    def best_quality(self) -> float:
        return float(self.single_quality[self.candidates.index(self.best_single)])

    @property
    def best_cost(self) -> float:
        return float(self.single_cost[self.candidates.index(self.best_single)])

    def quality_of(self, name: str) -> float:
        return float(self.single_quality[self.candidates.index(name)])

    @property
    def zero_router_aiq(self) -> float:
        """AIQ of the hull of the single candidates (RouterBench's "zero router": mixing fixed models)."""
        return aiq(self.single_cost, self.single_quality, self.cost_range)


def _two_model_metrics(scores: np.ndarray, test: RoutingDataset,
                       ref: Reference) -> tuple[float | None, dict[str, float] | None, dict[str, list[float]] | None]:
    assert ref.strong is not None and ref.weak is not None
    if float(np.ptp(scores)) == 0.0:  # a fixed choice: no threshold moves it, so no curve
        return None, None, None
    s, w = test.candidate_index(ref.strong), test.candidate_index(ref.weak)
    curve = routellm_curve(scores, test.quality[:, s], test.quality[:, w])
    strong_q, weak_q = ref.quality_of(ref.strong), ref.quality_of(ref.weak)
    if strong_q == weak_q:
        return None, None, None
    levels = {str(round(level * 100)): cpt(curve, weak_q, strong_q, level) for level in CPT_LEVELS}
    points = {"threshold": curve.thresholds.tolist(), "strong_share": curve.strong_share.tolist(),
              "performance": curve.performance.tolist()}
    return apgr(curve, weak_q, strong_q), levels, points


def summarise(name: str, kind: str, points: OperatingPoints, ref: Reference) -> RouterResult:
    """Metrics of one set of operating points (AIQ, best quality, cost to reach the best single)."""
    reach = cost_to_reach(points.cost, points.quality, ref.best_quality)
    saving = None
    if reach is not None and ref.best_cost > 0:
        saving = 1.0 - reach / ref.best_cost
    hull_cost, hull_quality = non_decreasing_hull(points.cost, points.quality)
    return RouterResult(
        router=name,
        kind=kind,
        aiq=aiq(points.cost, points.quality, ref.cost_range),
        max_quality=float(points.quality.max()),
        cost_at_best_single_quality=reach,
        saving_vs_best_single=saving,
        curve={"lam": points.lams.tolist(), "cost": points.cost.tolist(), "quality": points.quality.tolist()},
        hull={"cost": hull_cost.tolist(), "quality": hull_quality.tolist()},
    )


def evaluate_router(router: Router, test: RoutingDataset, ref: Reference, *, name: str | None = None,
                    kind: str = "router", n_lambdas: int = DEFAULT_N_LAMBDAS) -> RouterResult:
    """Sweep a fitted ``router`` on ``test`` and compute every metric (RouteLLM's too for two candidates)."""
    start = time.perf_counter()
    # Cascades pay for every candidate they call: they report their own operating points instead of a λ sweep.
    if hasattr(router, "operating_points"):
        points = router.operating_points(test)
    else:
        points = sweep_router(router, test, n_lambdas)
    result = summarise(name or router.name, kind, points, ref)
    if ref.strong is not None:
        if type(router).score is Router.score and points.predicted is not None:  # the default score: S_s - S_w
            s, w = router.candidates_.index(ref.strong), router.candidates_.index(ref.weak)
            scores = points.predicted[:, s] - points.predicted[:, w]
        else:
            scores = np.asarray(router.score(test, strong=ref.strong, weak=ref.weak), dtype=np.float64)
        result.apgr, result.cpt, result.routellm_curve = _two_model_metrics(scores, test, ref)
    result.eval_seconds = time.perf_counter() - start
    return result


def evaluate_single(test: RoutingDataset, candidate: str, ref: Reference) -> RouterResult:
    """The row of always choosing ``candidate``."""
    return summarise(candidate, "single", fixed_choice(test, test.candidate_index(candidate)), ref)


__all__ = ["Reference", "evaluate_router", "evaluate_single", "summarise"]
