"""`Judge`: scores an answer in [0, 1] (how far to trust it) so that a cascade can accept it or escalate.

Every judge answers ``score(query, answer, context=None, *, generation=None, candidate=None, previous=None)``:

* ``generation``: the reply that produced ``answer`` (a ``Generation``, a LangChain message, a
  :class:`~rag_routing.routers.judges.llm_client.Completion`): judges that read log-probabilities take them
  from here at no cost;
* ``candidate``: the name of the model that answered (learned judges use it);
* ``previous``: ``(candidate, answer)`` pairs of the earlier steps of a cascade (agreement features).

A judge records its own cost in the ambient ledger under ``stage="judge"`` and ``component=<judge name>``:
LLM judges record each call they make; local judges (a trained scorer, code execution) record their compute
time at $0; log-probability judges reading a given generation make no call and record nothing.

Subclasses implement ``_score(item)`` (and ``_ascore`` when they have a truly async path). ``threshold``
is the score at or above which an answer is accepted; :meth:`Judge.calibrate` sets it from data.

Example:
    >>> class Length(Judge):
    ...     name = "length"
    ...     def _score(self, item):
    ...         return min(1.0, len(item.answer) / 10)
    >>> j = Length(threshold=0.5)
    >>> j.score("q?", "short"), j.accepts(j.score("q?", "a long enough answer"))
    (0.5, True)
"""

from __future__ import annotations

import asyncio
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.ledger.scope import current_ledger

Previous = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class JudgeInput:
    """One (query, answer) to judge, with what the caller knows about how it was produced."""

    query: str
    answer: str
    context: str | None = None
    generation: Any = None
    candidate: str | None = None
    previous: tuple[tuple[str, str], ...] = ()


def make_input(query: str, answer: str, context: str | None = None, generation: Any = None,
               candidate: str | None = None, previous: Previous | None = None) -> JudgeInput:
    """A validated :class:`JudgeInput` (:class:`InvalidInputError` naming what is wrong)."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("query must be a non-empty string")
    if not isinstance(answer, str):
        raise InvalidInputError(f"answer must be a string, got {type(answer).__name__}")
    if context is not None and not isinstance(context, str):
        raise InvalidInputError(f"context must be a string or None, got {type(context).__name__}")
    pairs = tuple((str(c), str(a)) for c, a in (previous or ()))
    return JudgeInput(query, answer, context, generation, candidate, pairs)


class Judge(ABC):
    """Base class of answer judges (see module docstring).

    Args:
        threshold: accept an answer when its score is >= this value.
    """

    name: ClassVar[str] = "judge"

    def __init__(self, *, threshold: float = 0.5):
        self.threshold = _unit(threshold, "threshold")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold:.4g})"

    # -- scoring ----------------------------------------------------------------------------------------------
    def score(self, query: str, answer: str, context: str | None = None, *, generation: Any = None,
              candidate: str | None = None, previous: Previous | None = None) -> float:
        """Trust in ``answer`` for ``query``, in [0, 1] (1 = accept)."""
        item = make_input(query, answer, context, generation, candidate, previous)
        return _checked(self._score(item), self.name)

    async def ascore(self, query: str, answer: str, context: str | None = None, *, generation: Any = None,
                     candidate: str | None = None, previous: Previous | None = None) -> float:
        """:meth:`score` without blocking the event loop."""
        item = make_input(query, answer, context, generation, candidate, previous)
        return _checked(await self._ascore(item), self.name)

    def score_batch(self, queries: Sequence[str], answers: Sequence[str], contexts: Sequence[str | None] | None = None,
                    *, generations: Sequence[Any] | None = None, candidates: Sequence[str | None] | None = None,
                    previous: Sequence[Previous | None] | None = None) -> np.ndarray:
        """``(n,)`` scores; learned judges override this with a vectorised version."""
        items = _items(queries, answers, contexts, generations, candidates, previous)
        return np.array([_checked(self._score(item), self.name) for item in items], dtype=np.float64)

    def accepts(self, score: float) -> bool:
        """Whether a score clears :attr:`threshold`."""
        return score >= self.threshold

    @abstractmethod
    def _score(self, item: JudgeInput) -> float:
        """The score of one validated item."""

    async def _ascore(self, item: JudgeInput) -> float:
        # A worker thread copies the context, so the ambient ledger follows the call.
        return await asyncio.to_thread(self._score, item)

    # -- calibration ------------------------------------------------------------------------------------------
    def calibrate(self, scores: Sequence[float] | np.ndarray, *, target_escalation: float | None = None,
                  budget: float | None = None, accept_cost: Any = 0.0, escalate_cost: Any = None) -> float:
        """Set :attr:`threshold` from scores on a calibration set and return it.

        Give either ``target_escalation`` (the share of answers to escalate) or ``budget`` (mean US $ per
        query) with the cost of accepting (``accept_cost``) and the extra cost of escalating
        (``escalate_cost``), scalars or per-query arrays. See :mod:`.calibration`.
        """
        from rag_routing.routers.judges.calibration import threshold_for_budget, threshold_for_escalation

        if (target_escalation is None) == (budget is None):
            raise InvalidInputError("pass exactly one of target_escalation= or budget=")
        if target_escalation is not None:
            self.threshold = threshold_for_escalation(scores, target_escalation)
        else:
            if escalate_cost is None:
                raise InvalidInputError("a budget needs escalate_cost= (the extra $ of escalating a query)")
            self.threshold = threshold_for_budget(scores, budget, accept_cost, escalate_cost)
        return self.threshold

    # -- cost -------------------------------------------------------------------------------------------------
    def _record_compute(self, started: float, n: int = 1, **metadata: Any) -> None:
        """Record local work (no LLM call) at $0 with its seconds in the ambient ledger, if any."""
        from rag_routing.routers.judges.llm_client import current_decision_id

        ledger = current_ledger()
        if ledger is not None:
            ledger.record("judge", self.name, seconds=time.perf_counter() - started, cost_usd=0.0,
                          decision_id=current_decision_id(), metadata={"local": True, "items": n, **metadata})


def _items(queries: Sequence[str], answers: Sequence[str], contexts: Sequence[str | None] | None,
           generations: Sequence[Any] | None, candidates: Sequence[str | None] | None,
           previous: Sequence[Previous | None] | None) -> list[JudgeInput]:
    n = len(queries)
    columns = {"answers": answers, "contexts": contexts, "generations": generations, "candidates": candidates,
               "previous": previous}
    for label, column in columns.items():
        if column is not None and len(column) != n:
            raise InvalidInputError(f"{label} has {len(column)} items for {n} queries")
    pick = lambda column, i: None if column is None else column[i]  # noqa: E731
    return [make_input(queries[i], answers[i], pick(contexts, i), pick(generations, i), pick(candidates, i),
                       pick(previous, i)) for i in range(n)]


def _unit(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _checked(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or not -1e-9 <= value <= 1.0 + 1e-9:
        raise RuntimeError(f"judge {name!r} returned {value!r}; a judge score must be in [0, 1]")
    return min(1.0, max(0.0, value))


__all__ = ["Judge", "JudgeInput", "make_input", "Previous"]
