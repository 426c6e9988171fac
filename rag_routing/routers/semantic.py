"""`SemanticRouter`: routes defined by example utterances (aurelio-labs/semantic-router; survey §5.1), inside the
shared decision rule.

Each :class:`Route` names the candidate it sends to and a few example utterances. A query's score for a route
is the mean of its ``top_k`` best utterance scores, where an utterance scores

    alpha · cosine(query, utterance) + (1 - alpha) · BM25(query, utterance) / max BM25 over all utterances

(hybrid dense + sparse, as semantic-router's ``HybridRouter``). The route with the highest score among those
that clear their own threshold wins; when none clears, the query has *no route* (``None``). Thresholds are
fitted per route to maximise that route's F1 on labelled examples (``metadata[label_key]`` of the training set,
or :meth:`SemanticRouter.fit_thresholds_to`). Without labelled examples and without a fixed ``threshold`` they are
fitted from the route utterances themselves (the default): each utterance is scored leave-one-out against the
others (cross-fitted for the classifier scorer); a route's threshold is the higher of its leave-one-out F1 optimum
and the ``threshold_quantile`` quantile of its own utterances' scores, so in-scope queries clear it and queries
unlike every route do not (a fixed 0.5 rejected 73 of 80 in-scope utterances with the default embedder).

Inside the shared rule the winning route's candidate gets quality 1 and the others 0. A no-route query goes to
``no_route`` when that names a candidate; otherwise every candidate keeps its mean training quality (so the
best single model, traded against cost by λ, takes it) and the decision is flagged
``metadata["semantic_route"] = None``. With ``no_route`` set the router gets no support fallback
(``Router.routes_out_of_scope_itself``): its thresholds already decide what is out of scope, and where it goes.
:meth:`SemanticRouter.match` returns the route names themselves.

Without ``routes`` the router builds them from the training data: one route per candidate, whose utterances are
training queries where that candidate is the oracle choice (the cheapest with the best known quality).

:func:`bootstrap_utterances` asks an LLM for synthetic examples of a route from its description (the usual way
to start a route with no data); ``scorer="classifier"`` then trains a small logistic-regression classifier on
the utterance vectors and uses its probabilities instead of the nearest-utterance cosine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput, validate_queries
from rag_routing.validation import check_choice, check_float, check_int


class Route(BaseModel):
    """A named route: example ``utterances``, the ``candidate`` it sends to (default: its name) and an optional
    fixed ``threshold`` (``None`` = fitted, or the router's default)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    utterances: list[str]
    candidate: str | None = None
    threshold: float | None = None

    @field_validator("utterances")
    @classmethod
    def _some_utterances(cls, v: list[str]) -> list[str]:
        v = [u.strip() for u in v if isinstance(u, str) and u.strip()]
        if not v:
            raise ValueError("a route needs at least one non-empty utterance")
        return v


def parse_routes(routes: Sequence[Route | Mapping[str, Any]]) -> list[Route]:
    """Validated routes with unique names, or :class:`InvalidInputError` naming the bad one."""
    if isinstance(routes, (str, bytes, Mapping)) or not isinstance(routes, Sequence):
        raise InvalidInputError("routes must be a list of {name, utterances, candidate, threshold} mappings")
    parsed = []
    for i, route in enumerate(routes):
        try:
            parsed.append(route if isinstance(route, Route) else Route.model_validate(dict(route)))
        except (ValidationError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"route {i} is invalid: {exc}") from None
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"route names must be unique, got {names}")
    return parsed


