"""The serving logic behind the HTTP layer: route (or force) a candidate, reserve the principal's budget,
record what the call cost. No web framework here, so it is tested and reused without one.

One request is: :meth:`ChatService.plan` (route or force, estimate, reserve: a refusal raises
:class:`~rag_routing.errors.BudgetExceededError` *before* anything is generated) -> the generator runs ->
:meth:`ChatService.settle` (record the route and the call in the ledger, commit the reservation) or
:meth:`ChatService.abort` (release it). Costs: a candidate with a :class:`~rag_routing.candidates.Pricing` in
``prices`` is charged by its tokens; otherwise at the router's expected cost per call for that candidate.

Example:
    >>> import numpy as np
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.baselines import CheapestRouter
    >>> from rag_routing.server.keys import load_api_keys
    >>> ds = RoutingDataset(["q1", "q2"], ["small", "large"], [[1, 1], [1, 1]], [[0.01, 0.1]] * 2)
    >>> service = ChatService(CheapestRouter().fit(ds), {"small": lambda m: "hi", "large": lambda m: "HI"},
    ...                       load_api_keys({"sk-test-123": {"principal": "alice", "max_usd": 0.015}}))
    >>> key = service.keys.lookup("sk-test-123")
    >>> plan = service.plan("auto", "hello", [{"role": "user", "content": "hello"}], key, max_tokens=8)
    >>> entry = service.settle(plan, service.generators["small"].complete(plan.messages))
    >>> plan.decision.candidate, round(entry.cost_usd, 3), service.budget(key).can_afford(usd=0.01)
    ('small', 0.01, False)
"""

from __future__ import annotations

import inspect
import json
from collections import OrderedDict
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rag_routing.candidates import Pricing
from rag_routing.decision import RoutingDecision
from rag_routing.errors import InvalidInputError, RagRoutingError, UnknownCandidateError
from rag_routing.ledger.budget import Budget, Reservation
from rag_routing.ledger.budget_stores import BudgetStore, MemoryBudgetStore
from rag_routing.ledger.entry import LedgerEntry
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.stage_names import GENERATION, ROUTING
from rag_routing.ledger.tokens import count_tokens
from rag_routing.routers.base import Router
from rag_routing.security.guards import GuardedRouter
from rag_routing.security.redaction import RedactingFilter
from rag_routing.server.batching import RouteBatcher
from rag_routing.server.generation import Completion, GeneratorAdapter
from rag_routing.server.keys import ApiKey, ApiKeys
from rag_routing.server.schemas import ROUTE_ALIASES

logger = logging.getLogger(__name__)
logger.addFilter(RedactingFilter())
#: Routed decisions remembered for feedback (the oldest are forgotten first).
MAX_FEEDBACK_DECISIONS = 100_000


@dataclass
class Plan:
    """A routed, budgeted request waiting for its generation."""

    decision: RoutingDecision
    key: ApiKey
    messages: list[dict[str, str]]
    reservation: Reservation
    input_tokens: int
    forced: bool
    route_seconds: float
    started: float = field(default_factory=time.perf_counter)

    @property
    def candidate(self) -> str:
        return self.decision.candidate


