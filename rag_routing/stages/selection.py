"""Keep a stage's best fixed option unless cross-validation shows the router really does better.

A stage router trained on a few hundred queries can score below simply always using the best option (on an
unseen multi-hop corpus the retriever router trained on CISI or MuSiQue scored nDCG@10 0.783-0.790 against
0.8125 for always-hybrid). :func:`cross_validated_gain` refits the router on ``n_folds - 1`` folds of the training
data, routes the held-out fold with the shared rule at the stage's λ, and compares the realised utility
(outcome - λ·cost) per query with the best fixed option chosen on the same training folds (equal utility for
less money counts as a tiny gain, so a router that only saves cost at λ = 0 is not dropped). The router is kept
only when the lower end of a paired bootstrap interval of the mean gain is above 0 (a real gain); otherwise the
stage runs the best fixed option of the whole training set. Out of support, a kept router already falls back to
that same choice per query (:mod:`rag_routing.routers.support`).

Example:
    >>> import numpy as np
    >>> from rag_routing.embeddings import PrecomputedFeaturizer
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.similarity import ClusterRouter
    >>> rng = np.random.default_rng(0)
    >>> E = rng.normal(size=(120, 4)).astype(np.float32)
    >>> noise = RoutingDataset([f"q{i}" for i in range(120)], ["bm25", "dense"], rng.random((120, 2)) < [0.5, 0.6],
    ...                        np.zeros((120, 2)), embeddings=E, embedding_model="v")
    >>> report = cross_validated_gain(ClusterRouter(featurizer=PrecomputedFeaturizer("v")), noise)
    >>> report.keep_router, report.fixed
    (False, 'dense')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rag_routing.evaluation.dataset import RoutingDataset


@dataclass(frozen=True)
class StageSelection:
    """What the cross-validation decided, and on what evidence."""

    keep_router: bool
    fixed: str
    mean_gain: float
    lower: float
    router_utility: float
    fixed_utility: float
    n_folds: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def best_fixed(dataset: RoutingDataset, lam: float = 0.0) -> int:
    """Index of the option with the best mean outcome - λ·mean cost (ties to the cheaper)."""
    from rag_routing.routers.cascade_guard import fixed_candidate

    return fixed_candidate(np.nan_to_num(dataset.mean_quality(), nan=-np.inf), np.nan_to_num(dataset.mean_cost()),
                           lam)


def _clone(router: Any) -> Any:
    clone = type(router)(**router.get_params())
    fitted = getattr(router, "featurizer_", None) if getattr(router, "uses_features", False) else None
    clone.featurizer = fitted if fitted is not None else getattr(router, "featurizer", None)
    clone.guard_settings = router.guard_settings
    return clone


def _embedded(router: Any, dataset: RoutingDataset) -> RoutingDataset:
    """``dataset`` carrying a fitted router's features, so that the fold refits do not embed again."""
    if not getattr(router, "is_fitted", False) or not getattr(router, "uses_features", False):
        return dataset
    return dataset.with_embeddings(router.features(dataset), router.featurizer_.name)


def cross_validated_gain(router: Any, dataset: RoutingDataset, *, lam: float = 0.0, n_folds: int = 5,
                         n_boot: int = 1000, confidence: float = 0.9, seed: int = 0) -> StageSelection:
    """Held-out utility of ``router`` (unfitted template or fitted: it is cloned) against the best fixed option."""
    n = len(dataset)
    dataset = _embedded(router, dataset)
    fixed_all = dataset.candidates[best_fixed(dataset, lam)]
    folds = min(n_folds, n // 4)
    if folds < 2:
        return StageSelection(False, fixed_all, 0.0, 0.0, float("nan"), float("nan"), 0,
                              f"{n} training queries are too few to show a gain: fixed option {fixed_all!r}")
    assignment = np.random.default_rng(seed).permutation(n) % folds
    utility = np.where(np.isnan(dataset.quality), np.nan, dataset.quality - lam * np.nan_to_num(dataset.cost))
    fill = np.nan_to_num(np.nanmean(utility, axis=0), nan=0.0)
    utility = np.where(np.isnan(utility), fill[None, :], utility)  # unknown outcome: the option's mean
    cost = np.nan_to_num(dataset.cost)
    scale = float(cost.max()) or 1.0
    routed, fixed, saved = np.zeros(n), np.zeros(n), np.zeros(n)
    for f in range(folds):
        train, held = np.flatnonzero(assignment != f), np.flatnonzero(assignment == f)
        part = dataset.subset(train)
        model = _clone(router).fit(part)
        choice = model.route_indices(dataset.subset(held), lam=lam)
        columns = [dataset.candidate_index(model.candidates_[c]) for c in choice]
        routed[held] = utility[held, columns]
        fixed[held] = utility[held, best_fixed(part, lam)]
        saved[held] = (cost[held, best_fixed(part, lam)] - cost[held, columns]) / scale
    # Equal utility for less money is a gain too (it decides only ties: 1e-6 of a cost share).
    gain = routed - fixed + 1e-6 * saved
    boots = np.random.default_rng(seed + 1).integers(0, n, size=(n_boot, n))
    lower = float(np.quantile(gain[boots].mean(axis=1), 1.0 - confidence))
    keep = lower > 0.0
    verdict = "kept: a real gain" if keep else f"not kept: fixed option {fixed_all!r}"
    reason = (f"{folds}-fold CV: router utility {routed.mean():.4f} vs best fixed {fixed.mean():.4f} (gain "
              f"{gain.mean():+.4f}, {confidence:.0%} lower bound {lower:+.4f}); router {verdict}")
    return StageSelection(keep, fixed_all, float(gain.mean()), lower, float(routed.mean()), float(fixed.mean()),
                          folds, reason)


def keep_if_real_gain(stage: Any, dataset: RoutingDataset, **options: Any) -> StageSelection:
    """Run :func:`cross_validated_gain` on ``stage``'s fitted router; without a real gain the stage drops its
    router and runs the best fixed option (``stage.selection_`` holds the report either way)."""
    router = stage.router
    lam = stage.lam if stage.lam is not None else getattr(router, "lam", 0.0)
    report = cross_validated_gain(router, dataset, lam=lam, **options)
    stage.selection_ = report
    if not report.keep_router:
        stage.router = None
        stage.default = report.fixed
    return report


class KeepsBestFixed:
    """Mixin for a :class:`~rag_routing.stages.base.StageRouter`: after ``fit`` (and ``fit_from_outcomes``) the
    router is kept only if :func:`cross_validated_gain` shows a real gain, else the stage runs the best fixed
    option (``selection_`` says which and why). Set ``select_by_cv = False`` to always keep the fitted router;
    ``fit_from_labels`` (a person's choice per query, not noisy measurements) keeps it too."""

    select_by_cv: bool = True

    def fit(self, dataset: Any, router: Any = None) -> Any:
        super().fit(dataset, router)  # type: ignore[misc]
        if self.select_by_cv:
            keep_if_real_gain(self, dataset)
        return self

    def fit_from_labels(self, *args: Any, **kwargs: Any) -> Any:
        saved, self.select_by_cv = self.select_by_cv, False
        try:
            return super().fit_from_labels(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.select_by_cv = saved


__all__ = ["StageSelection", "cross_validated_gain", "best_fixed", "keep_if_real_gain", "KeepsBestFixed"]
