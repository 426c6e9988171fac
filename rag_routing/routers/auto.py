"""`AutoRouter` (``auto``): the router to use by default. It keeps the best fixed candidate unless cross-validation
on the training data shows, with a paired bootstrap, that a learned router really does better.

A router fitted on a few hundred logs may have no usable per-query signal; routing on noise then costs quality
(issue 15: on unseen tasks most routers fell below a fixed choice). ``auto`` therefore treats the fixed policy
(:class:`~rag_routing.routers.baselines.FixedRouter`: at each λ the candidate with the best training-mean
quality − λ·cost) as the null hypothesis:

1. the training queries are split into ``n_folds`` folds (seeded); every router of ``routers`` and the fixed
   policy are fitted on the other folds and predict the held-out one, giving out-of-fold predictions for all;
2. each policy is scored on those out-of-fold predictions by ``criterion``: RouterBench's AIQ of its λ sweep
   (any number of candidates), RouteLLM's APGR (two candidates; the fixed policy's straight line is 0.5), or
   the quality at λ = 0;
3. a paired bootstrap over the training queries (the same resamples for every policy) gives each router's gain
   over the fixed policy; a router counts only if the lower ``confidence`` bound of its gain (Bonferroni over
   the routers) is above ``min_gain``. Among those the best mean gain wins; with none, ``auto`` stays fixed.
4. the winner is refitted on all the training queries. :meth:`AutoRouter.explain` says what was chosen and why.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> rng = np.random.default_rng(0)
    >>> queries = [f"noise {i} {rng.integers(1e6)}" for i in range(120)]
    >>> quality = (rng.random((120, 2)) < [0.5, 0.8]).astype(float)      # no signal in the text
    >>> data = RoutingDataset(queries, ["small", "large"], quality, np.tile([1e-4, 1e-2], (120, 1)))
    >>> router = AutoRouter(routers=["knn"], featurizer="tfidf", n_folds=3).fit(data)
    >>> router.chosen_
    'fixed'
    >>> router.route_one("noise 5", lam=0.0).candidate
    'large'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rag_routing.decision import RoutingDecision
from rag_routing.embeddings import make_featurizer
from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput
from rag_routing.routers.auto_cv import CRITERIA, PolicyScorer, kfold
from rag_routing.routers.ensemble import _member_spec
from rag_routing.validation import check_choice, check_number

logger = logging.getLogger(__name__)

#: Learned routers ``auto`` tries by default: the ones that led on the shared data, cheap enough to fit
#: ``n_folds + 1`` times on this project's 2-core machines (see the README for the measured times).
DEFAULT_ROUTERS: tuple[str, ...] = ("knn", "mf", "tfidf_lr")
#: The name of the no-signal policy in :meth:`AutoRouter.explain`.
FIXED = "fixed"


class AutoRouter(Router):
    """Chooses among learned routers and the best fixed candidate by cross-validation on the training data,
    keeping the fixed candidate unless a router's gain is significant (paired bootstrap; see module docstring).

    Parameters:
        routers: router names or ``{"router": name, **params}`` specs to try (default :data:`DEFAULT_ROUTERS`).
            Routers that use features get ``auto``'s featurizer.
        n_folds: cross-validation folds (≥ 2).
        criterion: ``"auto"`` (APGR for two candidates, AIQ otherwise), ``"aiq"``, ``"apgr"`` or ``"quality"``
            (mean quality at λ = 0).
        confidence: one-sided confidence that a router's gain is above ``min_gain`` (Bonferroni-corrected over
            the routers tried).
        min_gain: the margin a router must beat the fixed policy by, in the criterion's units.
        n_bootstrap: bootstrap resamples of the training queries.
        n_lambdas: λ values of the AIQ sweep.
        min_queries: with fewer training queries ``auto`` does not cross-validate and stays fixed.
        seed: folds and bootstrap resamples.
        **kwargs: see :class:`~rag_routing.routers.base.Router` (``lam``, ``budget``, ``fallback``,
            ``featurizer``).

    Attributes:
        chosen_: ``"fixed"`` or the name of the chosen router.
        router_: the chosen router refitted on all the training queries (``None`` when fixed).
        mean_quality_: each candidate's mean training quality (the fixed policy's estimate).
    """

    name = "auto"
    uses_features = False  # the chosen router featurizes for itself
    #: ``rag-routing bench`` hands its shared featurizer to ``auto``, which passes it on to the routers it tries.
    shares_featurizer = True

    def __init__(self, *, routers: Sequence[str | Mapping[str, Any]] = DEFAULT_ROUTERS, n_folds: int = 3,
                 criterion: str = "auto", confidence: float = 0.95, min_gain: float = 0.0,
                 n_bootstrap: int = 500, n_lambdas: int = 40, min_queries: int = 30, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(routers, (str, Mapping)) or not isinstance(routers, Sequence):
            raise InvalidInputError(f"routers must be a list of router names or specs, got {routers!r}")
        self.routers = [_member_spec(r) for r in routers]
        for spec in self.routers:
            if spec["router"] in (self.name, FIXED):
                raise InvalidInputError(f"auto cannot try {spec['router']!r}; the fixed policy is always tried")
        self.n_folds = n_folds
        self.criterion = criterion
        self.confidence = confidence
        self.min_gain = min_gain
        self.n_bootstrap = n_bootstrap
        self.n_lambdas = n_lambdas
        self.min_queries = min_queries
        self.seed = seed
        self._check_params()

    def _check_params(self) -> None:
        check_number("n_folds", self.n_folds, 2, 50, integer=True)
        check_choice("criterion", self.criterion, ("auto", *CRITERIA))
        check_number("confidence", self.confidence, 0.5, 0.999999)
        check_number("min_gain", self.min_gain, 0.0)
        check_number("n_bootstrap", self.n_bootstrap, 10, integer=True)
        check_number("n_lambdas", self.n_lambdas, 1, integer=True)
        check_number("min_queries", self.min_queries, 2, integer=True)
        check_number("seed", self.seed, 0, integer=True)

    # ------------------------------------------------------------------ building the routers it tries
    def _build(self, spec: Mapping[str, Any], featurizer: Any) -> Router:
        from rag_routing.routers.registry import create_router

        params = {k: v for k, v in spec.items() if k != "router"}
        router = create_router(spec["router"], **params)
        if (router.uses_features or getattr(router, "shares_featurizer", False)) and "featurizer" not in params:
            router.featurizer = featurizer
        return router

    @staticmethod
    def _label(spec: Mapping[str, Any]) -> str:
        extra = {k: v for k, v in spec.items() if k != "router"}
        return spec["router"] if not extra else f"{spec['router']}{extra}"

    def _shared_features(self, dataset: RoutingDataset) -> tuple[RoutingDataset, Any]:
        """Embed the training queries once for every router that reads features (unless they carry vectors
        from the featurizer already), so the folds do not re-embed."""
        needs = any(self._build(spec, None).uses_features for spec in self.routers)
        if not needs:
            return dataset, self.featurizer
        featurizer = make_featurizer(self.featurizer)
        ready = getattr(featurizer, "is_fitted", True)
        if dataset.embeddings is not None and dataset.embedding_model == featurizer.name and ready:
            return dataset, featurizer
        featurizer.fit(dataset.queries)
        return dataset.with_embeddings(featurizer.transform(dataset.queries), featurizer.name), featurizer

    # ------------------------------------------------------------------ fitting
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self._check_params()
        self.mean_quality_ = np.nan_to_num(dataset.mean_quality(), nan=0.0)
        self.router_: Router | None = None
        self.chosen_ = FIXED
        if len(dataset) < max(self.min_queries, 2 * self.n_folds) or dataset.n_candidates < 2:
            self.choice_ = self._explanation(
                [], None, f"too few training queries ({len(dataset)} < {max(self.min_queries, 2 * self.n_folds)}) "
                          "or candidates to cross-validate: kept the best fixed candidate")
            return
        dataset, featurizer = self._shared_features(dataset)
        folds = kfold(len(dataset), self.n_folds, self.seed)
        scorer = PolicyScorer(dataset, self._criterion(dataset), folds, self.n_lambdas)
        rows = [self._cross_validate(spec, dataset, folds, scorer, featurizer) for spec in self.routers]
        fixed_score = scorer.fixed_score
        self._test([r for r in rows if r.get("error") is None], scorer, fixed_score)
        winner = self._winner(rows)
        if winner is not None:
            spec = self.routers[rows.index(winner)]
            self.router_ = self._build(spec, featurizer).fit(dataset)
            self.chosen_ = winner["router"]
        self.choice_ = self._explanation(rows, fixed_score, self._reason(rows, winner, scorer.criterion))

    def _criterion(self, dataset: RoutingDataset) -> str:
        if self.criterion != "auto":
            return self.criterion
        return "apgr" if dataset.n_candidates == 2 else "aiq"

    def _cross_validate(self, spec: Mapping[str, Any], dataset: RoutingDataset, folds: list[np.ndarray],
                        scorer: PolicyScorer, featurizer: Any) -> dict[str, Any]:
        label = self._label(spec)
        started = time.perf_counter()
        predicted = np.zeros(dataset.quality.shape)
        try:
            for held in folds:
                train_rows = np.setdiff1d(np.arange(len(dataset)), held)
                router = self._build(spec, featurizer).fit(dataset.subset(train_rows))
                predicted[held] = router.predict_quality(dataset.subset(held))
        except Exception as exc:  # a router that cannot fit this data is reported, not chosen
            logger.warning("auto: %s failed in cross-validation (%s: %s)", label, type(exc).__name__, exc)
            return {"router": label, "error": f"{type(exc).__name__}: {exc}"}
        return {"router": label, "error": None, "predicted": predicted,
                "cv_score": scorer.score(predicted), "cv_seconds": time.perf_counter() - started}

    def _test(self, tried: list[dict[str, Any]], scorer: PolicyScorer, fixed_score: float) -> None:
        """Paired bootstrap of every router's gain over the fixed policy (Bonferroni over the routers)."""
        if not tried:
            return
        gains = scorer.bootstrap_gains([r["predicted"] for r in tried], self.n_bootstrap, self.seed)
        alpha = (1.0 - self.confidence) / len(tried)
        for row, draws in zip(tried, gains):
            row["gain"] = row["cv_score"] - fixed_score
            row["gain_low"] = float(np.quantile(draws, alpha))
            row["gain_high"] = float(np.quantile(draws, 1.0 - alpha))
            row["significant"] = bool(row["gain_low"] > self.min_gain)
            del row["predicted"]

    @staticmethod
    def _winner(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        significant = [r for r in rows if r.get("significant")]
        return max(significant, key=lambda r: r["gain"]) if significant else None

    def _reason(self, rows: list[dict[str, Any]], winner: dict[str, Any] | None, criterion: str) -> str:
        level = f"{100 * self.confidence:g}%"
        if winner is not None:
            return (f"{winner['router']} beats the best fixed candidate by {winner['gain']:+.4f} {criterion} in "
                    f"{self.n_folds}-fold CV (paired bootstrap lower {level} bound {winner['gain_low']:+.4f} > "
                    f"{self.min_gain:g})")
        if not any(r.get("error") is None for r in rows):
            return "no router could be cross-validated: kept the best fixed candidate"
        best = max((r for r in rows if r.get("error") is None), key=lambda r: r["gain"])
        return (f"no router beats the best fixed candidate by a margin the CV shows to be real (best: "
                f"{best['router']} {best['gain']:+.4f} {criterion}, lower {level} bound {best['gain_low']:+.4f} "
                f"<= {self.min_gain:g}): kept the best fixed candidate")

    def _explanation(self, rows: list[dict[str, Any]], fixed_score: float | None, reason: str) -> dict[str, Any]:
        order = np.lexsort((self.mean_cost_, -self.mean_quality_))
        return {"chosen": self.chosen_, "reason": reason,
                "criterion": None if fixed_score is None else self._criterion_name(),
                "n_folds": self.n_folds, "confidence": self.confidence, "min_gain": self.min_gain,
                "fixed": {"cv_score": fixed_score, "best_at_lambda_0": self.candidates_[int(order[0])]},
                "routers": [{k: v for k, v in r.items() if k != "predicted"} for r in rows]}

    def _criterion_name(self) -> str:
        return self.criterion if self.criterion != "auto" else ("apgr" if len(self.candidates_) == 2 else "aiq")

    # ------------------------------------------------------------------ prediction and reporting
    def explain(self) -> dict[str, Any]:
        """What was chosen and why: ``chosen``, ``reason``, the criterion, the fixed policy's CV score and, per
        router tried, its CV score, gain over fixed with its bootstrap bounds, whether it is significant, its
        CV time (or the error that kept it out)."""
        self._check_fitted()
        return dict(self.choice_)

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        if self.router_ is None:
            return np.broadcast_to(self.mean_quality_, (self._n_rows(X), len(self.candidates_))).copy()
        return self.router_.predict_quality(X)

    def route(self, X: RouterInput, lam: float | None = None,
              budget: float | np.ndarray | None = None) -> list[RoutingDecision]:
        """The shared rule on the chosen router's (guarded) estimates; each decision carries the chosen router's
        ``support_p`` and ``out_of_support``, and its reason says when that router fell back to the prior."""
        decisions = super().route(X, lam, budget)
        if self.router_ is None:
            return decisions
        p = self.router_.support(X)
        alpha = self.router_.guard_settings.alpha
        for decision, value in zip(decisions, p.tolist()):
            known = not np.isnan(value)
            decision.metadata["support_p"] = float(value) if known else None
            decision.metadata["out_of_support"] = bool(known and value < alpha)
            if decision.metadata["out_of_support"]:
                decision.reason = (f"out of support of the chosen router {self.chosen_!r} (p = {value:.3g} < α = "
                                   f"{alpha:g}): it fell back to the training-mean quality of every candidate, "
                                   "i.e. the best fixed candidate under this λ and budget; " + decision.reason)
        return decisions

    def support(self, X: RouterInput) -> np.ndarray:
        """The chosen router's support p-values (NaN for every query when ``auto`` kept the fixed candidate:
        a fixed choice does not depend on the query, so it has no support to leave)."""
        self._check_fitted()
        if self.router_ is None:
            return np.full(self._n_rows(X), np.nan)
        return self.router_.support(X)

    def out_of_support(self, X: RouterInput, alpha: float | None = None) -> np.ndarray:
        """The chosen router's out-of-support flags (all False when fixed)."""
        self._check_fitted()
        if self.router_ is None:
            return np.zeros(self._n_rows(X), dtype=bool)
        return self.router_.out_of_support(X, alpha)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config: dict[str, Any] = {"chosen": self.chosen_, "choice": self.choice_, "router": None}
        arrays: dict[str, np.ndarray] = {"mean_quality": self.mean_quality_}
        if self.router_ is not None:
            meta, router_arrays = self.router_.to_state()
            config["router"] = meta
            arrays.update({f"router.{k}": v for k, v in router_arrays.items()})
        return config, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.mean_quality_ = np.asarray(arrays["mean_quality"], dtype=np.float64)
        self.chosen_ = str(config["chosen"])
        self.choice_ = dict(config["choice"])
        self.router_ = None
        if config.get("router") is not None:
            sub = {k[len("router."):]: v for k, v in arrays.items() if k.startswith("router.")}
            self.router_ = Router.from_state(config["router"], sub, source="auto's chosen router")
            if self.router_.candidates_ != self.candidates_:
                raise CorruptStateError("auto's saved router routes other candidates than auto itself")
        elif self.chosen_ != FIXED:
            raise CorruptStateError(f"auto chose {self.chosen_!r} but its state holds no router")


__all__ = ["AutoRouter", "DEFAULT_ROUTERS", "FIXED"]