class ChatService:
    """Routing, budgets and the ledger for the chat endpoint (see the module docstring).

    Args:
        router: a fitted :class:`Router` (a :class:`~rag_routing.security.guards.GuardedRouter` gets the
            principal, so per-principal guards apply; its guards also check forced requests).
        generators: candidate name -> generator (anything :class:`GeneratorAdapter` accepts); every candidate
            the router can choose needs one.
        keys: the API keys (:func:`~rag_routing.server.keys.load_api_keys`).
        ledger: where every call is recorded (default: an in-memory ledger).
        budget_store: where per-principal budgets live (default: in memory; Redis/SQLite to share them).
        prices: optional per-candidate token prices (else the router's expected cost per call is charged).
        default_max_tokens: the output-token estimate of requests that give no ``max_tokens``.
        batch_window: routed requests arriving together are routed in one batch (one featurisation), each
            batch waiting at most this many seconds for more (:class:`RouteBatcher`); ``None`` (the default)
            routes each request alone: measured in ``benchmarks/serve.py``, batching pays for TF-IDF features;
            with MiniLM it is on par with routing alone at one ONNX Runtime thread per request
            (``OMP_NUM_THREADS=1``, lower p99) and below it at the default threads.
        max_batch: the most requests routed in one batch.
    """

    def __init__(self, router: Router, generators: Mapping[str, Any], keys: ApiKeys, *,
                 ledger: CostLedger | None = None, budget_store: BudgetStore | None = None,
                 prices: Mapping[str, Pricing] | None = None, default_max_tokens: int = 256,
                 batch_window: float | None = None, max_batch: int = 8):
        if not isinstance(router, Router):
            raise InvalidInputError(f"the server needs a Router, got {type(router).__name__}")
        router._check_fitted()
        missing = [c for c in router.candidates_ if c not in generators]
        if missing:
            raise InvalidInputError(f"no generator for candidates {missing}; pass generators={{name: generator}}")
        self.prices = dict(prices or {})
        unpriced = [c for c in generators if c not in router.candidates_ and c not in self.prices]
        if unpriced:
            raise InvalidInputError(f"generators {unpriced} are not router candidates and have no price; "
                                    "add them to prices={name: Pricing(...)}")
        if any(c in ROUTE_ALIASES for c in generators):
            raise InvalidInputError(f"candidate names {ROUTE_ALIASES} are reserved for routing")
        self.router, self.keys = router, keys
        self.generators = {name: GeneratorAdapter(name, g) for name, g in generators.items()}
        # Bounded by default: a long-running service must not grow with every request it ever served.
        self.ledger = ledger if ledger is not None else CostLedger(max_entries=10_000)
        self.budget_store = budget_store if budget_store is not None else MemoryBudgetStore()
        self.default_max_tokens = default_max_tokens
        self._expected = dict(zip(router.candidates_, map(float, router.mean_cost_)))
        self._takes_principal = "principal" in inspect.signature(router.route).parameters
        self._budgets: dict[ApiKey, Budget] = {}
        self._ready = False
        self._ready_lock = threading.Lock()
        self._owners: OrderedDict[str, str] = OrderedDict()  # decision id -> principal, for feedback
        self._owners_lock = threading.Lock()
        self.batcher = None if batch_window is None else RouteBatcher(self._route_batch, max_batch=max_batch,
                                                                       max_wait=batch_window)

    def warm_up(self) -> None:
        """Load the shared resources (the tokenizer's encoding, the router's embedder) once, under a lock.

        Called by the first request (concurrent first requests wait here instead of each loading its own
        copy) and by ``rag-routing serve`` before it listens.
        """
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            count_tokens("warm up")
            inner = getattr(self.router, "router", self.router)  # a GuardedRouter's guards keep no warm-up state
            if getattr(inner, "uses_features", False):
                inner.features(["warm up"])
            self._ready = True

    def _route_batch(self, queries: list[str], principal: str | None) -> list[RoutingDecision]:
        if principal is not None:
            return self.router.route(queries, principal=principal)
        return self.router.route(queries)

    def budget(self, key: ApiKey) -> Budget:
        """The budget of ``key``'s principal (shared by every key and process using the same store)."""
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = Budget(**key.limits(), scope="principal", principal=key.principal,
                                                 store=self.budget_store)
        return budget

    # -- before generating --------------------------------------------------------------------------------------
    def decide(self, model: str, query: str, principal: str) -> tuple[RoutingDecision, bool]:
        """The routing decision for ``query`` (``model`` "auto"/"router"), or a forced one (a candidate)."""
        if model in ROUTE_ALIASES:
            if self.batcher is not None:
                return self.batcher.route(query, principal if self._takes_principal else None), False
            if self._takes_principal:
                return self.router.route([query], principal=principal)[0], False
            return self.router.route([query])[0], False
        if model not in self.generators:
            raise UnknownCandidateError(f"unknown model {model!r}; use 'auto' to route or one of "
                                        f"{sorted(self.generators)}")
        names = list(self.generators)
        costs = {c: self._call_cost(c, None, 1000, self.default_max_tokens) for c in names}  # nominal call
        decision = RoutingDecision(candidate=model, index=names.index(model), quality={c: 0.0 for c in names},
                                   cost=costs, lam=0.0, budget=None, reason=f"forced by the request: model={model!r}",
                                   router="forced")
        # Quotas apply to forced expensive calls too. Only a GuardedRouter's ``guards`` are route guards (a
        # plain Router's ``guards`` are its support settings).
        route_guards = self.router.guards if isinstance(self.router, GuardedRouter) else ()
        for guard in route_guards:
            decision = guard.check_decision(decision, principal)
        return decision, True

    def _call_cost(self, candidate: str, decision: RoutingDecision | None, input_tokens: int,
                   output_tokens: int) -> float:
        pricing = self.prices.get(candidate)
        if pricing is not None:
            return pricing.cost(input_tokens, output_tokens)
        if decision is not None and candidate in decision.cost:
            return float(decision.cost[candidate])
        return self._expected[candidate]

    def plan(self, model: str, query: str, messages: list[dict[str, str]], key: ApiKey, *,
             max_tokens: int | None = None, options: dict[str, Any] | None = None,
             explicit: set[str] | None = None) -> Plan:
        """Route (or force), estimate the call and reserve it on the principal's budget.

        ``options`` the client set explicitly (``explicit``) must be supported by the chosen candidate's
        generator: else :class:`InvalidInputError` before anything is reserved.

        Raises :class:`~rag_routing.errors.BudgetExceededError` (nothing reserved, nothing generated),
        :class:`~rag_routing.errors.UnknownCandidateError` or :class:`~rag_routing.errors.InvalidInputError`.
        """
        self.warm_up()
        started = time.perf_counter()
        decision, forced = self.decide(model, query, key.principal)
        route_seconds = time.perf_counter() - started
        if not forced and self._bandit() is not None:
            with self._owners_lock:
                self._owners[decision.decision_id] = key.principal
                while len(self._owners) > MAX_FEEDBACK_DECISIONS:
                    self._owners.popitem(last=False)
        if options is not None and explicit:
            from rag_routing.server.schemas import NEUTRAL_OPTIONS

            self.generators[decision.candidate].check_options(options, explicit, NEUTRAL_OPTIONS)
        input_tokens = sum(count_tokens(m["content"]) for m in messages)
        output_tokens = max_tokens or self.default_max_tokens
        usd = self._call_cost(decision.candidate, decision, input_tokens, output_tokens)
        reservation = self.budget(key).reserve(usd=usd, tokens=input_tokens + output_tokens,
                                               label=f"{key.principal}/{decision.candidate}")
        return Plan(decision, key, messages, reservation, input_tokens, forced, route_seconds)

    # -- after generating ---------------------------------------------------------------------------------------
    def settle(self, plan: Plan, completion: Completion, *, partial: bool = False) -> LedgerEntry | None:
        """Record the route and the call in the ledger and commit the reservation; returns the call's entry.

        If the ledger store fails, the spend is still committed to the budget (the call happened) and the
        entry is logged as JSON for replay; ``None`` is returned.
        """
        decision, key = plan.decision, plan.key
        input_tokens = completion.input_tokens if completion.input_tokens is not None else plan.input_tokens
        output_tokens = completion.output_tokens if completion.output_tokens is not None \
            else (count_tokens(completion.text) if completion.text else 0)
        cost = self._call_cost(decision.candidate, decision, input_tokens, output_tokens)
        seconds = time.perf_counter() - plan.started
        metadata = {"forced": plan.forced, "partial": partial, "finish_reason": completion.finish_reason}
        try:
            if not plan.forced:
                self.ledger.record(ROUTING, self.router.name, cost_usd=decision.router_cost_usd,
                                   seconds=plan.route_seconds, decision_id=decision.decision_id,
                                   principal=key.principal, metadata={"candidate": decision.candidate})
            return self.ledger.record(
                GENERATION, decision.candidate, decision.candidate, input_tokens=input_tokens,
                output_tokens=output_tokens, cost_usd=cost, seconds=seconds, decision_id=decision.decision_id,
                principal=key.principal, metadata=metadata,
                estimated=completion.input_tokens is None or completion.output_tokens is None,
                reservation=plan.reservation)
        except RagRoutingError as exc:
            if plan.reservation.state == "open":
                plan.reservation.commit(usd=cost, tokens=input_tokens + output_tokens, seconds=seconds)
            logger.error("ledger write failed (%s); spend committed to the budget, entry to replay: %s", exc,
                         json.dumps({"decision_id": decision.decision_id, "principal": key.principal,
                                     "candidate": decision.candidate, "cost_usd": cost,
                                     "input_tokens": input_tokens, "output_tokens": output_tokens}))
            return None

    def feedback(self, key: ApiKey, decision_id: str, reward: float | None = None, *,
                 quality: float | None = None, cost: float | None = None) -> float:
        """Feedback for a routed decision of an online router (a bandit): its state is updated, in a shared
        store when the router has one (every replica then decides with it). Only the principal whose request
        was routed may give it; returns the reward learned from."""
        bandit = self._bandit()
        if bandit is None:
            raise InvalidInputError(f"router {self.router.name!r} does not learn from feedback; serve an online "
                                    "router (epsilon_greedy, linucb, thompson, lri) to send feedback")
        if not isinstance(decision_id, str) or not decision_id:
            raise InvalidInputError("decision_id must be the x_rag_routing.decision_id of a routed response")
        with self._owners_lock:
            owner = self._owners.get(decision_id)
        if owner != key.principal:  # unknown here, or another principal's: the same answer, nothing learned
            error = InvalidInputError(f"no routed decision {decision_id[:80]!r} of this key is waiting for feedback "
                                      "on this server (feedback goes to the replica that routed the request)")
            error.param, error.code = "decision_id", "decision_not_found"  # type: ignore[attr-defined]
            raise error
        learned = float(bandit.update(decision_id, reward, quality=quality, cost=cost))
        with self._owners_lock:
            self._owners.pop(decision_id, None)
        return learned

    def _bandit(self) -> Any:
        """The online router that takes feedback (inside a GuardedRouter too), or ``None``."""
        from rag_routing.routers.bandits.base import BanditRouter

        inner = self.router.router if isinstance(self.router, GuardedRouter) else self.router
        return inner if isinstance(inner, BanditRouter) else None

    def abort(self, plan: Plan) -> None:
        """The generation failed before producing anything: give the reservation back."""
        plan.reservation.release()

    def routing_info(self, plan: Plan, entry: LedgerEntry | None = None) -> dict[str, Any]:
        """The ``x_rag_routing`` extension field of a response."""
        d = plan.decision
        info: dict[str, Any] = {
            "candidate": d.candidate, "reason": d.reason, "decision_id": d.decision_id, "router": d.router,
            "forced": plan.forced, "principal": plan.key.principal, "router_seconds": plan.route_seconds,
            "estimated_cost_usd": plan.reservation.amounts.usd,
        }
        if entry is not None:
            info["cost_usd"] = entry.cost_usd
        guards = d.metadata.get("guards")
        if guards:
            info["guards"] = guards
        return info


__all__ = ["ChatService", "Plan"]
