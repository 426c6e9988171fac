"""Which ledger entries a stage caused: a per-stage view of the ambient ledger, race-free under concurrency.

While a stage runs, :func:`stage_ledger` makes a :class:`StageLedger` the ambient ledger (a ContextVar, so
every asyncio task and every ``asyncio.to_thread`` worker sees its own). A :class:`StageLedger` forwards every
entry to the real (root) ledger, stamped with the stage's ``decision_id`` when the caller gave none, and keeps
the entries it forwarded. Nested stages forward straight to the root, so an entry belongs to exactly one stage
and the trace steps add up to the ledger's totals. Outside any ``ledger_scope`` the stage ledger keeps the
entries itself, so traces have costs even when nobody asked for a ledger.

This is a workaround until :mod:`rag_routing.ledger` offers an attribution hook (a ContextVar-scoped
listener notified on each recorded entry, plus an ambient decision id); see the stages report.

Example:
    >>> from rag_routing.ledger import ledger_scope, current_ledger
    >>> with ledger_scope() as root:
    ...     with stage_ledger("d1") as stage:
    ...         _ = current_ledger().record("retrieval", "bm25", seconds=0.01)
    ...     _ = current_ledger().record("generation", "llm")
    >>> [e.decision_id for e in root.entries], len(stage.collected)
    (['d1', None], 1)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rag_routing.ledger.entry import LedgerEntry
from rag_routing.ledger.ledger import CostLedger
from rag_routing.ledger.budget import Reservation
from rag_routing.ledger.scope import current_ledger, ledger_scope


class StageLedger(CostLedger):
    """A :class:`CostLedger` that forwards to a root ledger and remembers what it forwarded.

    Args:
        root: the real ledger (``None``: keep the entries here only).
        decision_id: stamped on entries recorded without one.
    """

    def __init__(self, root: CostLedger | None, decision_id: str | None):
        if isinstance(root, StageLedger):
            root = root.root
        kwargs: dict[str, Any] = {}
        if root is not None:  # same prices, energy model, budget and defaults as the root
            kwargs = {"budget": root.budget, "prices": root.prices, "energy": root.energy,
                      "principal": root.principal, "allow_unpriced": root.allow_unpriced}
        super().__init__(**kwargs)
        self.root = root
        self.decision_id = decision_id

    def record(self, stage: str, component: str | None = None, model: str | None = None, *,
               decision_id: str | None = None, **kwargs: Any) -> LedgerEntry:
        decision_id = decision_id if decision_id is not None else self.decision_id
        if self.root is None:
            return super().record(stage, component, model, decision_id=decision_id, **kwargs)
        entry = self.root.record(stage, component, model, decision_id=decision_id, **kwargs)
        with self._lock:
            self._entries.append(entry)
        return entry

    def add_entry(self, entry: LedgerEntry, *, reservation: Reservation | None = None) -> LedgerEntry:
        if self.root is None:
            return super().add_entry(entry, reservation=reservation)
        self.root.add_entry(entry, reservation=reservation)
        with self._lock:
            self._entries.append(entry)
        return entry

    @property
    def collected(self) -> tuple[LedgerEntry, ...]:
        """The entries recorded through this stage ledger (nested stages' entries excluded)."""
        return self.entries


@contextmanager
def stage_ledger(decision_id: str | None) -> Iterator[StageLedger]:
    """Make a :class:`StageLedger` over the current ambient ledger ambient inside the block."""
    collector = StageLedger(current_ledger(), decision_id)
    with ledger_scope(collector):
        yield collector


def root_ledger() -> CostLedger | None:
    """The real ambient ledger (skipping stage ledgers), or ``None``."""
    ledger = current_ledger()
    return ledger.root if isinstance(ledger, StageLedger) else ledger


__all__ = ["StageLedger", "stage_ledger", "root_ledger"]
