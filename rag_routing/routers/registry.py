"""Short names (``knn``, ``mf``, ...) for routers, used by ``rag-routing bench --routers`` and saved configs.

Built-in routers are listed as ``"module:Class"`` strings and imported only when asked for, so importing
rag_routing stays light. Third-party routers register with :func:`register_router`.
"""

from __future__ import annotations

import importlib
from typing import Any

from rag_routing.errors import InvalidInputError

_BUILTIN: dict[str, str] = {
    "random": "rag_routing.routers.baselines:RandomRouter",
    "oracle": "rag_routing.routers.baselines:OracleRouter",
    "best": "rag_routing.routers.baselines:BestSingleRouter",
    "cheapest": "rag_routing.routers.baselines:CheapestRouter",
    "fixed": "rag_routing.routers.baselines:FixedRouter",
    "auto": "rag_routing.routers.auto:AutoRouter",
    "knn": "rag_routing.routers.similarity:KNNRouter",
    "cluster": "rag_routing.routers.similarity:ClusterRouter",
    "sw_ranking": "rag_routing.routers.preference:SWRankingRouter",
    "elo": "rag_routing.routers.preference:EloRouter",
    "mf": "rag_routing.routers.supervised:MatrixFactorizationRouter",
    "classifier": "rag_routing.routers.supervised:ClassifierRouter",
    "regressor": "rag_routing.routers.supervised:QualityRegressor",
    "tfidf_lr": "rag_routing.routers.sparse_text:TfidfLogisticRouter",
    "ensemble": "rag_routing.routers.ensemble:EnsembleRouter",
    "rules": "rag_routing.routers.rules:ConditionalRouter",
    "semantic": "rag_routing.routers.semantic:SemanticRouter",
    "encoder": "rag_routing.routers.encoder:EncoderClassifierRouter",
    "contrastive": "rag_routing.routers.contrastive:ContrastiveRouter",
    "graph": "rag_routing.routers.graph:GraphRouter",
    "epsilon_greedy": "rag_routing.routers.bandits:EpsilonGreedyRouter",
    "lri": "rag_routing.routers.bandits:LinearRewardInactionRouter",
    "linucb": "rag_routing.routers.bandits:LinUCBRouter",
    "thompson": "rag_routing.routers.bandits:ThompsonRouter",
    "cascade": "rag_routing.routers.cascade:CascadeRouter",
    "multi_cascade": "rag_routing.routers.multi_cascade:MultiChoiceCascade",
    "vote_cascade": "rag_routing.routers.vote_cascade:VoteCascade",
}
_REGISTERED: dict[str, type] = {}


def register_router(name: str, cls: type | None = None) -> Any:
    """Register ``cls`` under ``name``; usable as a decorator: ``@register_router("mine")``."""

    def decorator(klass: type) -> type:
        _REGISTERED[name] = klass
        klass.name = name  # type: ignore[attr-defined]
        return klass

    return decorator(cls) if cls is not None else decorator


def available_routers() -> list[str]:
    """Every short name that :func:`get_router_class` accepts."""
    return sorted({*_BUILTIN, *_REGISTERED})


def get_router_class(name: str) -> type:
    """The router class registered under ``name``."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise InvalidInputError(f"unknown router {name!r}; available: {', '.join(available_routers())}")
    module_name, _, attr = _BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def create_router(name: str, **kwargs: Any) -> Any:
    """Instantiate the router registered under ``name`` with ``kwargs``."""
    return get_router_class(name)(**kwargs)


__all__ = ["register_router", "available_routers", "get_router_class", "create_router"]
