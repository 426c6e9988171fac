"""Supervised routers: a classifier of query classes (domain or complexity) and a per-candidate quality
regressor; the matrix-factorisation router lives in :mod:`~rag_routing.routers.matrix_factorization` and is
re-exported here.

Both learn from the outcome table of a :class:`RoutingDataset` (NaN outcomes are masked, never read as 0) and
are saved as plain arrays: scikit-learn estimators are fitted, then kept as their coefficients and evaluated
in numpy, so loading a router never unpickles anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput
from rag_routing.routers.matrix_factorization import (
    MatrixFactorizationRouter,
    Params,
    inner_split,
    scaled_targets,
    sigmoid,
    train_adam,
)
from rag_routing.validation import check_choice, check_number

#: Label of the fallback class of :class:`ClassifierRouter` (the mean over all training queries).
GENERAL = "<general>"
#: Ridge penalties tried by ``QualityRegressor(alpha="auto")`` on the inner validation split.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-1, 6, 15))


def _standardiser(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre, and one scale for all features (their root-mean-square spread): per-feature scaling would blow up
    near-constant directions (e.g. trailing LSA components) that new queries then leave."""
    mean = F.mean(axis=0)
    spread = float(np.sqrt(F.var(axis=0).mean()))
    return mean, np.full(F.shape[1], spread if spread > 1e-12 else 1.0)


def _softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    return P / P.sum(axis=1, keepdims=True)


