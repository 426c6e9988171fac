"""A router made of routers: the members' quality predictions averaged, each weighted by how well it ranks
the candidates on held-out queries (stacking, Wolpert 1992; Breiman 1996).

Routers that read different evidence (sparse n-grams, dense embeddings, neighbours, predicted query classes)
make partly independent errors, and an average of weak, partly independent estimates is usually at least as good
as the best of them without knowing in advance which one that is. On RouteLLM MMLU (5-fold CV inside the
training half) ``tfidf_lr`` + ``mf`` + ``knn`` reach APGR 0.675 against 0.670 / 0.655 / 0.652 alone, 0.679 with
a subject classifier (``classifier`` with ``label_key="subject"``, which predicts the subject from the text);
on the test half the ensemble ties with ``tfidf_lr`` (0.689 against 0.692) and beats ``mf`` (0.667).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput
from rag_routing.routers.matrix_factorization import inner_split
from rag_routing.validation import check_number

logger = logging.getLogger(__name__)

#: Members of ``EnsembleRouter()``: routers that read different evidence and need no metadata.
DEFAULT_MEMBERS: tuple[str, ...] = ("tfidf_lr", "mf", "knn")
#: How the members' predictions are weighted.
WEIGHTINGS = ("fitted", "uniform")

MemberSpec = str | Mapping[str, Any]


def _member_spec(spec: Any) -> dict[str, Any]:
    """``"mf"`` or ``{"router": "mf", **params}`` as ``{"router": name, **params}``; checks the name."""
    from rag_routing.routers.registry import get_router_class

    if isinstance(spec, str):
        spec = {"router": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("router"), str):
        raise InvalidInputError(f"an ensemble member is a router name or a dict with a 'router' name and its "
                                f"parameters, got {spec!r}")
    klass = get_router_class(spec["router"])  # unknown names raise InvalidInputError listing the known ones
    if not (isinstance(klass, type) and issubclass(klass, Router)):
        raise InvalidInputError(f"ensemble member {spec['router']!r} is not a Router")
    return {str(k): v for k, v in spec.items()}


def _relative(S: np.ndarray) -> np.ndarray:
    """Each row minus its mean over the candidates: only differences between candidates decide a route."""
    return S - S.mean(axis=1, keepdims=True)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope through the origin of ``y`` on ``x`` (0 when ``x`` carries nothing)."""
    denominator = float(x @ x)
    return float(x @ y) / denominator if denominator > 1e-12 else 0.0


