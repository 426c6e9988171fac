"""How much a gadget moves a router, with and without defences: the share of queries flipped to the
expensive candidate, and what the defence costs clean traffic.

Example:
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.registry import create_router
    >>> hard = [f"prove the theorem about integral number {i}" for i in range(20)]
    >>> easy = [f"say hello to my friend number {i}" for i in range(20)]
    >>> ds = RoutingDataset(hard + easy, ["small", "large"], [[0, 1]] * 20 + [[1, 1]] * 20, [[0.001, 0.02]] * 40)
    >>> router = create_router("knn", lam=10.0, featurizer="tfidf").fit(ds)
    >>> report = flip_report(router, easy, Gadget(("prove", "the", "theorem", "about", "integral")))
    >>> report.n_cheap, report.flip_rate
    (20, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError, RagRoutingError
from rag_routing.routers.base import Router, validate_queries
from rag_routing.security.gadgets import Gadget
from rag_routing.security.guards import GuardedRouter


@dataclass(frozen=True)
class FlipReport:
    """Outcome of one gadget against one (possibly defended) router.

    Attributes:
        n_queries: held-out queries attacked.
        n_cheap: of those, how many the undefended router sends to a cheaper candidate when clean.
        flipped: of those, how many end on the expensive candidate once the gadget is added.
        flip_rate: ``flipped / n_cheap`` (Shafran et al.'s upgrade rate).
        expensive_share_clean, expensive_share_attacked: share routed to the expensive candidate.
        refused: attacked queries the defence refused with a typed error.
        clean_changed: share of *clean* queries (a benign principal) whose route the defence changed.
    """

    router: str
    defence: str
    n_queries: int
    n_cheap: int
    flipped: int
    flip_rate: float
    expensive_share_clean: float
    expensive_share_attacked: float
    refused: int = 0
    clean_changed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _principals(who: str | Sequence[str], what: str) -> list[str]:
    names = [who] if isinstance(who, str) else list(who)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise InvalidInputError(f"{what} must be a principal name or a non-empty list of them, got {who!r}")
    return names


def _route_each(router: Router, queries: list[str], principals: list[str]) -> tuple[np.ndarray, int]:
    """Chosen index per query (``-1`` where the defence refused), one query at a time, and the refusals.

    Query ``i`` is sent by ``principals[i % len(principals)]`` (a campaign spread round-robin over keys)."""
    if not isinstance(router, GuardedRouter):
        return router.route_indices(queries), 0
    chosen, refused = np.full(len(queries), -1, dtype=np.int64), 0
    for i, query in enumerate(queries):
        try:
            chosen[i] = router.route_one(query, principal=principals[i % len(principals)]).index
        except RagRoutingError:
            refused += 1
    return chosen, refused


def flip_report(router: Router, queries: Sequence[str], gadget: Gadget, *, defence: GuardedRouter | None = None,
                defence_name: str = "none", attacker: str | Sequence[str] = "attacker",
                benign: str | Sequence[str] = "benign", clean_queries: Sequence[str] | None = None) -> FlipReport:
    """Attack ``router`` (or ``defence``, a guarded version of it) with ``gadget`` on held-out ``queries``.

    The attacker sends the attacked queries as principal ``attacker`` (a list: round-robin over those keys, a
    campaign spread over many keys); the defence's cost on honest traffic is measured on ``clean_queries``
    (default: the same queries without the gadget) sent as ``benign`` (a name or a list, round-robin).
    Guards keep per-principal state: pass a freshly built defence.
    """
    attackers, benigns = _principals(attacker, "attacker"), _principals(benign, "benign")
    queries = validate_queries(queries)
    expensive = int(np.argmax(router.mean_cost_))
    base = router.route_indices(queries)
    attacked, refused = _route_each(defence or router, gadget.apply_all(queries), attackers)
    cheap = base != expensive
    flipped = int((cheap & (attacked == expensive)).sum())
    clean_changed = 0.0
    if defence is not None:
        clean = validate_queries(clean_queries) if clean_queries is not None else queries
        reference = base if clean_queries is None else router.route_indices(clean)
        routed, _ = _route_each(defence, clean, benigns)
        clean_changed = float((routed != reference).mean())
    return FlipReport(
        router=router.name, defence=defence_name, n_queries=len(queries), n_cheap=int(cheap.sum()),
        flipped=flipped, flip_rate=flipped / max(1, int(cheap.sum())),
        expensive_share_clean=float((base == expensive).mean()),
        expensive_share_attacked=float((attacked == expensive).mean()), refused=refused,
        clean_changed=clean_changed)


__all__ = ["FlipReport", "flip_report"]