def _column_means(Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the known (non-NaN) entries of each column, and their count (mean 0 where none is known)."""
    known = ~np.isnan(Q)
    return np.where(known, Q, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1), known.sum(axis=0)


class ClassifierRouter(Router):
    """Query classes mapped to candidates: domain classification with an entropy fallback (S. Jain et al. 2024,
    "Composition of Experts", arXiv:2412.01868) or complexity classes, i.e. the cheapest candidate that is right
    (Malekpour et al. 2024; Stripelis et al. 2024, TensorOpera Router); ``mode="direct"`` is RouteLLM's
    classifier baseline (Ong et al. 2025: TF-IDF + logistic regression / BERT predicting which model is needed).

    Estimates each candidate's quality as the class-probability-weighted mean quality of the candidates
    within each class of the training data; ``"direct"`` estimates P(candidate is the cheapest right one).

    * Classes come from ``metadata[label_key]`` (e.g. ``"subject"`` or ``"task"``) when ``label_key`` is set;
      otherwise from the outcomes: the cheapest candidate reaching the query's best outcome (or, with
      ``right_threshold``, the cheapest candidate whose outcome is >= the threshold; none right: the cheapest).
      Queries with an unknown (NaN) outcome get no outcome-derived label: the missing one could change it.
    * A multinomial logistic regression (``C``) over centred, scaled query features gives class probabilities
      ``p``. The class x candidate table ``T`` holds each class's mean known quality per candidate, shrunk
      towards the overall mean by ``smoothing`` pseudo-queries. Predicted quality is ``p @ T``, except when the
      normalised entropy of ``p`` exceeds ``entropy_threshold``: then the query falls back to the general class
      (the overall mean quality, i.e. the best single candidate), as Composition of Experts does.
    * ``mode="direct"``: the classes are the candidates themselves (the outcome-derived label) and predicted
      quality is the class probability; with two models ``score()`` is RouteLLM's P(strong needed) - P(weak).

    Example:
        >>> import numpy as np
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> queries = [f"integrate x^{i} dx" for i in range(6)] + [f"say hello to friend {i}" for i in range(6)]
        >>> quality = np.array([[0.0, 1.0]] * 6 + [[1.0, 1.0]] * 6)     # columns: small, large
        >>> train = RoutingDataset(queries, ["small", "large"], quality, np.tile([1e-4, 1e-2], (12, 1)),
        ...                        metadata=[{"task": "math"}] * 6 + [{"task": "chat"}] * 6)
        >>> router = ClassifierRouter(label_key="task", featurizer="tfidf").fit(train)
        >>> router.predict_classes(["integrate x^9 dx", "say hello to friend 7"])
        ['math', 'chat']
        >>> [d.candidate for d in router.route(["integrate x^9 dx", "say hello to friend 7"], lam=20.0)]
        ['large', 'small']
    """

    name = "classifier"

    def __init__(self, *, mode: str = "class", label_key: str | None = None, C: float = 1.0,
                 entropy_threshold: float = 0.9, smoothing: float = 1.0, right_threshold: float | None = None,
                 max_iter: int = 1000, **kwargs: Any):
        super().__init__(**kwargs)
        self.mode = mode
        self.label_key = label_key
        self.C = C
        self.entropy_threshold = entropy_threshold
        self.smoothing = smoothing
        self.right_threshold = right_threshold
        self.max_iter = max_iter
        self._check_params()

    def _check_params(self) -> None:
        check_choice("mode", self.mode, ("class", "direct"))
        if self.mode == "direct" and self.label_key is not None:
            raise InvalidInputError("mode='direct' predicts candidates, not metadata classes; drop label_key "
                                    "or use mode='class'")
        if self.label_key is not None and (not isinstance(self.label_key, str) or not self.label_key):
            raise InvalidInputError(f"label_key must be a non-empty metadata key or None, got {self.label_key!r}")
        check_number("C", self.C, 0.0, low_open=True)
        check_number("entropy_threshold", self.entropy_threshold, 0.0, 1.0)
        check_number("smoothing", self.smoothing, 0.0)
        check_number("max_iter", self.max_iter, 1, integer=True)
        if self.right_threshold is not None:
            check_number("right_threshold", self.right_threshold, -np.inf)

    # ------------------------------------------------------------------ labels
    def _labels(self, dataset: RoutingDataset) -> np.ndarray:
        """One class label per training query; ``None`` where outcome-derived labels meet an unknown outcome."""
        if self.label_key is not None:
            labels = []
            for i, meta in enumerate(dataset.metadata):
                if self.label_key not in meta:
                    raise InvalidInputError(
                        f"label_key {self.label_key!r} is missing from the metadata of query {i} (keys: "
                        f"{sorted(meta)}); add it to every query or leave label_key=None for complexity classes")
                labels.append(str(meta[self.label_key]))
            return np.array(labels, dtype=object)
        Q, cost = dataset.quality, self.mean_cost_
        known = ~np.isnan(Q)
        if self.right_threshold is None:
            best = np.where(known, Q, -np.inf).max(axis=1, keepdims=True)
            good = known & (Q >= best - 1e-9)
        else:
            good = known & (Q >= self.right_threshold)
        by_cost = np.argsort(cost, kind="stable")
        first_good = np.argmax(good[:, by_cost], axis=1)
        chosen = np.where(good.any(axis=1), by_cost[first_good], by_cost[0])
        labels = np.array([self.candidates_[j] for j in chosen], dtype=object)
        labels[~known.all(axis=1)] = None  # an unknown outcome could change the label: skip the query
        return labels

    # ------------------------------------------------------------------ fitting
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        from sklearn.linear_model import LogisticRegression

        self._check_params()
        labels = self._labels(dataset)
        rows = np.flatnonzero(labels != None)  # noqa: E711 - elementwise on an object array
        if rows.size == 0:
            raise InvalidInputError("no training query has a label: every query has an unknown (NaN) outcome; "
                                    "fill the outcomes or pass label_key")
        F = np.asarray(features, dtype=np.float64)
        self.feature_mean_, self.feature_scale_ = _standardiser(F[rows])
        classes = sorted(set(labels[rows].tolist())) if self.mode == "class" else list(self.candidates_)
        self.classes_ = classes
        y = np.array([classes.index(c) for c in labels[rows]])
        present = np.unique(y)
        W, b = np.zeros((len(classes), F.shape[1])), np.full(len(classes), -np.inf)
        if present.size == 1:
            b[present[0]] = 0.0
        else:
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
            clf.fit((F[rows] - self.feature_mean_) / self.feature_scale_, y)
            coef, intercept = clf.coef_, clf.intercept_
            if present.size == 2:  # scikit-learn's binary form: one row for the positive class
                coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
            W[present], b[present] = coef, intercept
        self.coef_, self.intercept_ = W, b
        self.general_quality_ = _column_means(dataset.quality)[0]
        self.class_quality_ = np.tile(self.general_quality_, (len(classes), 1))
        for k, name in enumerate(classes):  # known outcomes only, shrunk towards the general row
            means, counts = _column_means(dataset.quality[rows[labels[rows] == name]])
            weight = counts / np.maximum(counts + self.smoothing, 1e-12)
            self.class_quality_[k] = weight * means + (1.0 - weight) * self.general_quality_

    # ------------------------------------------------------------------ prediction
    def predict_proba(self, X: RouterInput) -> np.ndarray:
        """``(n, n_classes)`` class probabilities, columns in ``classes_`` order."""
        return self._proba(self.features(X))

    def _proba(self, F: np.ndarray) -> np.ndarray:
        Z = ((np.asarray(F, dtype=np.float64) - self.feature_mean_) / self.feature_scale_) @ self.coef_.T
        return _softmax(Z + self.intercept_)

    def _normalised_entropy(self, P: np.ndarray) -> np.ndarray:
        if P.shape[1] < 2:
            return np.zeros(P.shape[0])
        return -(P * np.log(np.clip(P, 1e-300, 1.0))).sum(axis=1) / np.log(P.shape[1])

    def predict_classes(self, X: RouterInput) -> list[str]:
        """Most probable class per query, or :data:`GENERAL` where the entropy fallback applies."""
        P = self.predict_proba(X)
        fallback = self._fallback_mask(P)
        return [GENERAL if f else self.classes_[k] for k, f in zip(P.argmax(axis=1), fallback)]

    def _fallback_mask(self, P: np.ndarray) -> np.ndarray:
        if self.mode == "direct" or self.entropy_threshold >= 1.0:
            return np.zeros(P.shape[0], dtype=bool)
        return self._normalised_entropy(P) > self.entropy_threshold

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        P = self._proba(features)
        if self.mode == "direct":
            return P
        S = P @ self.class_quality_
        S[self._fallback_mask(P)] = self.general_quality_
        return S

    def class_experts(self) -> dict[str, str]:
        """Each class's best candidate by training quality (ties to the cheaper), plus :data:`GENERAL`."""
        self._check_fitted()
        rows = np.vstack([self.class_quality_, self.general_quality_])
        order = np.argsort(self.mean_cost_, kind="stable")
        best = order[np.argmax(rows[:, order], axis=1)]
        return {name: self.candidates_[j] for name, j in zip([*self.classes_, GENERAL], best)}

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"coef": self.coef_, "intercept": self.intercept_, "feature_mean": self.feature_mean_,
                  "feature_scale": self.feature_scale_, "class_quality": self.class_quality_,
                  "general_quality": self.general_quality_}
        return {"classes": list(self.classes_)}, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.classes_ = [str(c) for c in config["classes"]]
        for key in ("coef", "intercept", "feature_mean", "feature_scale", "class_quality", "general_quality"):
            setattr(self, f"{key}_", np.asarray(arrays[key], dtype=np.float64))
        if self.coef_.shape[0] != len(self.classes_) or self.class_quality_.shape != (
                len(self.classes_), len(self.candidates_)):
            raise ValueError("classifier arrays do not match the saved classes and candidates")


