"""Session-aware routing: route a conversation, not isolated turns, and do not ping-pong between models.

:class:`SessionRouter` wraps any fitted router. For each turn of a session it

1. builds the router input from the conversation: the current user turn's features plus the previous
   ``history_turns`` turns' with weights ``history_decay, history_decay², ...`` (re-normalised); routers that
   read text rather than features get the last turns joined with the current one;
2. resets that history on a **topic shift** (cosine similarity of the turn to the recent turns below
   ``topic_shift``), so a new subject is routed on its own;
3. smooths the per-turn utilities ``S - λC`` over the session (exponential moving average with weight
   ``stickiness`` on the past), so one noisy turn does not flip the estimate;
4. keeps the session's current candidate unless another one's smoothed utility beats it by more than
   ``hysteresis`` (utility units: quality minus λ·$) or the budget no longer allows it (a forced switch).

Sessions are kept in a bounded LRU (``max_sessions``) and expire after ``ttl_s`` idle seconds. Every decision
says in ``metadata["session"]`` whether it switched, why, and whether it stayed although another candidate
looked better (``sticky``). RouteLLM and semantic-router users ask for exactly this (a conversation bouncing
between a strong and a weak model reads as two personalities).

Example:
    >>> import numpy as np
    >>> from rag_routing.embeddings import PrecomputedFeaturizer
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.similarity import KNNRouter
    >>> E = np.array([[1.0, 0.0]] * 10 + [[0.0, 1.0]] * 10, dtype=np.float32)
    >>> ds = RoutingDataset([f"q{i}" for i in range(20)], ["A", "B"], [[1, 0]] * 10 + [[0, 1]] * 10,
    ...                     np.full((20, 2), 0.01)).with_embeddings(E, "toy")
    >>> knn = KNNRouter(k=5, featurizer=PrecomputedFeaturizer("toy")).fit(ds)
    >>> session = SessionRouter(knn, hysteresis=0.2)
    >>> turns = [[1.0, 0.1], [0.8, 0.6], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]   # a wobble, then a new topic
    >>> [session.route("turn", "s1", features=np.array(t)).candidate for t in turns]
    ['A', 'A', 'A', 'B', 'B']
    >>> session.stats("s1").switches
    1
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag_routing.decision import RoutingDecision, utilities
from rag_routing.errors import InvalidInputError, NoRouteError
from rag_routing.routers.base import validate_queries
from rag_routing.validation import check_float, check_int


@dataclass
class _Session:
    candidate: int | None = None
    smoothed: np.ndarray | None = None
    features: deque[np.ndarray] = field(default_factory=deque)
    texts: deque[str] = field(default_factory=deque)
    turns: int = 0
    switches: int = 0
    last_seen: float = 0.0


@dataclass(frozen=True)
class SessionStats:
    """A session's turns, model switches and current candidate."""

    session_id: str
    turns: int
    switches: int
    current: str | None


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class SessionRouter:
    """Conversation-aware routing with stickiness and hysteresis (see module docstring).

    Parameters:
        router: a fitted :class:`~rag_routing.routers.base.Router`.
        stickiness: weight of the session's past utilities in the smoothed estimate, in [0, 1).
        hysteresis: margin (utility units) another candidate must win by before the session switches.
        history_turns: previous user turns mixed into the router input.
        history_decay: weight of the previous turn (then its square, ...), in [0, 1].
        topic_shift: cosine similarity to the recent turns below which the history is reset (0 disables).
        max_sessions, ttl_s: bound on remembered sessions, and idle seconds before one is forgotten.
        clock: time source (seconds), injectable for tests.
    """

    def __init__(self, router: Any, *, stickiness: float = 0.5, hysteresis: float = 0.05, history_turns: int = 3,
                 history_decay: float = 0.5, topic_shift: float = 0.3, max_sessions: int = 10_000,
                 ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        if not getattr(router, "is_fitted", False):
            raise InvalidInputError("SessionRouter needs a fitted router; call router.fit(dataset) first")
        self.router = router
        self.stickiness = check_float("stickiness", stickiness, high=0.999999)
        self.hysteresis = check_float("hysteresis", hysteresis)
        self.history_turns = check_int("history_turns", history_turns, low=0)
        self.history_decay = check_float("history_decay", history_decay, high=1.0)
        self.topic_shift = check_float("topic_shift", topic_shift, low=-1.0, high=1.0)
        self.max_sessions = check_int("max_sessions", max_sessions)
        self.ttl_s = check_float("ttl_s", ttl_s, open_low=True)
        self.clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ sessions
    def _session(self, session_id: str, now: float) -> _Session:
        for key in [k for k, s in self._sessions.items() if now - s.last_seen > self.ttl_s]:
            del self._sessions[key]
        state = self._sessions.pop(session_id, None) or _Session(last_seen=now)
        self._sessions[session_id] = state
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return state

    @property
    def n_sessions(self) -> int:
        return len(self._sessions)

    def stats(self, session_id: str) -> SessionStats:
        """Turns, switches and current candidate of ``session_id`` (zeros for an unknown session)."""
        with self._lock:
            s = self._sessions.get(session_id) or _Session()
        current = None if s.candidate is None else self.router.candidates_[s.candidate]
        return SessionStats(session_id, s.turns, s.switches, current)

    def end(self, session_id: str) -> None:
        """Forget a session (no error if unknown)."""
        with self._lock:
            self._sessions.pop(session_id, None)

    # ------------------------------------------------------------------ routing
    def _router_input(self, state: _Session, query: str, features: np.ndarray | None) -> tuple[Any, bool]:
        """The router input for this turn and whether a topic shift reset the history."""
        if not self.router.uses_features:
            return "\n".join([*reversed(state.texts), query]), False
        f = _unit(np.asarray(features if features is not None else self.router.features([query])[0],
                             dtype=np.float64).ravel())
        shifted = False
        if state.features and self.topic_shift > 0:
            recent = _unit(np.mean(list(state.features), axis=0))
            if float(recent @ f) < self.topic_shift:
                state.features.clear()
                state.texts.clear()
                state.smoothed = None
                shifted = True
        mixed = f.copy()
        for i, past in enumerate(state.features):
            mixed += self.history_decay ** (i + 1) * past
        state.features.appendleft(f)
        return _unit(mixed)[None, :].astype(np.float32), shifted

    def route(self, query: str, session_id: str | None = None, *, lam: float | None = None,
              budget: float | None = None, history: Sequence[str] | None = None,
              features: np.ndarray | None = None) -> RoutingDecision:
        """Route one user turn of ``session_id`` (``None``: a one-off conversation given by ``history``).

        ``history``: earlier user turns, oldest first, used when the session is new (or for a one-off call).
        ``features``: this turn's features, when the caller has them (skips the featurizer).
        """
        query = validate_queries(query)[0]
        lam = self.router.lam if lam is None else lam
        budget = self.router.budget if budget is None else budget
        with self._lock:
            now = self.clock()
            state = self._session(session_id, now) if session_id is not None else _Session(last_seen=now)
            if history and state.turns == 0:
                for turn in validate_queries(list(history))[-self.history_turns:]:
                    self._router_input(state, turn, None)
                    state.texts.appendleft(turn)
            X, shifted = self._router_input(state, query, features)
            decision = self._decide(state, X, lam, budget, shifted, session_id)
            state.texts.appendleft(query)
            while len(state.features) > self.history_turns + 1:
                state.features.pop()
            while len(state.texts) > self.history_turns:
                state.texts.pop()
            state.last_seen = now
            return decision

    def _decide(self, state: _Session, X: Any, lam: float, budget: float | None, shifted: bool,
                session_id: str | None) -> RoutingDecision:
        names = self.router.candidates_
        S, C = self.router.predict_quality(X)[0], self.router.predict_cost(X)[0]
        U = utilities(S, C, lam, budget)[0]
        feasible = np.isfinite(U)
        if not feasible.any():
            if self.router.fallback is None:
                raise NoRouteError(f"no candidate fits the budget {budget} $ this turn; raise it or declare a fallback")
            smoothed = np.where(np.arange(len(names)) == names.index(self.router.fallback), 0.0, -np.inf)
        elif state.smoothed is None:
            smoothed = U
        else:  # a candidate with no past estimate (NaN: it was out of budget) starts from this turn's utility
            past = np.where(np.isnan(state.smoothed), U, state.smoothed)
            smoothed = np.where(feasible, self.stickiness * past + (1 - self.stickiness) * U, -np.inf)
        top = smoothed.max()
        best = int(np.where(smoothed >= top - 1e-12, C, np.inf).argmin())
        current, why = state.candidate, "first turn"
        if current is None:
            chosen = best
        elif not np.isfinite(smoothed[current]):
            chosen, why = best, "budget forced a switch"
        elif smoothed[best] - smoothed[current] > self.hysteresis:
            chosen, why = best, f"{names[best]!r} beats {names[current]!r} by more than {self.hysteresis:g}"
        else:
            chosen, why = current, "kept the session's model"
        switched = current is not None and chosen != current
        state.turns += 1
        state.switches += int(switched)
        state.candidate, state.smoothed = chosen, np.where(np.isfinite(smoothed), smoothed, np.nan)
        info = {"session_id": session_id, "turn": state.turns, "switched": switched,
                "previous": None if current is None else names[current], "sticky": chosen != best,
                "topic_shift": shifted, "smoothed_utility": dict(zip(names, smoothed.tolist())),
                "switches": state.switches}
        return RoutingDecision(
            candidate=names[chosen], index=chosen, quality=dict(zip(names, S.tolist())),
            cost=dict(zip(names, C.tolist())), lam=float(lam), budget=budget, reason=f"session turn "
            f"{state.turns}: {why}", router=f"session:{self.router.name}", fallback=not feasible.any(),
            metadata={"session": info})


__all__ = ["SessionRouter", "SessionStats"]
