"""`Router`: the interface every pre-generation router implements.

A router estimates a quality matrix ``S[n_queries, n_candidates]`` (``predict_quality``), a cost model gives
``C`` (``predict_cost``), and the shared rule of :mod:`rag_routing.decision` picks ``argmax S - λC`` subject to
``C <= B``. Subclasses write only ``_fit`` and ``_predict_quality`` (template methods, as LlamaIndex selectors
and scikit-learn estimators do) plus ``_get_state``/``_set_state`` for saving without pickle.

Inputs to ``predict_quality``/``route`` may be a list of query strings, a single string, a
:class:`~rag_routing.evaluation.dataset.RoutingDataset` (its cached embeddings are used when they come from the
router's featurizer), or an ``ndarray`` of precomputed features.
"""

from __future__ import annotations


import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag_routing.allowed_models import allow_models
from rag_routing.decision import RoutingDecision, decide, select
from rag_routing.embeddings import featurizer_from_state, make_featurizer
from rag_routing.errors import CorruptStateError, InvalidInputError, NotFittedError, UnknownCandidateError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.persistence import MAX_ARCHIVE_BYTES, read_state, write_state
from rag_routing.routers.support import GuardSettings
from rag_routing.validation import check_float

RouterInput = Any  # Sequence[str] | str | RoutingDataset | np.ndarray

#: Longest query accepted, in characters; longer input is a clear error rather than a silent truncation.
MAX_QUERY_CHARS = 200_000


def validate_queries(queries: Sequence[str] | str) -> list[str]:
    """Queries as a list of non-empty strings, or :class:`InvalidInputError` naming the bad one."""
    if isinstance(queries, str):
        queries = [queries]
    if isinstance(queries, (bytes, bytearray)) or not isinstance(queries, Iterable):
        raise InvalidInputError(f"queries must be a str or a list of str, got {type(queries).__name__}; decode bytes "
                                "to text first")
    items = list(queries)
    for i, q in enumerate(items):
        if not isinstance(q, str):
            raise InvalidInputError(f"query {i} is {type(q).__name__}; queries must be strings")
        if not q.strip():
            raise InvalidInputError(f"query {i} is empty; send a non-empty question")
        if len(q) > MAX_QUERY_CHARS:
            raise InvalidInputError(f"query {i} has {len(q)} characters; the limit is {MAX_QUERY_CHARS}")
    return items