class QualityRegressor(Router):
    """Per-candidate quality regression from query features, as RouterBench's predictive routers (Q. J. Hu et
    al. 2024, "RouterBench") and CARROT (Somerstep et al. 2025, "CARROT: A Cost Aware Rate Optimal Router").

    Estimates each candidate's expected quality (e.g. probability of a right answer) for the query; the shared
    rule then trades it against cost (``argmax S - λC``), RouterBench's ``λ·P - cost``.

    * ``model="ridge"``: one ridge regression per candidate on centred, scaled features, fitted on the queries
      whose outcome for that candidate is known (NaN rows are dropped per candidate). ``alpha="auto"`` picks
      one penalty for all candidates from :data:`RIDGE_ALPHAS` (lowest squared error on an inner validation
      split of the training queries; a shared penalty keeps one noisy candidate from looking best by chance),
      then refits on all of them. Predictions are clipped to the training range of the outcomes.
    * ``model="mlp"``: one multi-output MLP (ReLU hidden layers ``hidden``, a sigmoid output per candidate)
      trained in numpy with a masked cross-entropy (unknown outcomes contribute nothing), Adam, L2
      ``weight_decay``, early stopping on the inner validation split; seeded.

    Example:
        >>> import numpy as np
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> queries = [f"integrate x^{i} dx" for i in range(6)] + [f"say hello to friend {i}" for i in range(6)]
        >>> quality = np.array([[0.0, 1.0]] * 6 + [[1.0, 1.0]] * 6)     # columns: small, large
        >>> train = RoutingDataset(queries, ["small", "large"], quality, np.tile([1e-4, 1e-2], (12, 1)),
        ...                        metadata=[{"task": "math"}] * 6 + [{"task": "chat"}] * 6)
        >>> router = QualityRegressor(model="ridge", featurizer="tfidf").fit(train)
        >>> [d.candidate for d in router.route(["integrate x^9 dx", "say hello to friend 7"], lam=20.0)]
        ['large', 'small']
    """

    name = "regressor"

    def __init__(self, *, model: str = "ridge", alpha: float | str = "auto", hidden: tuple[int, ...] = (128,),
                 lr: float = 1e-3, weight_decay: float = 1e-3, batch_size: int = 128, max_epochs: int = 200,
                 patience: int = 10, validation_fraction: float = 0.1, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = model
        self.alpha = alpha
        self.hidden = tuple(hidden) if isinstance(hidden, (list, tuple)) else hidden
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed
        self._check_params()

    def _check_params(self) -> None:
        check_choice("model", self.model, ("ridge", "mlp"))
        if self.alpha != "auto":
            check_number("alpha", self.alpha, 0.0, low_open=True)
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise InvalidInputError(f"hidden must be a non-empty tuple of layer widths, got {self.hidden!r}")
        for width in self.hidden:
            check_number("hidden layer width", width, 1, integer=True)
        check_number("lr", self.lr, 0.0, low_open=True)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_number("batch_size", self.batch_size, 1, integer=True)
        check_number("max_epochs", self.max_epochs, 1, integer=True)
        check_number("patience", self.patience, 1, integer=True)
        check_number("validation_fraction", self.validation_fraction, 0.0, 0.5)
        check_number("seed", self.seed, 0, integer=True)

    # ------------------------------------------------------------------ ridge
    def _fit_ridge(self, F: np.ndarray, Q: np.ndarray, rng: np.random.Generator) -> None:
        m, d = Q.shape[1], F.shape[1]
        self.coef_, self.intercept_ = np.zeros((m, d)), np.full(m, self.quality_low_)
        known = ~np.isnan(Q)
        groups: dict[bytes, list[int]] = {}  # candidates with the same known rows share one decomposition
        for j in range(m):
            if known[:, j].any():
                groups.setdefault(np.packbits(known[:, j]).tobytes(), []).append(j)
        alpha = 1.0 if self.alpha == "auto" else float(self.alpha)
        if self.alpha == "auto":
            train, val = inner_split(F.shape[0], self.validation_fraction, rng)
            errors = np.zeros(len(RIDGE_ALPHAS))
            for cols in groups.values():
                rows = known[:, cols[0]]
                fit_rows, val_rows = train[rows[train]], val[rows[val]]
                if len(val_rows) >= 2 and len(fit_rows) >= 2:
                    W, b = self._ridge_path(F[fit_rows], Q[fit_rows][:, cols], RIDGE_ALPHAS)
                    pred = np.einsum("nd,akd->ank", F[val_rows], W) + b[:, None, :]
                    errors += ((pred - Q[val_rows][:, cols]) ** 2).sum(axis=(1, 2))
            alpha = RIDGE_ALPHAS[int(np.argmin(errors))] if errors.any() else 1.0
        self.alpha_ = alpha
        for cols in groups.values():
            rows = known[:, cols[0]]
            W, b = self._ridge_path(F[rows], Q[rows][:, cols], [alpha])
            self.coef_[cols], self.intercept_[cols] = W[0], b[0]

    @staticmethod
    def _ridge_path(F: np.ndarray, Y: np.ndarray, alphas: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ridge weights ``(n_alphas, k, d)`` and intercepts ``(n_alphas, k)`` for the ``k`` columns of ``Y``."""
        mean_f, mean_y = F.mean(axis=0), Y.mean(axis=0)
        Fc = F - mean_f
        evals, evecs = np.linalg.eigh(Fc.T @ Fc)
        proj = evecs.T @ (Fc.T @ (Y - mean_y))  # (d, k)
        shrink = 1.0 / (np.maximum(evals, 0.0)[None, :] + np.asarray(alphas, dtype=np.float64)[:, None])
        W = np.einsum("de,ae,ek->akd", evecs, shrink, proj)
        return W, mean_y[None, :] - np.einsum("d,akd->ak", mean_f, W)

    # ------------------------------------------------------------------ mlp
    def _mlp_forward(self, params: Params, F: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        acts = [F]
        for i in range(len(self.hidden)):
            acts.append(np.maximum(acts[-1] @ params[f"W{i}"] + params[f"b{i}"], 0.0))
        return acts[-1] @ params["Wout"] + params["bout"], acts

    def _mlp_loss(self, params: Params, F: np.ndarray, Y: np.ndarray, rows: np.ndarray,
                  rng: np.random.Generator | None) -> tuple[float, Params]:
        Z, acts = self._mlp_forward(params, F[rows])
        Yb = Y[rows]
        known = ~np.isnan(Yb)
        y = np.where(known, Yb, 0.0)
        count = max(int(known.sum()), 1)
        loss = float(np.where(known, np.logaddexp(0.0, Z) - y * Z, 0.0).sum() / count)
        if rng is None:
            return loss, {}
        delta = np.where(known, sigmoid(Z) - y, 0.0) / count
        grads = {"Wout": acts[-1].T @ delta, "bout": delta.sum(axis=0)}
        delta = delta @ params["Wout"].T
        for i in reversed(range(len(self.hidden))):
            delta = delta * (acts[i + 1] > 0)
            grads[f"W{i}"], grads[f"b{i}"] = acts[i].T @ delta, delta.sum(axis=0)
            delta = delta @ params[f"W{i}"].T
        return loss, grads

    def _fit_mlp(self, F: np.ndarray, Q: np.ndarray, rng: np.random.Generator) -> None:
        Y, _, _ = scaled_targets(Q)
        widths = [F.shape[1], *self.hidden]
        params: Params = {}
        for i in range(len(self.hidden)):  # He initialisation for ReLU layers
            params[f"W{i}"] = rng.normal(0.0, np.sqrt(2.0 / widths[i]), (widths[i], widths[i + 1]))
            params[f"b{i}"] = np.zeros(widths[i + 1])
        base = np.clip(_column_means(Y)[0], 0.02, 0.98)
        params["Wout"] = rng.normal(0.0, np.sqrt(1.0 / widths[-1]), (widths[-1], Q.shape[1]))
        params["bout"] = np.log(base / (1 - base))
        has_outcome = np.flatnonzero((~np.isnan(Y)).any(axis=1))
        train, val = inner_split(len(has_outcome), self.validation_fraction, rng)

        def loss_fn(p: Params, rows: np.ndarray, r: np.random.Generator | None) -> tuple[float, Params]:
            return self._mlp_loss(p, F, Y, has_outcome[rows], r)

        self.params_, self.n_epochs_ = train_adam(
            params, loss_fn, train, val, lr=self.lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
            max_epochs=self.max_epochs, patience=self.patience, rng=rng)

    # ------------------------------------------------------------------ router API
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self._check_params()
        _, self.quality_low_, self.quality_high_ = scaled_targets(dataset.quality)
        F = np.asarray(features, dtype=np.float64)
        self.feature_mean_, self.feature_scale_ = _standardiser(F)
        F = (F - self.feature_mean_) / self.feature_scale_
        rng = np.random.default_rng(self.seed)
        if self.model == "ridge":
            self._fit_ridge(F, dataset.quality, rng)
        else:
            self._fit_mlp(F, dataset.quality, rng)

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        F = (np.asarray(features, dtype=np.float64) - self.feature_mean_) / self.feature_scale_
        if self.model == "ridge":
            return np.clip(F @ self.coef_.T + self.intercept_, self.quality_low_, self.quality_high_)
        Z, _ = self._mlp_forward(self.params_, F)
        return self.quality_low_ + (self.quality_high_ - self.quality_low_) * sigmoid(Z)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"quality_low": self.quality_low_, "quality_high": self.quality_high_}
        arrays = {"feature_mean": self.feature_mean_, "feature_scale": self.feature_scale_}
        if self.model == "ridge":
            config["alpha"] = self.alpha_
            arrays.update(coef=self.coef_, intercept=self.intercept_)
        else:
            config["n_epochs"] = self.n_epochs_
            arrays.update({f"mlp.{k}": v for k, v in self.params_.items()})
        return config, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.quality_low_, self.quality_high_ = float(config["quality_low"]), float(config["quality_high"])
        self.feature_mean_ = np.asarray(arrays["feature_mean"], dtype=np.float64)
        self.feature_scale_ = np.asarray(arrays["feature_scale"], dtype=np.float64)
        if self.model == "ridge":
            self.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
            self.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
            self.alpha_ = float(config["alpha"])
            if self.coef_.shape[0] != len(self.candidates_):
                raise ValueError("ridge coefficients do not match the candidates")
        else:
            self.n_epochs_ = int(config["n_epochs"])
            names = [*(f"{p}{i}" for i in range(len(self.hidden)) for p in ("W", "b")), "Wout", "bout"]
            self.params_ = {k: np.asarray(arrays[f"mlp.{k}"], dtype=np.float64) for k in names}
            if self.params_["bout"].shape != (len(self.candidates_),):
                raise ValueError("MLP output layer does not match the candidates")


__all__ = ["MatrixFactorizationRouter", "ClassifierRouter", "QualityRegressor", "GENERAL", "RIDGE_ALPHAS"]
