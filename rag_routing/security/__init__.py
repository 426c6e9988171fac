"""Guards for the routing control plane: confounder-gadget attacks and the defences against them.

Routers decide where the money goes, so they are attacked (survey §5.2.5; Shafran et al. 2025, "Rerouting
LLM routers"): a *confounder gadget* appended to queries pushes a router to the expensive model, and poisoned
feedback steers an online router. This package holds both sides:

* attacks: :func:`search_gadget` (black-box hill climbing of a universal gadget), :func:`flip_report`;
* guards, wired with :class:`GuardedRouter` (a Router with a ``principal`` on every route):
  :class:`ExpensiveRouteQuota` (per-principal quota of expensive routes), :class:`RoutingShiftAlarm`
  (chi-square alarm on a principal's route distribution), :class:`GadgetFilter` (bigram-perplexity scan
  that strips a suspicious suffix);
* feedback poisoning: :class:`FeedbackSanitizer` (rate limit, clipping and a median/MAD outlier filter in
  front of an online router's ``update``);
* many keys: :class:`NewKeyPool` (keys without standing act as one shared principal, so a campaign spread over
  many fresh keys meets one key's quota, alarm window and feedback rate limit).

Example:
    >>> from rag_routing.security import GuardedRouter, ExpensiveRouteQuota, GadgetFilter   # doctest: +SKIP
    >>> guarded = GuardedRouter(router, [GadgetFilter(), ExpensiveRouteQuota(100, 3600)]).fit(dataset)  # doctest: +SKIP
    >>> guarded.route_one("What is 2+2?", principal="key-123")                               # doctest: +SKIP
"""

from rag_routing.security.alarm import RoutingAlarm, RoutingShiftAlarm
from rag_routing.security.errors import QuotaExceededError, RoutingAlarmError, SuspiciousQueryError
from rag_routing.security.flips import FlipReport, flip_report
from rag_routing.security.gadget_filter import GadgetFilter
from rag_routing.security.gadgets import Gadget, GadgetSearchResult, common_tokens, search_gadget
from rag_routing.security.guards import GuardedRouter, RouteGuard, downgrade
from rag_routing.security.identities import NewKeyPool
from rag_routing.security.language_model import BigramLM
from rag_routing.security.quota import ExpensiveRouteQuota

__all__ = [
    "GuardedRouter",
    "RouteGuard",
    "NewKeyPool",
    "downgrade",
    "ExpensiveRouteQuota",
    "RoutingShiftAlarm",
    "RoutingAlarm",
    "GadgetFilter",
    "BigramLM",
    "Gadget",
    "GadgetSearchResult",
    "search_gadget",
    "common_tokens",
    "FlipReport",
    "flip_report",
    "QuotaExceededError",
    "RoutingAlarmError",
    "SuspiciousQueryError",
]
