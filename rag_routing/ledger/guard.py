"""Guard one call: reserve its estimate before it runs, record what it really cost after.

``with ledger.guard(...) as call:`` (or ``async with``) prices the estimate first (an unknown price fails
here, before the call), reserves it on the ledger's budget (:class:`~rag_routing.errors.BudgetExceededError`
before the body runs), times the body, and records the call:

* ``call.record(usage=...)`` inside the block records the real usage and commits it to the reservation;
* leaving the block normally without ``call.record`` records the *estimate* (``estimated=True``);
* leaving it with an exception before ``call.record`` releases the reservation and records nothing.

Framework meters (the ambient LangChain handler) skip model runs inside a guard block, or inside
:func:`metered_call`, of the same ledger: the call is recorded once, by its guard.

Example:
    >>> from rag_routing.ledger import Budget, CostLedger
    >>> from rag_routing.errors import BudgetExceededError
    >>> ledger = CostLedger(budget=Budget(max_usd=0.001))
    >>> ran = []
    >>> try:
    ...     with ledger.guard(stage="generation", model="gpt-4o", est_input_tokens=10_000):
    ...         ran.append(True)
    ... except BudgetExceededError:
    ...     pass
    >>> ran, len(ledger)
    ([], 0)
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.ledger.budget import Reservation
from rag_routing.ledger.entry import LedgerEntry
from rag_routing.ledger.tokens import count_tokens

if TYPE_CHECKING:
    from rag_routing.ledger.ledger import CostLedger


_METERED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("rag_routing_metered_ledgers",
                                                                          default=frozenset())


def root_ledger_id(ledger: CostLedger) -> str:
    """The id of the ledger that finally keeps the entries (decision and stage views forward to it)."""
    seen = ledger
    for _ in range(32):
        parent = getattr(seen, "parent", None)
        if parent is None or not hasattr(parent, "ledger_id"):
            parent = getattr(seen, "root", None)
        if parent is None or not hasattr(parent, "ledger_id"):
            break
        seen = parent
    return seen.ledger_id


@contextmanager
def metered_call(ledger: CostLedger | None) -> Iterator[None]:
    """Mark the block as one call that the caller already reserves and records in ``ledger``: framework meters
    (the ambient LangChain handler) skip the model runs inside it, so nothing is counted twice.

    :class:`CallGuard` blocks are marked automatically.
    """
    if ledger is None:
        yield
        return
    token = _METERED.set(_METERED.get() | {root_ledger_id(ledger)})
    try:
        yield
    finally:
        _METERED.reset(token)


def is_metered(ledger: CostLedger) -> bool:
    """Whether the current code runs inside a :func:`metered_call` (or guard) of ``ledger``."""
    marked = _METERED.get()
    return bool(marked) and root_ledger_id(ledger) in marked


class CallGuard:
    """Reserve-then-record around one call; built by :meth:`CostLedger.guard`."""

    def __init__(self, ledger: CostLedger, *, stage: str, model: str, component: str | None = None,
                 est_input_tokens: int | None = None, est_output_tokens: int = 0, input_text: str | None = None,
                 est_seconds: float = 0.0, pricing: Pricing | None = None, params_billion: float | None = None,
                 decision_id: str | None = None, principal: str | None = None,
                 metadata: Mapping[str, Any] | None = None, allow_unpriced: bool | None = None):
        if est_input_tokens is None:
            est_input_tokens = count_tokens(input_text, model) if input_text is not None else 0
        self.ledger = ledger
        self._call = {"stage": stage, "model": model, "component": component, "pricing": pricing,
                      "params_billion": params_billion, "decision_id": decision_id, "principal": principal,
                      "metadata": metadata, "allow_unpriced": allow_unpriced}
        # Priced now, so that an unknown price fails before anything is reserved or run.
        self.estimate = ledger.estimate_call(model, est_input_tokens, est_output_tokens, pricing=pricing,
                                             params_billion=params_billion, allow_unpriced=allow_unpriced)
        self.est_seconds = est_seconds
        self.reservation: Reservation | None = None
        self.entry: LedgerEntry | None = None
        self._started = 0.0
        self._token: contextvars.Token[frozenset[str]] | None = None

    def __enter__(self) -> CallGuard:
        self.reservation = self.ledger.reserve(
            *self.estimate.amounts(self.est_seconds).as_tuple(),
            label=f"{self._call['stage']}/{self._call['model']}",
        )
        self._token = _METERED.set(_METERED.get() | {root_ledger_id(self.ledger)})  # see metered_call
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._token is not None:
            try:
                _METERED.reset(self._token)
            except ValueError:  # left in another context than entered: nothing of ours to undo there
                pass
            self._token = None
        if self.entry is not None or self.reservation is None:
            return
        if exc_type is not None:
            self.reservation.release()
            return
        self.record(input_tokens=self.estimate.input_tokens, output_tokens=self.estimate.output_tokens,
                    estimated=True)

    async def __aenter__(self) -> CallGuard:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    @property
    def elapsed(self) -> float:
        """Seconds since the guarded block started."""
        return time.perf_counter() - self._started if self._started else 0.0

    def record(self, *, usage: Any = None, input_tokens: int | None = None, output_tokens: int | None = None,
               output_text: str | None = None, seconds: float | None = None,
               metadata: Mapping[str, Any] | None = None, estimated: bool | None = None) -> LedgerEntry:
        """Record the call (its real usage when known) and commit it to the reservation. Once per guard."""
        if self.reservation is None:
            raise InvalidInputError("call.record() is only valid inside the `with ledger.guard(...)` block")
        if self.entry is not None:
            raise InvalidInputError("this guarded call was already recorded; open a new guard for a new call")
        call = dict(self._call)
        if metadata:
            call["metadata"] = {**(call["metadata"] or {}), **metadata}
        if input_tokens is None and usage is None:
            input_tokens = self.estimate.input_tokens  # the prompt's tokens were counted up front
        self.entry = self.ledger.record_call(
            **call, usage=usage, input_tokens=input_tokens, output_tokens=output_tokens, output_text=output_text,
            seconds=self.elapsed if seconds is None else seconds, estimated=estimated,
            reservation=self.reservation,
        )
        return self.entry


__all__ = ["CallGuard", "metered_call", "is_metered", "root_ledger_id"]