class SemanticRouter(Router):
    """Utterance-defined routes with hybrid dense + BM25 scoring and fitted per-route thresholds (aurelio-labs
    semantic-router; survey §5.1). See the module docstring for the score, the thresholds and no-route queries.

    Estimates quality as 1 for the candidate of the matched route, 0 for the others.

    Parameters:
        routes: :class:`Route` objects or mappings; ``None`` = one route per candidate from the training data.
        alpha: weight of the dense score (1 = dense only, 0 = BM25 only).
        top_k: utterance scores averaged per route.
        threshold: threshold of routes that have none fixed and no labelled examples (``None``, the default:
            fitted from the route utterances, leave-one-out).
        threshold_quantile: share of a route's own (leave-one-out) utterances allowed below its fitted threshold.
        fit_thresholds: fit thresholds on labelled examples when ``fit`` finds them.
        label_key: metadata key holding the route name (or ``None``) of each training query.
        no_route: candidate taken by queries with no route (``None`` = mean training quality, see above).
        scorer: ``"similarity"`` (best utterance cosines) or ``"classifier"`` (logistic regression on utterances).
        max_utterances: utterances per route when routes are built from the training data.
        seed: sampling of those utterances.
        **kwargs: ``lam``, ``budget``, ``fallback``, ``featurizer`` (see :class:`Router`).

    Example:
        >>> queries = ["solve this integral", "differentiate the function", "hello, how are you?", "good day"]
        >>> ds = RoutingDataset(queries, ["small", "large"], [[0, 1], [0, 1], [1, 1], [1, 1]], [[0.001, 0.02]] * 4)
        >>> routes = [{"name": "maths", "candidate": "large", "utterances": ["solve this integral",
        ...                                                                  "differentiate the function"]},
        ...           {"name": "chat", "candidate": "small", "utterances": ["hello, how are you?"]}]
        >>> router = SemanticRouter(routes=routes, featurizer="tfidf", alpha=0.0, top_k=1, threshold=0.2).fit(ds)
        >>> router.match(["please solve this integral", "hello, how are you today?", "zzz"])
        ['maths', 'chat', None]
    """

    name = "semantic"

    def __init__(self, *, routes: Sequence[Route | Mapping[str, Any]] | None = None, alpha: float = 0.7,
                 top_k: int = 3, threshold: float | None = None, fit_thresholds: bool = True,
                 label_key: str = "route", no_route: str | None = None, scorer: str = "similarity",
                 max_utterances: int = 50, seed: int = 0, threshold_quantile: float = 0.02, **kwargs: Any):
        super().__init__(**kwargs)
        self.routes = None if routes is None else [r.model_dump() for r in parse_routes(routes)]
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self.top_k = check_int("top_k", top_k)
        self.threshold = None if threshold is None else check_float("threshold", threshold, -1.0, 1.0)
        self.threshold_quantile = check_float("threshold_quantile", threshold_quantile, 0.0, 0.5)
        self.fit_thresholds = bool(fit_thresholds)
        self.label_key = str(label_key)
        self.no_route = no_route
        self.scorer = check_choice("scorer", scorer, ("similarity", "classifier"))
        self.max_utterances = check_int("max_utterances", max_utterances)
        self.seed = check_int("seed", seed, low=0)

    # ------------------------------------------------------------------ fitting
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self.mean_quality_ = np.nan_to_num(dataset.mean_quality(), nan=0.0)
        labels: list[str | None] | None
        if self.routes is None:
            routes, labels, held_out = self._routes_from_outcomes(dataset)
        else:
            routes = parse_routes(self.routes)
            held_out = np.arange(len(dataset))
            key = self.label_key
            has_labels = any(key in m for m in dataset.metadata)
            labels = [str(m[key]) if m.get(key) else None for m in dataset.metadata] if has_labels else None
        self._index_routes(routes)
        default = 0.5 if self.threshold is None else self.threshold  # replaced below unless fixed
        self.thresholds_ = np.array([default if r.threshold is None else r.threshold for r in routes])
        if self.fit_thresholds and labels is not None and len(held_out):
            sub_labels = [labels[i] for i in held_out]
            self.fit_thresholds_on(self._route_scores(features[held_out],
                                                      [dataset.queries[i] for i in held_out]), sub_labels)
        elif self.threshold is None:
            self._fit_thresholds_from_utterances([r.threshold is not None for r in routes])

    def _routes_from_outcomes(self, dataset: RoutingDataset) -> tuple[list[Route], list[str | None], np.ndarray]:
        Q = np.where(np.isnan(dataset.quality), -np.inf, dataset.quality)
        C = np.nan_to_num(dataset.cost, nan=np.inf)
        best = Q.max(axis=1, keepdims=True)
        oracle = np.where(Q >= best - 1e-12, C, np.inf).argmin(axis=1)
        labels: list[str | None] = [dataset.candidates[j] if np.isfinite(best[i, 0]) else None
                                    for i, j in enumerate(oracle)]
        rng = np.random.default_rng(self.seed)
        routes, used = [], np.zeros(len(dataset), dtype=bool)
        for j, cand in enumerate(dataset.candidates):
            rows = np.flatnonzero((oracle == j) & np.isfinite(best[:, 0]))
            if rows.size == 0:
                continue
            pick = rng.permutation(rows)[: self.max_utterances]
            used[pick] = True
            routes.append(Route(name=cand, candidate=cand, utterances=[dataset.queries[i] for i in pick]))
        if not routes:
            raise InvalidInputError("no query has a known outcome; cannot build routes from the training data")
        return routes, labels, np.flatnonzero(~used)

    def _index_routes(self, routes: list[Route]) -> None:
        from rag_routing.retrieval.bm25_scoring import SparseBM25
        from rag_routing.retrieval.tokenizer import WordTokenizer

        self._routes = routes
        self.route_names_ = [r.name for r in routes]
        self.route_candidates_ = [r.candidate or r.name for r in routes]
        for r, cand in zip(routes, self.route_candidates_):
            if cand not in self.candidates_:
                raise InvalidInputError(f"route {r.name!r} sends to unknown candidate {cand!r}; "
                                        f"candidates are {self.candidates_}")
        if self.no_route is not None and self.no_route not in self.candidates_:
            raise InvalidInputError(f"no_route {self.no_route!r} is not a candidate; candidates are {self.candidates_}")
        self.utterances_ = [u for r in routes for u in r.utterances]
        self.utterance_route_ = np.repeat(np.arange(len(routes)), [len(r.utterances) for r in routes])
        self.utterance_vectors_ = np.asarray(self.featurizer_.transform(self.utterances_), dtype=np.float32)
        self._tokenizer = WordTokenizer()
        self._bm25 = SparseBM25([self._tokenizer(u) for u in self.utterances_])
        if self.scorer == "classifier":
            self._fit_classifier()

    def _fit_classifier(self) -> None:
        from sklearn.linear_model import LogisticRegression

        k = len(self.route_names_)
        if k < 2:
            raise InvalidInputError("scorer='classifier' needs at least two routes")
        clf = LogisticRegression(C=10.0, max_iter=1000).fit(self.utterance_vectors_, self.utterance_route_)
        self.classifier_coef_ = clf.coef_ if k > 2 else np.vstack([-clf.coef_, clf.coef_]) / 2
        self.classifier_intercept_ = clf.intercept_ if k > 2 else np.array([-1, 1]) * clf.intercept_[0] / 2

    def _fit_thresholds_from_utterances(self, fixed: Sequence[bool]) -> None:
        """Thresholds from the utterances alone: each scored without itself (leave-one-out)."""
        labels = [self.route_names_[r] for r in self.utterance_route_]
        scores = self._route_scores(self.utterance_vectors_, self.utterances_, leave_one_out=True)
        kept = self.thresholds_.copy()
        self.fit_thresholds_on(np.where(np.isfinite(scores), scores, -1.0), labels)
        top = scores.argmax(axis=1)
        for r in range(len(self.route_names_)):
            own = scores[(self.utterance_route_ == r) & (top == r), r]
            own = own[np.isfinite(own)]
            if fixed[r]:
                self.thresholds_[r] = kept[r]
            elif own.size:
                self.thresholds_[r] = max(self.thresholds_[r], float(np.quantile(own, self.threshold_quantile)))

    # ------------------------------------------------------------------ scoring
    def _route_scores(self, features: np.ndarray, queries: Sequence[str] | None,
                      leave_one_out: bool = False) -> np.ndarray:
        """``(n, routes)`` hybrid score of every route; BM25 is skipped (dense only) when no text is given.
        ``leave_one_out``: the rows are the utterances themselves, each scored without itself (a route left
        with no other utterance scores ``-inf``)."""
        F = np.asarray(features, dtype=np.float32)
        k = len(self.route_names_)
        if queries is not None and self.alpha < 1.0:
            sparse = self._bm25.scores([self._tokenizer(q) for q in queries])
            if leave_one_out:
                np.fill_diagonal(sparse, 0.0)
            top = sparse.max(axis=1, keepdims=True)
            sparse = np.where(top > 0, sparse / np.where(top > 0, top, 1.0), 0.0)
            alpha = self.alpha
        else:
            sparse, alpha = np.zeros((len(F), len(self.utterances_))), 1.0
        if self.scorer == "classifier":
            proba = self._cross_fitted_proba() if leave_one_out else self._proba(F)
            dense = proba[:, self.utterance_route_]
        else:
            dense = F @ self.utterance_vectors_.T
        per_utterance = alpha * dense + (1.0 - alpha) * sparse
        if leave_one_out:
            np.fill_diagonal(per_utterance, -np.inf)
        scores = np.empty((len(F), k))
        for r in range(k):
            cols = np.sort(per_utterance[:, self.utterance_route_ == r], axis=1)[:, ::-1][:, : self.top_k]
            finite = np.isfinite(cols)
            with np.errstate(invalid="ignore", divide="ignore"):
                scores[:, r] = np.where(finite.any(axis=1), np.where(finite, cols, 0.0).sum(axis=1)
                                        / np.maximum(finite.sum(axis=1), 1), -np.inf)
        return scores

    def _proba(self, F: np.ndarray) -> np.ndarray:
        logits = F @ self.classifier_coef_.T + self.classifier_intercept_
        proba = np.exp(logits - logits.max(axis=1, keepdims=True))
        return proba / proba.sum(axis=1, keepdims=True)

    def _cross_fitted_proba(self, folds: int = 5) -> np.ndarray:
        """Route probabilities of each utterance from a classifier fitted without its fold."""
        from sklearn.linear_model import LogisticRegression

        y = self.utterance_route_
        assignment = np.random.default_rng(self.seed).permutation(len(y)) % folds
        proba = np.full((len(y), len(self.route_names_)), 1.0 / len(self.route_names_))
        for f in range(folds):
            train = assignment != f
            if len(np.unique(y[train])) < 2 or train.all():
                continue
            clf = LogisticRegression(C=10.0, max_iter=1000).fit(self.utterance_vectors_[train], y[train])
            proba[np.ix_(~train, clf.classes_)] = clf.predict_proba(self.utterance_vectors_[~train])
        return proba

    def fit_thresholds_on(self, scores: np.ndarray, labels: Sequence[str | None]) -> np.ndarray:
        """Per-route thresholds maximising each route's F1 (a query is predicted as route r when r has its best
        score and the score clears r's threshold); ``labels`` hold route names or ``None``. Returns them."""
        top = scores.argmax(axis=1)
        for r, name in enumerate(self.route_names_):
            positive = np.array([lab == name for lab in labels])
            mine = scores[top == r, r]
            if not positive.any() or mine.size == 0:
                continue
            best_f1, best_t = -1.0, self.thresholds_[r]
            for t in np.unique(mine):
                predicted = (top == r) & (scores[:, r] >= t)
                tp = float((predicted & positive).sum())
                f1 = 2 * tp / (predicted.sum() + positive.sum())
                if f1 > best_f1 + 1e-12:
                    best_f1, best_t = f1, float(t)
            self.thresholds_[r] = best_t
        return self.thresholds_

    def fit_thresholds_to(self, queries: Sequence[str], labels: Sequence[str | None]) -> SemanticRouter:
        """Refit the thresholds on labelled ``queries`` (route name or ``None`` each); returns ``self``."""
        self._check_fitted()
        queries = validate_queries(queries)
        if len(labels) != len(queries):
            raise InvalidInputError(f"{len(labels)} labels for {len(queries)} queries")
        unknown = {lab for lab in labels if lab is not None and lab not in self.route_names_}
        if unknown:
            raise InvalidInputError(f"unknown route labels {sorted(unknown)}; routes are {self.route_names_}")
        self.fit_thresholds_on(self._route_scores(self.features(queries), queries), labels)
        return self

    def _chosen_routes(self, features: np.ndarray, X: RouterInput) -> np.ndarray:
        if isinstance(X, RoutingDataset):
            queries: Sequence[str] | None = X.queries
        elif isinstance(X, np.ndarray):
            queries = None
        else:
            queries = validate_queries(X)
        scores = self._route_scores(features, queries)
        cleared = np.where(scores >= self.thresholds_, scores, -np.inf)
        chosen = cleared.argmax(axis=1)
        return np.where(np.isfinite(cleared.max(axis=1)), chosen, -1)

    @property
    def routes_out_of_scope_itself(self) -> bool:
        """With ``no_route`` set, a query that clears no threshold goes where the user said, not to the support
        fallback's best fixed candidate (the thresholds are this router's own support test)."""
        return self.no_route is not None

    def match(self, X: RouterInput) -> list[str | None]:
        """The route name chosen for each query, ``None`` where no route clears its threshold."""
        chosen = self._chosen_routes(self.features(X), X)
        return [self.route_names_[r] if r >= 0 else None for r in chosen.tolist()]

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        chosen = self._chosen_routes(features, X)
        S = np.tile(self.mean_quality_, (len(chosen), 1))
        index = {c: j for j, c in enumerate(self.candidates_)}
        for row, r in enumerate(chosen.tolist()):
            target = self.route_candidates_[r] if r >= 0 else self.no_route
            if target is not None:
                S[row] = 0.0
                S[row, index[target]] = 1.0
        return S

    def route(self, X: RouterInput, lam: float | None = None, budget: float | np.ndarray | None = None) -> list:
        """As :meth:`Router.route`, with ``metadata["semantic_route"]`` (route name or ``None``) per decision."""
        X = self._embedded(X)  # embed once: the decision and the route names below reuse the vectors
        decisions = super().route(X, lam, budget)
        for decision, name in zip(decisions, self.match(X)):
            decision.metadata["semantic_route"] = name
            if name is None:
                decision.reason = "no route cleared its threshold; " + decision.reason
        return decisions

    def _embedded(self, X: RouterInput) -> RouterInput:
        """``X`` as a dataset carrying this router's features (an ndarray, or ready embeddings, as they are)."""
        self._check_fitted()
        if isinstance(X, np.ndarray):
            return X
        name = self.featurizer_.name
        if isinstance(X, RoutingDataset):
            return X if X.embeddings is not None and X.embedding_model == name else \
                X.with_embeddings(self.featurizer_.transform(X.queries), name)
        queries = validate_queries(X)
        n, m = len(queries), len(self.candidates_)
        return RoutingDataset(queries, self.candidates_, np.full((n, m), np.nan), np.zeros((n, m)),
                              embeddings=self.featurizer_.transform(queries), embedding_model=name)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"routes": [r.model_dump() for r in self._routes]}
        arrays = {"mean_quality": self.mean_quality_, "thresholds": self.thresholds_,
                  "utterance_vectors": self.utterance_vectors_}
        if self.scorer == "classifier":
            arrays.update(classifier_coef=self.classifier_coef_, classifier_intercept=self.classifier_intercept_)
        return config, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        from rag_routing.retrieval.bm25_scoring import SparseBM25
        from rag_routing.retrieval.tokenizer import WordTokenizer

        routes = parse_routes(config["routes"])
        self._routes = routes
        self.route_names_ = [r.name for r in routes]
        self.route_candidates_ = [r.candidate or r.name for r in routes]
        self.utterances_ = [u for r in routes for u in r.utterances]
        self.utterance_route_ = np.repeat(np.arange(len(routes)), [len(r.utterances) for r in routes])
        self.utterance_vectors_ = np.asarray(arrays["utterance_vectors"], dtype=np.float32)
        self.mean_quality_ = np.asarray(arrays["mean_quality"], dtype=np.float64)
        self.thresholds_ = np.asarray(arrays["thresholds"], dtype=np.float64)
        if self.scorer == "classifier":
            self.classifier_coef_ = np.asarray(arrays["classifier_coef"], dtype=np.float64)
            self.classifier_intercept_ = np.asarray(arrays["classifier_intercept"], dtype=np.float64)
        self._tokenizer = WordTokenizer()
        self._bm25 = SparseBM25([self._tokenizer(u) for u in self.utterances_])
        if len(self.utterance_vectors_) != len(self.utterances_) or len(self.thresholds_) != len(routes):
            raise ValueError("utterance vectors or thresholds do not match the saved routes")