class Router(ABC):
    """Base class of pre-generation routers (see module docstring).

    Parameters:
        lam: default λ of the decision rule (quality units per US $).
        budget: default per-query budget in US $ (``None`` = none).
        fallback: candidate name taken when nothing fits the budget (``None`` = raise NoRouteError).
        featurizer: ``None``/``"minilm"`` (offline MiniLM), ``"tfidf"``, a sentence-transformers name, or an
            object with ``fit``/``transform``/``get_state``.
    """

    name: ClassVar[str] = "router"
    #: False for routers that do not look at the query text (baselines).
    uses_features: ClassVar[bool] = True
    #: False for routers too slow to train for ``rag-routing bench --routers all`` (fine-tuned encoders).
    in_bench_all: ClassVar[bool] = True
    #: Support estimate, fallback to the prior and shrinkage (:mod:`rag_routing.routers.support`); assign
    #: ``router.guard_settings = GuardSettings(...)`` (or ``GuardSettings.off()``) before ``fit`` to change them.
    guard_settings: GuardSettings = GuardSettings()

    @property
    def routes_out_of_scope_itself(self) -> bool:
        """True when the router already sends queries unlike its training data where its user said
        (:class:`~rag_routing.routers.semantic.SemanticRouter` with ``no_route``): then the support fallback does not
        override that choice."""
        return False

    def __init__(
        self,
        *,
        lam: float = 0.0,
        budget: float | None = None,
        fallback: str | None = None,
        featurizer: Any = None,
    ):
        self.lam = lam
        self.budget = budget
        self.fallback = fallback
        self.featurizer = featurizer

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset: RoutingDataset) -> Router:
        """Learn from a :class:`RoutingDataset`; returns ``self``."""
        if not isinstance(dataset, RoutingDataset):
            raise InvalidInputError(f"fit expects a RoutingDataset, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise InvalidInputError("cannot fit a router on an empty dataset")
        mean_cost = dataset.mean_cost()
        if np.isnan(mean_cost).any():
            unknown = [c for c, v in zip(dataset.candidates, mean_cost) if np.isnan(v)]
            raise InvalidInputError(f"no known cost for candidates {unknown}; price them before fitting")
        before = dict(self.__dict__)  # a failed fit leaves the router as it was, never half-fitted
        try:
            self.candidates_ = list(dataset.candidates)
            self.mean_cost_ = mean_cost
            features = None
            if self.uses_features:
                self.featurizer_ = make_featurizer(self.featurizer)
                # Reuse the dataset's embeddings only when they come from this (ready) featurizer: an unfitted
                # TF-IDF has the same name as the fitted one that made them, but not the same projection.
                ready = getattr(self.featurizer_, "is_fitted", True)
                if dataset.embeddings is not None and dataset.embedding_model == self.featurizer_.name and ready:
                    features = dataset.embeddings
                else:
                    self.featurizer_.fit(dataset.queries)
                    features = self.featurizer_.transform(dataset.queries)
            self._fit(features, dataset)
            from rag_routing.routers.support import fit_guards

            fit_guards(self, features, dataset)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return self

    @abstractmethod
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        """Learn from ``features`` (``None`` when ``uses_features`` is False) and the outcomes in ``dataset``."""

    # ------------------------------------------------------------------ prediction
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "candidates_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(dataset) or load(path) first")

    def features(self, X: RouterInput) -> np.ndarray:
        """Feature matrix for ``X`` (see module docstring for accepted inputs)."""
        self._check_fitted()
        if isinstance(X, np.ndarray):
            F = np.asarray(X, dtype=np.float32)
            if F.ndim == 1:
                F = F[None, :]
            if F.ndim != 2 or not np.isfinite(F).all():
                raise InvalidInputError("feature matrix must be 2-D and finite")
            return F
        if isinstance(X, RoutingDataset):
            if X.embeddings is not None and X.embedding_model == self.featurizer_.name:
                return X.embeddings
            X = X.queries
        return self.featurizer_.transform(validate_queries(X))

    @staticmethod
    def _texts(X: RouterInput) -> list[str] | None:
        """The query texts of ``X`` (None for a feature matrix)."""
        if isinstance(X, np.ndarray):
            return None
        if isinstance(X, RoutingDataset):
            return list(X.queries)
        return validate_queries(X)

    def _n_rows(self, X: RouterInput) -> int:
        if isinstance(X, np.ndarray):
            return 1 if X.ndim == 1 else X.shape[0]
        if isinstance(X, RoutingDataset):
            return len(X)
        return len(validate_queries(X))

    def predict_quality(self, X: RouterInput) -> np.ndarray:
        """``(n, m)`` predicted quality of every candidate for every query (higher is better), after the
        shared guards: shrinkage, and the training-mean prior for out-of-support queries."""
        return self._guarded_quality(X)[0]

    def predict_raw_quality(self, X: RouterInput) -> np.ndarray:
        """The router's own ``(n, m)`` estimates, before shrinkage and the out-of-support fallback."""
        return self._guarded_quality(X, guard=False)[0]

    def _guarded_quality(self, X: RouterInput, guard: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(quality, support p-values)``: the one path every estimate goes through (p NaN where unknown)."""
        from rag_routing.routers.support import apply_guards

        self._check_fitted()
        features = self.features(X) if self.uses_features else None
        S = np.asarray(self._predict_quality(features, X), dtype=np.float64)
        n = features.shape[0] if features is not None else self._n_rows(X)
        if S.shape != (n, len(self.candidates_)):
            raise RuntimeError(f"{type(self).__name__} predicted shape {S.shape}, expected {(n, len(self.candidates_))}")
        return apply_guards(self, S, features, self._texts(X)) if guard else (S, np.full(n, np.nan))

    def support(self, X: RouterInput) -> np.ndarray:
        """``(n,)`` conformal p-value of each query's distance from the training data in this router's feature
        space (small = unlike anything it was trained on); NaN where the router has no support estimate."""
        from rag_routing.routers.support import support_p_values

        self._check_fitted()
        features = self.features(X) if self.uses_features else None
        return support_p_values(self, features, self._n_rows(X) if features is None else features.shape[0],
                                self._texts(X))

    def out_of_support(self, X: RouterInput, alpha: float | None = None) -> np.ndarray:
        """``(n,)`` True where the support p-value is below ``alpha`` (default ``guard_settings.alpha``)."""
        p = self.support(X)
        return np.nan_to_num(p, nan=1.0) < (self.guard_settings.alpha if alpha is None else float(alpha))

    @abstractmethod
    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        """``(n, m)`` quality estimates."""

    def predict_cost(self, X: RouterInput) -> np.ndarray:
        """``(n, m)`` expected US $ per call: each candidate's mean cost on the training data."""
        self._check_fitted()
        return np.broadcast_to(self.mean_cost_, (self._n_rows(X), len(self.candidates_))).copy()

    def score(self, X: RouterInput, strong: str | None = None, weak: str | None = None) -> np.ndarray:
        """RouteLLM-style score: how much better ``strong`` is predicted to be than ``weak`` (higher means
        "send to the strong model"). Defaults: the most and the least expensive candidates."""
        self._check_fitted()
        S = self.predict_quality(X)
        s = self._candidate_position(strong) if strong else int(np.argmax(self.mean_cost_))
        w = self._candidate_position(weak) if weak else int(np.argmin(self.mean_cost_))
        return S[:, s] - S[:, w]

    def _candidate_position(self, name: str) -> int:
        try:
            return self.candidates_.index(name)
        except ValueError:
            raise UnknownCandidateError(f"unknown candidate {name!r}; router knows {self.candidates_}") from None

    def _removable_position(self, name: str) -> int:
        """The column of candidate ``name`` for ``remove_candidate``, or a clear error when the router cannot
        lose it (unfitted, unknown, the only candidate left, or the declared fallback)."""
        self._check_fitted()
        j = self._candidate_position(name)
        if len(self.candidates_) == 1:
            raise InvalidInputError(f"cannot remove {name!r}: it is the only candidate left")
        if getattr(self, "fallback", None) == name:
            raise InvalidInputError(f"{name!r} is the fallback candidate; set another fallback first")
        return j

    # ------------------------------------------------------------------ routing
    def route_indices(
        self, X: RouterInput, lam: float | None = None, budget: float | np.ndarray | None = None
    ) -> np.ndarray:
        """Chosen candidate index per query (vectorised; no explanations)."""
        lam = self.lam if lam is None else lam
        budget = self.budget if budget is None else budget
        return select(self.predict_quality(X), self.predict_cost(X), lam, budget, self.fallback, self.candidates_)

    def route(
        self, X: RouterInput, lam: float | None = None, budget: float | np.ndarray | None = None
    ) -> list[RoutingDecision]:
        """An explained :class:`RoutingDecision` per query."""
        lam = self.lam if lam is None else lam
        budget = self.budget if budget is None else budget
        from rag_routing.routers.support import annotate

        S, p = self._guarded_quality(X)
        return annotate(self, decide(S, self.predict_cost(X), self.candidates_, lam, budget, self.fallback,
                                     router=self.name), p)

    def route_one(self, query: str, lam: float | None = None, budget: float | None = None) -> RoutingDecision:
        return self.route([query], lam, budget)[0]

    # ------------------------------------------------------------------ persistence
    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (scikit-learn convention), without the featurizer object."""
        params = {}
        for klass in type(self).__mro__:
            if klass is object:
                continue
            for pname, p in inspect.signature(klass.__init__).parameters.items():
                if pname in ("self", "featurizer") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                if pname not in params and hasattr(self, pname):
                    params[pname] = getattr(self, pname)
        return params

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Learned state as (JSON-able config, numeric arrays). Override in subclasses."""
        return {}, {}

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore what ``_get_state`` returned. Override in subclasses."""

    def save(self, path: str | Path) -> Path:
        """Write the fitted router to ``path`` (``.npz``) atomically; returns the path written."""
        return write_state(path, *self.to_state())

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted router as (JSON-able description, numeric arrays): what :meth:`save` writes and
        :meth:`from_state` reads back (routers made of routers nest their members' states with it)."""
        self._check_fitted()
        config, arrays = self._get_state()
        meta: dict[str, Any] = {
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "router": self.name,
            "params": self.get_params(),
            "candidates": self.candidates_,
            "state": config,
        }
        all_arrays = {"mean_cost": self.mean_cost_, **{f"state.{k}": v for k, v in arrays.items()}}
        if self.uses_features:
            f_config, f_arrays = self.featurizer_.get_state()
            meta["featurizer"] = f_config
            all_arrays.update({f"featurizer.{k}": v for k, v in f_arrays.items()})
        from rag_routing.routers.support import guards_to_state

        meta["guards"], g_arrays = guards_to_state(self)
        all_arrays.update({f"guards.{k}": v for k, v in g_arrays.items()})
        return meta, all_arrays

    @classmethod
    def load(cls, path: str | Path, *, allowed_models: Sequence[str] | None = None,
             max_bytes: int = MAX_ARCHIVE_BYTES) -> Router:
        """Load a router saved with :meth:`save`. Only registered rag_routing router classes are accepted; the
        file may name only the packaged embedding model or one in ``allowed_models`` (names or paths; see
        :mod:`rag_routing.allowed_models`), and may hold at most ``max_bytes`` (on disk and unpacked)."""
        meta, arrays = read_state(path, max_bytes)
        with allow_models(allowed_models):
            return cls.from_state(meta, arrays, source=str(path))

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], source: str = "saved state") -> Router:
        """Rebuild a router from :meth:`to_state`'s output; ``source`` names it in errors. Only registered
        rag_routing router classes are accepted; anything malformed is a :class:`CorruptStateError`."""
        from rag_routing.routers.registry import get_router_class

        path, arrays = source, dict(arrays)
        try:
            klass = get_router_class(str(meta["router"]))
        except (KeyError, InvalidInputError) as exc:
            raise CorruptStateError(f"{path}: unknown router in saved state ({exc})") from exc
        if f"{klass.__module__}:{klass.__qualname__}" != meta.get("class"):
            raise CorruptStateError(f"{path}: router name and class disagree ({meta.get('class')})")
        if not issubclass(klass, cls):
            raise CorruptStateError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        try:
            router = klass(**meta["params"])
            check_float("lam", router.lam)  # a file can hold anything: "10" would fail only at the first route
            router.candidates_ = [str(c) for c in meta["candidates"]]
            router.mean_cost_ = np.asarray(arrays.pop("mean_cost"), dtype=np.float64)
            if router.uses_features:
                f_arrays = {k[len("featurizer."):]: v for k, v in arrays.items() if k.startswith("featurizer.")}
                router.featurizer_ = featurizer_from_state(meta["featurizer"], f_arrays)
            state = {k[len("state."):]: v for k, v in arrays.items() if k.startswith("state.")}
            router._set_state(meta.get("state", {}), state)
            from rag_routing.routers.support import guards_from_state

            guards_from_state(router, meta.get("guards"),
                              {k[len("guards."):]: v for k, v in arrays.items() if k.startswith("guards.")})
        except CorruptStateError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CorruptStateError(f"{path}: saved router state is incomplete or malformed ({exc})") from exc
        if len(router.mean_cost_) != len(router.candidates_):
            raise CorruptStateError(f"{path}: {len(router.mean_cost_)} costs for {len(router.candidates_)} candidates")
        return router

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def load_router(path: str | Path, *, allowed_models: Sequence[str] | None = None,
                max_bytes: int = MAX_ARCHIVE_BYTES) -> Router:
    """Load any saved router (the class is read from the file, among registered routers only); see
    :meth:`Router.load` for ``allowed_models`` and ``max_bytes``."""
    return Router.load(path, allowed_models=allowed_models, max_bytes=max_bytes)



__all__ = ["Router", "RouterInput", "load_router", "validate_queries", "MAX_QUERY_CHARS"]