class EnsembleRouter(Router):
    """Averages the calibrated quality predictions of several routers (stacked generalisation, Wolpert 1992,
    "Stacked generalization"; Breiman 1996, "Stacked regressions"; for routing, the ensembles of RouterBench's
    and RouteLLM's weak individual signals).

    Estimates each candidate's quality as the members' mean predicted level plus a weighted mean of the
    members' *relative* predictions (each row minus its mean over the candidates, the part that decides a route).

    * ``members``: router names or ``{"router": name, **params}`` dicts (default :data:`DEFAULT_MEMBERS`).
      Members that use features get the ensemble's ``featurizer`` unless their spec names one.
    * ``weights="fitted"`` (default): the members are first fitted on a ``1 - validation_fraction`` inner split
      (``seed``) and predict the rest; member ``k``'s weight is the least-squares slope (clipped at 0) of the
      true relative quality on its relative prediction, over the held-out queries whose outcomes are all known,
      so a member that ranks the candidates at random gets weight ~0. One more slope scales the weighted mean
      back to quality units; then every member is refitted on all the queries. If no member gets a positive
      weight, the weights fall back to uniform (logged).
    * ``weights="uniform"``: the plain mean of the members' predictions; no inner split.

    Example:
        >>> import numpy as np
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> queries = [f"integrate x^{i} dx" for i in range(15)] + [f"say hello to friend {i}" for i in range(15)]
        >>> quality = np.array([[0.0, 1.0]] * 15 + [[1.0, 1.0]] * 15)     # columns: small, large
        >>> train = RoutingDataset(queries, ["small", "large"], quality, np.tile([1e-4, 1e-2], (30, 1)))
        >>> members = [{"router": "tfidf_lr", "min_df": 1, "C": 10.0}, {"router": "knn", "k": 3}]
        >>> router = EnsembleRouter(members=members, featurizer="tfidf").fit(train)
        >>> [d.candidate for d in router.route(["integrate x^12 dx", "say hello to friend 12"], lam=20.0)]
        ['large', 'small']
    """

    name = "ensemble"
    uses_features = False  # members featurize for themselves
    #: ``rag-routing bench`` hands its shared featurizer to the ensemble, which passes it on to the members.
    shares_featurizer = True

    def __init__(self, *, members: Sequence[MemberSpec] = DEFAULT_MEMBERS, weights: str = "fitted",
                 validation_fraction: float = 0.2, seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(members, (str, Mapping)) or not isinstance(members, Sequence):
            raise InvalidInputError(f"members must be a list of router names or specs, got {members!r}")
        self.members = [_member_spec(m) for m in members]
        self.weights = weights
        self.validation_fraction = validation_fraction
        self.seed = seed
        self._check_params()

    def _check_params(self) -> None:
        if not self.members:
            raise InvalidInputError("an ensemble needs at least one member router")
        if self.weights not in WEIGHTINGS:
            raise InvalidInputError(f"weights must be one of {WEIGHTINGS}, got {self.weights!r}")
        check_number("validation_fraction", self.validation_fraction, 0.0, 0.5, low_open=True)
        check_number("seed", self.seed, 0, integer=True)

    # ------------------------------------------------------------------ members
    def _build_members(self) -> list[Router]:
        from rag_routing.routers.registry import create_router

        built = []
        for spec in self.members:
            params = {k: v for k, v in spec.items() if k != "router"}
            router = create_router(spec["router"], **params)
            if router.uses_features and "featurizer" not in params and self.featurizer is not None:
                router.featurizer = self.featurizer
            built.append(router)
        return built

    # ------------------------------------------------------------------ fitting
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self._check_params()
        known = dataset.quality[~np.isnan(dataset.quality)]
        self.quality_low_, self.quality_high_ = float(known.min()), float(known.max())
        m = len(self.members)
        self.member_weights_, self.scale_ = np.full(m, 1.0 / m), 1.0
        if self.weights == "fitted":
            self._fit_weights(dataset)
        self.members_ = [router.fit(dataset) for router in self._build_members()]

    def _fit_weights(self, dataset: RoutingDataset) -> None:
        train_rows, val_rows = inner_split(len(dataset), self.validation_fraction, np.random.default_rng(self.seed))
        full = val_rows[~np.isnan(dataset.quality[val_rows]).any(axis=1)]
        if full.size < 2 or len(train_rows) < 2 or dataset.n_candidates < 2:
            logger.warning("ensemble: too few held-out queries with every outcome known (%d) to fit weights; "
                           "using uniform weights", full.size)
            return
        train, held_out = dataset.subset(train_rows), dataset.subset(full)
        relative = [_relative(router.fit(train).predict_quality(held_out)) for router in self._build_members()]
        truth = _relative(dataset.quality[full]).ravel()
        slopes = np.array([max(_slope(r.ravel(), truth), 0.0) for r in relative])
        if slopes.sum() <= 0:
            logger.warning("ensemble: no member ranks the candidates better than chance on the held-out "
                           "queries; using uniform weights")
            return
        self.member_weights_ = slopes / slopes.sum()
        combined = sum(w * r for w, r in zip(self.member_weights_, relative))
        self.scale_ = max(_slope(np.ravel(combined), truth), 0.0) or 1.0

    # ------------------------------------------------------------------ prediction
    def member_predictions(self, X: RouterInput) -> list[np.ndarray]:
        """Each member's ``(n, m)`` predicted quality, in ``members`` order."""
        self._check_fitted()
        return [router.predict_quality(X) for router in self.members_]

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        predictions = self.member_predictions(X)
        level = np.mean([S.mean(axis=1, keepdims=True) for S in predictions], axis=0)
        relative = sum(w * _relative(S) for w, S in zip(self.member_weights_, predictions))
        return np.clip(level + self.scale_ * relative, self.quality_low_, self.quality_high_)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config: dict[str, Any] = {"quality_low": self.quality_low_, "quality_high": self.quality_high_,
                                  "scale": self.scale_, "members": []}
        arrays: dict[str, np.ndarray] = {"member_weights": self.member_weights_}
        for k, router in enumerate(self.members_):
            meta, member_arrays = router.to_state()
            config["members"].append(meta)
            arrays.update({f"member{k}.{key}": value for key, value in member_arrays.items()})
        return config, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.quality_low_, self.quality_high_ = float(config["quality_low"]), float(config["quality_high"])
        self.scale_ = float(config["scale"])
        self.member_weights_ = np.asarray(arrays["member_weights"], dtype=np.float64)
        metas = config["members"]
        if not isinstance(metas, list) or len(metas) != len(self.members) or self.member_weights_.shape != (
                len(self.members),):
            raise CorruptStateError("saved ensemble members do not match its member list")
        self.members_ = []
        for k, meta in enumerate(metas):
            if not isinstance(meta, dict) or meta.get("router") != self.members[k]["router"]:
                raise CorruptStateError(f"saved ensemble member {k} is not a {self.members[k]['router']!r} router")
            prefix = f"member{k}."
            member_arrays = {key[len(prefix):]: v for key, v in arrays.items() if key.startswith(prefix)}
            member = Router.from_state(meta, member_arrays, source=f"ensemble member {k}")
            if member.candidates_ != self.candidates_:
                raise CorruptStateError(f"ensemble member {k} routes {member.candidates_}, not {self.candidates_}")
            self.members_.append(member)


__all__ = ["DEFAULT_MEMBERS", "WEIGHTINGS", "EnsembleRouter"]