# ---------------------------------------------------------------------- synthetic utterances
_BULLET = re.compile(r"^\s*(?:[-*•]+|\d+[.)]|\(\d+\))\s*")

BOOTSTRAP_PROMPT = ("Write {n} different short user questions or requests that belong to this category: "
                    "{description}\nOne per line, no numbering, no explanations.")


def _call_llm(llm: Any, prompt: str) -> str:
    if hasattr(llm, "generate"):
        out = llm.generate(prompt)
    elif hasattr(llm, "invoke"):
        out = llm.invoke(prompt)
    elif callable(llm):
        out = llm(prompt)
    else:
        raise InvalidInputError(f"{type(llm).__name__} has no generate, invoke or __call__; pass an LLM")
    text = getattr(out, "text", None)
    text = text if isinstance(text, str) else getattr(out, "content", out)
    if not isinstance(text, str):
        raise InvalidInputError(f"the LLM returned {type(out).__name__}, not text")
    return text


def bootstrap_utterances(route_description: str, llm: Any, n: int = 20, *, max_rounds: int = 3,
                         max_chars: int = 300) -> list[str]:
    """Up to ``n`` distinct synthetic utterances for a route, asked from ``llm`` (a :class:`LocalLLM`, anything
    with ``generate``/``invoke`` returning text or an object with ``.text``/``.content``, or a callable).

    Lines are stripped of bullets and numbering and deduplicated case-insensitively; the LLM is asked again
    (at most ``max_rounds`` calls) while fewer than ``n`` remain. Calls through a :class:`LocalLLM` are recorded
    by the ambient ledger like any other call.

    Example:
        >>> fake = lambda prompt: "1. reset my password\\n2. Reset my password\\n- I forgot my login"
        >>> bootstrap_utterances("account access problems", fake, n=5, max_rounds=1)
        ['reset my password', 'I forgot my login']
    """
    if not isinstance(route_description, str) or not route_description.strip():
        raise InvalidInputError("route_description must be a non-empty string")
    n = check_int("n", n)
    seen: set[str] = set()
    found: list[str] = []
    for _ in range(check_int("max_rounds", max_rounds)):
        text = _call_llm(llm, BOOTSTRAP_PROMPT.format(n=n - len(found), description=route_description.strip()))
        for line in text.splitlines():
            line = _BULLET.sub("", line).strip().strip('"').strip()
            key = " ".join(line.lower().split())
            if line and len(line) <= max_chars and key not in seen:
                seen.add(key)
                found.append(line)
        if len(found) >= n:
            break
    return found[:n]


def routes_from_descriptions(descriptions: Mapping[str, tuple[str, str]], llm: Any, n: int = 20,
                             **kwargs: Any) -> list[Route]:
    """Routes ``{name: (description, candidate)}`` whose utterances come from :func:`bootstrap_utterances`;
    pass them to ``SemanticRouter(routes=..., scorer="classifier")`` to train a classifier on them."""
    routes = []
    for name, (description, candidate) in descriptions.items():
        utterances = bootstrap_utterances(description, llm, n, **kwargs)
        if not utterances:
            raise InvalidInputError(f"the LLM gave no usable utterance for route {name!r}")
        routes.append(Route(name=name, candidate=candidate, utterances=utterances))
    return routes


__all__ = ["SemanticRouter", "Route", "parse_routes", "bootstrap_utterances", "routes_from_descriptions",
           "BOOTSTRAP_PROMPT"]
