"""Knowing when a router does not know: per-query support p-values and the fallback to the prior choice.

A learned router is only trustworthy near its training data. :class:`SupportEstimator` measures how far a query
lies from the training queries *in the router's own feature space* — the mean distance to its ``k`` nearest
training neighbours — and turns that distance into a conformal p-value (split-conformal, Vovk et al. 2005;
Angelopoulos & Bates 2021): the share of held-out training queries that lie at least as far from the rest of the
training data. In distribution the p-values are (super-)uniform, so a query with ``p < alpha`` is flagged as *out
of support* in at most about ``alpha`` of in-distribution queries; a query from a task the router never saw gets
p-values near ``1 / (n_calibration + 1)``.

Every guarded router (see :class:`GuardSettings`) goes through the one shared path of
:meth:`rag_routing.routers.base.Router.predict_quality`: its quality estimates are first shrunk
(:mod:`rag_routing.routers.shrinkage`), then each out-of-support row is replaced by the *prior*: every
candidate's training-mean quality. The shared rule ``argmax S - λC s.t. C <= B`` then picks, for that query, the
best fixed candidate under the same λ and budget, and :meth:`Router.route` says so in the decision's reason
(``metadata["support_p"]``, ``metadata["out_of_support"]``). :func:`force_prior` sends *every* query to the prior
(the drift monitor of :mod:`rag_routing.routers.drift` uses it).

Contextual bandits get the support guard (offline estimates and online ``route``/``act``: an out-of-support query
goes greedily to the prior choice, without exploring), with their own confidence width as a second score; routers
that learn online (bandits, Elo, memory routers) keep their shrinkage until their first update; routers that read no query features are
not guarded. With a TF-IDF featurizer the p-value also covers the share of a query's words never seen in training.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> train = rng.normal(size=(300, 8))
    >>> est = SupportEstimator(k=5, seed=0).fit(train)
    >>> inside = est.p_values(rng.normal(size=(200, 8)))
    >>> outside = est.p_values(rng.normal(loc=4.0, size=(200, 8)))
    >>> bool((inside < 0.05).mean() < 0.1), bool((outside < 0.05).mean() > 0.9)
    (True, True)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from rag_routing.errors import CorruptStateError, InvalidInputError, NotFittedError

if TYPE_CHECKING:
    from rag_routing.decision import RoutingDecision
    from rag_routing.evaluation.dataset import RoutingDataset
    from rag_routing.routers.base import Router

logger = logging.getLogger(__name__)

#: Rows handled per block of the pairwise-distance computation (bounds memory at ~ CHUNK x reference floats).
CHUNK = 1024
#: Widest feature space in which a linear bandit's confidence width joins the support score (a d x d inverse).
MAX_RIDGE_DIM = 2048


@dataclass(frozen=True)
class GuardSettings:
    """How a router guards its decisions; set ``router.guard_settings = GuardSettings(...)`` before ``fit``.

    Attributes:
        support: fit a :class:`SupportEstimator` and fall back to the prior for out-of-support queries.
        alpha: a query whose support p-value is below ``alpha`` is out of support.
        k: neighbours averaged in the distance score.
        n_folds: held-out folds of the conformal calibration.
        max_reference: training queries kept as the reference set (a seeded sample beyond it).
        shrinkage: fit per-candidate shrinkage toward the training mean on held-out folds
            (:mod:`rag_routing.routers.shrinkage`); it is kept only if it does not lower held-out routing quality.
        shrinkage_folds: folds of that fit (each refits the router once).
        shrinkage_min_rows: fewer training rows than this: no shrinkage (too little to fit it on).
        seed: fold assignment and reference sampling.
        vocabulary: for a featurizer with a word vocabulary (TF-IDF), also score each query's share of words
            never seen in training (a query of unknown words maps near the few words it shares).
    """

    support: bool = True
    alpha: float = 0.01
    k: int = 5
    n_folds: int = 5
    max_reference: int = 5000
    shrinkage: bool = True
    shrinkage_folds: int = 3
    shrinkage_min_rows: int = 60
    seed: int = 0
    vocabulary: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < float(self.alpha) < 1.0:
            raise InvalidInputError(f"alpha must be in (0, 1), got {self.alpha!r}")
        for name, low in (("k", 1), ("n_folds", 2), ("max_reference", 10), ("shrinkage_folds", 2),
                          ("shrinkage_min_rows", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")

    @classmethod
    def off(cls) -> GuardSettings:
        """No support estimate and no shrinkage (the router's raw estimates, as before)."""
        return cls(support=False, shrinkage=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pairwise_sq(A: np.ndarray, B: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    a_sq = (A * A).sum(axis=1)[:, None]
    return np.maximum(a_sq + b_sq[None, :] - 2.0 * (A @ B.T), 0.0)


def knn_distance(queries: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """Mean Euclidean distance of each query row to its ``k`` nearest ``reference`` rows (chunked)."""
    Q = np.asarray(queries, dtype=np.float64)
    R = np.asarray(reference, dtype=np.float64)
    k = max(1, min(int(k), R.shape[0] - int(exclude_self)))
    r_sq = (R * R).sum(axis=1)
    out = np.empty(Q.shape[0])
    for start in range(0, Q.shape[0], CHUNK):
        D = _pairwise_sq(Q[start:start + CHUNK], R, r_sq)
        kk = k + int(exclude_self)
        part = np.partition(D, kk - 1, axis=1)[:, :kk] if kk < D.shape[1] else D
        part = np.sort(part, axis=1)[:, int(exclude_self):kk]
        out[start:start + CHUNK] = np.sqrt(part).mean(axis=1)
    return out


_WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


def word_set(text: str) -> frozenset[str]:
    """The lower-cased words (2+ word characters) of ``text``."""
    return frozenset(_WORD.findall(str(text).lower()))


def unknown_share(tokens: Sequence[frozenset[str]], known: set[str] | frozenset[str]) -> np.ndarray:
    """Share of each text's words not in ``known`` (1 for a text without words: nothing in it is known)."""
    return np.array([(len(t - known) / len(t)) if t else 1.0 for t in tokens], dtype=np.float64)


def conformal_p(calibration: np.ndarray, scores: np.ndarray, tail: float = 0.1) -> np.ndarray:
    """Split-conformal p-values of ``scores`` against sorted ``calibration`` scores (larger = stranger).

    Within the calibration range this is the usual ``(1 + #{calibration >= s}) / (n + 1)``. Beyond the largest
    calibration score it would stay at ``1 / (n + 1)`` — above ``alpha = 0.01`` for fewer than 99 calibration rows,
    so a small training set could never flag anything. There the tail is extrapolated: an exponential fitted to the
    excesses of the top ``tail`` share of calibration scores over their threshold (peaks over threshold, Pickands
    1975), ``p = 1/(n+1) · exp(-(s - max) / scale)``; with no spread in that tail the whole set's standard deviation
    is the scale, and with none at all (every calibration score equal) nothing is extrapolated."""
    cal = np.asarray(calibration, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    n = cal.size
    at_least = n - np.searchsorted(cal, s, side="left")
    p = (1.0 + at_least) / (n + 1.0)
    beyond = s > cal[-1]
    if beyond.any():
        threshold = np.quantile(cal, 1.0 - tail)
        excess = cal[cal > threshold] - threshold
        scale = float(excess.mean()) if excess.size else 0.0
        if scale <= 1e-12:  # no spread in the tail: take the spread of the whole calibration set
            scale = float(cal.std())
        if scale > 1e-12:
            p[beyond] = np.exp(-(s[beyond] - cal[-1]) / scale) / (n + 1.0)
        # else every calibration score is the same (e.g. no held-out query had an unknown word): nothing says how
        # fast the tail falls, so a larger score keeps the plain conformal 1 / (n + 1)
    return p


def ridge_inverse(Z: np.ndarray, ridge: float) -> np.ndarray:
    """``(ridge·I + ZᵀZ)⁻¹``: the inverse design matrix of a ridge regression on ``Z`` (LinUCB's ``A⁻¹``)."""
    return np.linalg.inv(ridge * np.eye(Z.shape[1]) + Z.T @ Z)


def ridge_leverage(Q: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """``xᵀA⁻¹x`` per row: the squared confidence width of a linear model at ``x`` (Li et al. 2010)."""
    return np.einsum("ij,jk,ik->i", Q, inverse, Q)


class SupportEstimator:
    """Distance to the training data in a feature space, calibrated into conformal p-values (module docstring).

    Parameters:
        k: neighbours averaged in the nonconformity score (mean distance to the ``k`` nearest training rows).
        n_folds: folds of the calibration: each training row is scored against the other folds.
        max_reference: at most this many training rows are kept as the reference set; the rows left out
            are the calibration set (plain split-conformal).
        seed: folds and sampling.
        ridge: also score each query's ridge leverage ``xᵀ(ridge·I + XᵀX)⁻¹x`` — a linear model's own predictive
            uncertainty (LinUCB's confidence width, Thompson's posterior variance) — calibrated on held-out
            folds like the distance; the p-value is then the smallest of the scores' p-values times their number.
    """

    def __init__(self, k: int = 5, n_folds: int = 5, max_reference: int = 5000, max_calibration: int = 2000,
                 seed: int = 0, ridge: float | None = None):
        self.k, self.n_folds, self.max_reference = int(k), int(n_folds), int(max_reference)
        self.max_calibration, self.seed = int(max_calibration), int(seed)
        self.ridge = None if ridge is None else float(ridge)

    def _prepare(self, F: np.ndarray) -> np.ndarray:
        return (np.asarray(F, dtype=np.float64) - self.center_) / self.scale_

    def fit(self, features: np.ndarray, texts: Sequence[str] | None = None) -> SupportEstimator:
        """Learn the reference set and the calibration scores from ``(n, d)`` training features.

        ``texts`` (the training queries; given for vocabulary features such as TF-IDF) add a second score: the
        share of a query's words never seen in training, calibrated the same way (each held-out row against the
        other folds' vocabulary). A query whose words are mostly unknown projects onto the few known ones, so in
        TF-IDF space it can look close to the training data; its unknown words cannot."""
        F = np.asarray(features, dtype=np.float64)
        if F.ndim != 2 or F.shape[0] < 3 or not np.isfinite(F).all():
            raise InvalidInputError("a support estimate needs a finite (n >= 3, d) feature matrix")
        norms = np.linalg.norm(F, axis=1)
        if np.allclose(norms, 1.0, atol=1e-3):  # unit-norm embeddings: Euclidean = cosine geometry, keep it
            self.center_, self.scale_ = np.zeros(F.shape[1]), np.ones(F.shape[1])
        else:  # features on different scales (e.g. probe statistics): standardise each
            std = F.std(axis=0)
            self.center_, self.scale_ = F.mean(axis=0), np.where(std > 1e-12, std, 1.0)
        Z = self._prepare(F)
        # The leverage is taken about the training mean (a bandit's PCA context is centred the same way).
        self.leverage_center_ = Z.mean(axis=0)
        L = Z - self.leverage_center_
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(Z.shape[0])
        tokens = None
        if texts is not None:
            tokens = [word_set(t) for t in texts]
            if len(tokens) != Z.shape[0]:
                raise InvalidInputError(f"{len(tokens)} texts for {Z.shape[0]} feature rows")
        if Z.shape[0] > self.max_reference:  # split-conformal: score held-out rows against the reference
            ref = np.sort(order[: self.max_reference])
            self.reference_ = Z[ref]
            held = order[self.max_reference:][: self.max_calibration]
            calibration = knn_distance(Z[held], self.reference_, self.k)
            if self.ridge is not None:
                leverage = ridge_leverage(L[held], ridge_inverse(L[ref], self.ridge))
            if tokens is not None:
                known = set().union(*(tokens[i] for i in ref))
                novelty = unknown_share([tokens[i] for i in held], known)
        else:  # cross-fitted: every row against the other folds (a slightly smaller reference: conservative)
            self.reference_ = Z
            folds = np.empty(Z.shape[0], dtype=np.int64)
            folds[order] = np.arange(Z.shape[0]) % min(self.n_folds, Z.shape[0])
            calibration = np.empty(Z.shape[0])
            novelty, leverage = np.empty(Z.shape[0]), np.empty(Z.shape[0])
            for f in np.unique(folds):
                held = folds == f
                calibration[held] = knn_distance(Z[held], Z[~held], self.k)
                if self.ridge is not None:
                    leverage[held] = ridge_leverage(L[held], ridge_inverse(L[~held], self.ridge))
                if tokens is not None:
                    known = set().union(*(tokens[i] for i in np.flatnonzero(~held)))
                    novelty[held] = unknown_share([tokens[i] for i in np.flatnonzero(held)], known)
        self.calibration_ = np.sort(calibration)
        if tokens is not None:
            self.vocabulary_ = set().union(*tokens)
            self.novelty_calibration_ = np.sort(novelty)
        if self.ridge is not None:
            self.inverse_ = ridge_inverse(L, self.ridge)
            self.leverage_calibration_ = np.sort(leverage)
        return self

    @property
    def uses_vocabulary(self) -> bool:
        return getattr(self, "novelty_calibration_", None) is not None

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "calibration_")

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Nonconformity of each row: mean distance to its ``k`` nearest reference rows."""
        if not self.is_fitted:
            raise NotFittedError("SupportEstimator is not fitted; call fit(features) first")
        F = np.asarray(features, dtype=np.float64)
        if F.ndim == 1:
            F = F[None, :]
        if F.ndim != 2 or F.shape[1] != self.reference_.shape[1]:
            raise InvalidInputError(f"features have shape {F.shape}; the support estimate was fitted on "
                                    f"{self.reference_.shape[1]} dimensions")
        return knn_distance(self._prepare(F), self.reference_, self.k)

    def p_values(self, features: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Conformal p-value per row: ``(1 + #{calibration scores >= score}) / (n_calibration + 1)``, with the
        tail beyond the largest calibration score extrapolated (:func:`conformal_p`). With a vocabulary (fitted
        with ``texts``) and ``texts`` given, the smaller of the distance and unknown-word p-values, doubled
        (Bonferroni: in distribution still at most about ``alpha`` flagged)."""
        p = [conformal_p(self.calibration_, self.scores(features))]
        if getattr(self, "leverage_calibration_", None) is not None:
            F = np.asarray(features, dtype=np.float64)
            p.append(conformal_p(self.leverage_calibration_, ridge_leverage(
                self._prepare(F.reshape(-1, F.shape[-1])) - self.leverage_center_, self.inverse_)))
        if texts is not None and self.uses_vocabulary:
            novelty = unknown_share([word_set(t) for t in texts], self.vocabulary_)
            if novelty.shape != p[0].shape:
                raise InvalidInputError(f"{novelty.size} texts for {p[0].size} feature rows")
            p.append(conformal_p(self.novelty_calibration_, novelty))
        return np.minimum(1.0, len(p) * np.min(p, axis=0))

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"center": self.center_, "scale": self.scale_, "reference": self.reference_.astype(np.float32),
                  "calibration": self.calibration_}
        if getattr(self, "leverage_calibration_", None) is not None:
            arrays["inverse"], arrays["leverage_calibration"] = self.inverse_, self.leverage_calibration_
            arrays["leverage_center"] = self.leverage_center_
        if self.uses_vocabulary:
            arrays["vocabulary"] = np.array(sorted(self.vocabulary_), dtype=str)
            arrays["novelty_calibration"] = self.novelty_calibration_
        return ({"k": self.k, "n_folds": self.n_folds, "max_reference": self.max_reference,
                 "max_calibration": self.max_calibration, "seed": self.seed, "ridge": self.ridge}, arrays)

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> SupportEstimator:
        est = cls(**{k: (None if v is None else float(v)) if k == "ridge" else int(v) for k, v in config.items()})
        est.center_ = np.asarray(arrays["center"], dtype=np.float64)
        est.scale_ = np.asarray(arrays["scale"], dtype=np.float64)
        est.reference_ = np.asarray(arrays["reference"], dtype=np.float64)
        est.calibration_ = np.asarray(arrays["calibration"], dtype=np.float64)
        if est.reference_.ndim != 2 or est.center_.shape != (est.reference_.shape[1],):
            raise CorruptStateError("saved support estimate has mismatched shapes")
        if "leverage_calibration" in arrays:
            est.inverse_ = np.asarray(arrays["inverse"], dtype=np.float64)
            est.leverage_calibration_ = np.asarray(arrays["leverage_calibration"], dtype=np.float64)
            est.leverage_center_ = np.asarray(arrays["leverage_center"], dtype=np.float64)
        if "novelty_calibration" in arrays:
            est.vocabulary_ = {str(w) for w in np.asarray(arrays.get("vocabulary", [])).tolist()}
            est.novelty_calibration_ = np.asarray(arrays["novelty_calibration"], dtype=np.float64)
        return est


@dataclass
class GuardState:
    """What a guarded router learned in ``fit``: the prior, the support estimate and the shrinkage."""

    prior: np.ndarray
    #: Candidate names at fit time: a candidate added later (``add_candidate``) is left unguarded.
    candidates: list[str] = field(default_factory=list)
    support: SupportEstimator | None = None
    shrinkage: Any = None  # rag_routing.routers.shrinkage.Shrinkage | None
    #: True: every query goes to the prior (set by :func:`force_prior`, e.g. by a drift alarm).
    forced: bool = False
    notes: list[str] = field(default_factory=list)
    #: What an online router had learned when the shrinkage was fitted (:func:`~rag_routing.routers.shrinkage.
    #: learning_version`); once it has learned more, the shrinkage no longer applies.
    version: float | None = None


def guarded(router: Router) -> bool:
    """Whether ``router`` gets the support guard: it reads query features (contextual bandits included: their
    linear model extrapolates as freely as any regression), unless it routes out-of-scope queries itself as its
    user asked (``Router.routes_out_of_scope_itself``)."""
    return bool(router.uses_features) and not router.routes_out_of_scope_itself


def is_bandit(router: Router) -> bool:
    """Bandits keep learning online: they get the support guard but no shrinkage fitted once at ``fit``."""
    from rag_routing.routers.bandits.base import BanditRouter

    return isinstance(router, BanditRouter)


def has_vocabulary(router: Router) -> bool:
    """Whether the router's featurizer is built on a word vocabulary (TF-IDF): then the support estimate also
    scores the share of unknown words (:meth:`SupportEstimator.fit`)."""
    return bool(router.guard_settings.vocabulary) and \
        getattr(getattr(router, "featurizer_", None), "vocabulary_", None) is not None


def prior_quality(dataset: RoutingDataset) -> np.ndarray:
    """Each candidate's training-mean quality (0 where none is known): the estimate of a router without signal."""
    return np.nan_to_num(dataset.mean_quality(), nan=0.0)


def fit_guards(router: Router, features: np.ndarray | None, dataset: RoutingDataset) -> None:
    """Called by ``Router.fit`` after ``_fit``: learn the prior, the support estimate and the shrinkage."""
    settings: GuardSettings = router.guard_settings
    state = GuardState(prior=prior_quality(dataset), candidates=list(dataset.candidates))
    if guarded(router) and features is not None and not np.isfinite(dataset.quality).any():
        # A cold start (BanditRouter.start): no outcome yet, so no prior to fall back to and nothing to shrink.
        state.notes.append("no guards: no outcome is known yet (cold start)")
    elif guarded(router) and features is not None:
        if settings.support and len(dataset) >= 3:
            texts = list(dataset.queries) if has_vocabulary(router) else None
            # A linear bandit's own uncertainty: its confidence width, with its own regularisation.
            ridge = getattr(router, "regularization", None) if is_bandit(router) else None
            if ridge is not None and features.shape[1] > MAX_RIDGE_DIM:
                ridge = None
            state.support = SupportEstimator(k=settings.k, n_folds=settings.n_folds,
                                             max_reference=settings.max_reference, seed=settings.seed,
                                             ridge=ridge).fit(features, texts)
        if settings.shrinkage:
            from rag_routing.routers.shrinkage import fit_shrinkage, learning_version

            state.shrinkage = fit_shrinkage(router, features, dataset, settings, state.notes)
            state.version = learning_version(router)
    router.guards_ = state


def guard_state(router: Router) -> GuardState | None:
    return getattr(router, "guards_", None)


def support_p_values(router: Router, features: np.ndarray | None, n: int,
                     texts: Sequence[str] | None = None) -> np.ndarray:
    """``(n,)`` p-values; NaN where the router has no support estimate. ``texts`` (the queries, when known) add
    the unknown-word score of a vocabulary featurizer."""
    state = guard_state(router)
    if state is None or state.support is None or features is None:
        return np.full(n, np.nan)
    return state.support.p_values(features, texts)


def apply_guards(router: Router, S: np.ndarray, features: np.ndarray | None,
                 texts: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The shared path: shrink, then replace out-of-support (or all, when forced) rows by the prior.

    Returns ``(quality, p_values)`` (p-values NaN where unknown)."""
    p = support_p_values(router, features, S.shape[0], texts)
    state = guard_state(router)
    if state is None:
        return S, p
    # Align with the router's current candidates (add_candidate / remove_candidate change them after fit).
    names = list(router.candidates_)
    at = {c: i for i, c in enumerate(state.candidates or names)}
    cols = np.array([at.get(c, -1) for c in names])
    known = cols >= 0
    S = np.array(S, dtype=np.float64)
    if state.shrinkage is not None and known.any() and not _learned_since_fit(router, state):
        S[:, known] = state.shrinkage.apply(S[:, known], cols[known])
    out = (p < router.guard_settings.alpha) if not state.forced else np.ones(S.shape[0], dtype=bool)
    if out.any() and known.any():
        S[np.ix_(out, np.flatnonzero(known))] = state.prior[cols[known]]
    return S, p


def _learned_since_fit(router: Router, state: GuardState) -> bool:
    if state.version is None:
        return False
    from rag_routing.routers.shrinkage import learning_version

    return learning_version(router) != state.version


def annotate(router: Router, decisions: list[RoutingDecision], p: np.ndarray) -> list[RoutingDecision]:
    """Say in each decision whether it was in support, and why it fell back when it was not."""
    state = guard_state(router)
    alpha = router.guard_settings.alpha
    for decision, value in zip(decisions, p.tolist()):
        known = not np.isnan(value)
        decision.metadata["support_p"] = float(value) if known else None
        out = known and value < alpha
        decision.metadata["out_of_support"] = bool(out)
        if state is not None and state.forced:
            decision.metadata["prior_forced"] = True
            decision.reason = ("fallback forced (drift alarm): training-mean quality of every candidate, i.e. the "
                               "best fixed candidate under this λ and budget; " + decision.reason)
        elif out:
            decision.reason = (f"out of support (p = {value:.3g} < α = {alpha:g}: far from the training queries): "
                               "fell back to the training-mean quality of every candidate, i.e. the best fixed "
                               "candidate under this λ and budget; " + decision.reason)
    return decisions


def force_prior(router: Router, on: bool = True) -> None:
    """Send every query of ``router`` to the prior choice (``on=False`` restores per-query routing)."""
    state = guard_state(router)
    if state is None:
        raise NotFittedError(f"{type(router).__name__} has no fitted guards; fit it first")
    state.forced = bool(on)


def guards_to_state(router: Router) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The guards as (JSON-able config, arrays) for ``Router.to_state``."""
    config: dict[str, Any] = {"settings": router.guard_settings.to_dict()}
    state = guard_state(router)
    if state is None:
        return config, {}
    arrays: dict[str, np.ndarray] = {"prior": state.prior}
    config["forced"], config["candidates"] = state.forced, list(state.candidates)
    config["version"] = state.version
    if state.support is not None:
        s_config, s_arrays = state.support.get_state()
        config["support"] = s_config
        arrays.update({f"support.{k}": v for k, v in s_arrays.items()})
    if state.shrinkage is not None:
        k_config, k_arrays = state.shrinkage.get_state()
        config["shrinkage"] = k_config
        arrays.update({f"shrinkage.{k}": v for k, v in k_arrays.items()})
    return config, arrays


def guards_from_state(router: Router, config: dict[str, Any] | None, arrays: dict[str, np.ndarray]) -> None:
    """Restore what :func:`guards_to_state` wrote (older files without guards load unguarded)."""
    if not config:
        return
    router.guard_settings = GuardSettings(**config.get("settings", {}))
    if "prior" not in arrays:
        return
    state = GuardState(prior=np.asarray(arrays["prior"], dtype=np.float64), forced=bool(config.get("forced")),
                       candidates=[str(c) for c in config.get("candidates", router.candidates_)],
                       version=None if config.get("version") is None else float(config["version"]))
    part = {k[len("support."):]: v for k, v in arrays.items() if k.startswith("support.")}
    if "support" in config:
        state.support = SupportEstimator.from_state(config["support"], part)
    if "shrinkage" in config:
        from rag_routing.routers.shrinkage import Shrinkage

        part = {k[len("shrinkage."):]: v for k, v in arrays.items() if k.startswith("shrinkage.")}
        state.shrinkage = Shrinkage.from_state(config["shrinkage"], part)
    router.guards_ = state


def with_settings(router: Router, **changes: Any) -> Router:
    """Set ``router.guard_settings`` to a copy of its settings with ``changes``; returns the router (for chaining)."""
    router.guard_settings = replace(router.guard_settings, **changes)
    return router


__all__ = ["GuardSettings", "GuardState", "SupportEstimator", "knn_distance", "fit_guards", "apply_guards",
           "annotate", "force_prior", "guarded", "is_bandit", "has_vocabulary", "conformal_p", "word_set",
           "unknown_share", "prior_quality", "support_p_values", "guards_to_state",
           "guards_from_state", "with_settings"]
