"""The single cost ledger: every stage and router of a request (or session) records what it spent here.

One :class:`CostLedger` is shared by every component of a request or session (make it ambient with
:func:`~rag_routing.ledger.scope.ledger_scope`). :meth:`CostLedger.record` appends an entry (thread- and
asyncio-safe, a few microseconds in memory); :meth:`CostLedger.record_call` prices the tokens of an LLM call
with the price table (a provider's reported usage wins over counted tokens) and estimates its energy and
CO2. With a :class:`~rag_routing.ledger.budget.Budget` attached, :meth:`CostLedger.guard` refuses a call
before it runs if its estimate does not fit; with a store attached every entry is written through.

Example:
    >>> ledger = CostLedger()
    >>> _ = ledger.record("retrieval", "bm25", seconds=0.002)
    >>> e = ledger.record_call(stage="generation", model="gpt-4o-mini", usage={"prompt_tokens": 1000,
    ...                        "completion_tokens": 500}, seconds=0.8)
    >>> round(e.cost_usd, 6), e.estimated
    (0.00045, False)
    >>> ledger.totals()["calls"], sorted(ledger.breakdown("stage"))
    (2, ['generation', 'retrieval'])
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.ledger import reports
from rag_routing.ledger.budget import Budget, Reservation
from rag_routing.ledger.budget_stores import Amounts
from rag_routing.ledger.energy import DEFAULT_ENERGY_MODEL, EnergyModel
from rag_routing.ledger.entry import LedgerEntry, normalize_numbers
from rag_routing.ledger.pricing import PriceTable, default_table, price_with_source
from rag_routing.ledger.tokens import count_tokens, parse_usage

if TYPE_CHECKING:
    from rag_routing.ledger.guard import CallGuard
    from rag_routing.ledger.stores import LedgerStore

#: Breakdowns a bounded ledger keeps exact after evicting entries (decision ids grow without bound).
_FOLDED_GROUPS = ("stage", "component", "model", "principal")


@dataclass(frozen=True, slots=True)
class CallEstimate:
    """What a call of ``model`` with these token counts is expected to cost."""

    model: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    energy_kwh: float | None
    emissions_gco2e: float | None
    priced: bool
    #: Which source priced the call (see :mod:`rag_routing.ledger.pricing`).
    price_source: str = "table"

    def amounts(self, seconds: float = 0.0) -> Amounts:
        """The estimate in budget units (unknown energy counts as 0 kWh)."""
        return Amounts(self.cost_usd, self.input_tokens + self.output_tokens, seconds, self.energy_kwh or 0.0)


class CostLedger:
    """A thread- and asyncio-safe record of what every call of a request or session cost.

    Args:
        budget: refuse calls whose estimate does not fit (see :meth:`guard`, :meth:`reserve`); every recorded
            entry is charged to it.
        store: write every entry through to a store (e.g. ``SQLiteStore(path)``) before it is kept in memory.
        prices: the price table for :meth:`record_call` (default: the shipped table).
        energy: the energy model (default: EcoLogits' constants, world-average grid).
        principal: default principal of the entries.
        allow_unpriced: price unknown models at an explicit 0 (entries marked ``priced=False``) instead of
            raising :class:`~rag_routing.errors.UnknownPriceError`.
        max_entries: keep at most this many entries in memory (the newest), for long-running processes such as
            ``rag-routing serve``. Totals, reports and breakdowns by stage / component / model / principal stay
            exact over every entry ever recorded (older entries are folded into running sums); ``entries``,
            ``breakdown("decision_id")``, JSON and CSV exports cover the entries still held (attach a ``store``
            to keep the full history). ``None`` (default): keep everything.
    """

    def __init__(self, *, budget: Budget | None = None, store: LedgerStore | None = None,
                 prices: PriceTable | None = None, energy: EnergyModel | None = None,
                 principal: str | None = None, allow_unpriced: bool = False, ledger_id: str | None = None,
                 max_entries: int | None = None):
        if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                        or max_entries < 1):
            raise InvalidInputError(f"max_entries must be a positive integer or None, got {max_entries!r}")
        self.budget = budget
        self.store = store
        self.prices = prices
        self.energy = energy or DEFAULT_ENERGY_MODEL
        self.principal = principal
        self.allow_unpriced = allow_unpriced
        self.ledger_id = ledger_id or uuid.uuid4().hex[:12]
        self.max_entries = max_entries
        self._entries: list[LedgerEntry] | deque[LedgerEntry] = [] if max_entries is None else deque()
        self._evicted = 0
        self._evicted_totals: dict[str, Any] = reports.totals(())
        self._evicted_groups: dict[str, dict[str, dict[str, Any]]] = {by: {} for by in _FOLDED_GROUPS}
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        # Entry ids are <ledger id>:<run>:<n>: the random run token makes them unique across restarts with a
        # fixed ledger_id and across processes restoring one export, so no store mistakes a new entry for a retry.
        self._run = uuid.uuid4().hex[:16]

    @classmethod
    def from_store(cls, store: LedgerStore, **kwargs: Any) -> CostLedger:
        """A ledger holding every entry of ``store`` that keeps appending to it."""
        ledger = cls(store=store, **kwargs)
        entries = store.load_entries()
        with ledger._lock:
            for entry in entries:
                ledger._keep(entry)
        ledger._seq = itertools.count(len(entries) + 1)
        return ledger

    # -- recording ----------------------------------------------------------------------------------------
    def record(self, stage: str, component: str | None = None, model: str | None = None, *,
               input_tokens: int = 0, output_tokens: int = 0, cost_usd: float = 0.0, seconds: float = 0.0,
               energy_kwh: float | None = None, emissions_gco2e: float | None = None,
               decision_id: str | None = None, principal: str | None = None,
               metadata: Mapping[str, Any] | None = None, estimated: bool = False, priced: bool = True,
               timestamp: float | None = None, reservation: Reservation | None = None) -> LedgerEntry:
        """Append one entry and return it. Amounts are validated (negative / NaN -> InvalidInputError).

        With ``reservation`` the entry's amounts are committed to it; otherwise they are charged to the
        attached budget, if any.
        """
        _check_names(stage, component, model, decision_id, principal)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInputError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
        return self._append(stage, component, model, input_tokens, output_tokens, cost_usd, seconds, energy_kwh,
                            emissions_gco2e, decision_id, principal, {} if metadata is None else dict(metadata),
                            estimated, priced, timestamp, reservation)

    def _append(self, stage: str, component: str | None, model: str | None, input_tokens: Any, output_tokens: Any,
                cost_usd: Any, seconds: Any, energy_kwh: Any, emissions_gco2e: Any, decision_id: str | None,
                principal: str | None, metadata: dict[str, Any], estimated: bool, priced: bool,
                timestamp: float | None, reservation: Reservation | None) -> LedgerEntry:
        """Build and add an entry from checked names and a metadata dict the entry may own."""
        input_tokens, output_tokens, cost_usd, seconds, energy_kwh, emissions_gco2e = normalize_numbers(
            input_tokens, output_tokens, cost_usd, seconds, energy_kwh, emissions_gco2e)
        entry = LedgerEntry(
            stage, component or model or stage, model, input_tokens, output_tokens, cost_usd, seconds,
            energy_kwh, emissions_gco2e, decision_id, time.time() if timestamp is None else timestamp,
            principal if principal is not None else self.principal, metadata, estimated, priced,
            f"{self.ledger_id}:{self._run}:{next(self._seq)}",
        )
        return self.add_entry(entry, reservation=reservation)

    def add_entry(self, entry: LedgerEntry, *, reservation: Reservation | None = None) -> LedgerEntry:
        """Append a ready-made entry (from another ledger or process): store first, then memory, then budget."""
        if self.store is not None:
            self.store.append(entry)  # durable before it counts: a failed write records nothing
        with self._lock:
            self._keep(entry)
        if reservation is not None:
            reservation.commit(entry)
        elif self.budget is not None:
            self.budget.charge(entry.cost_usd, entry.input_tokens + entry.output_tokens, entry.seconds,
                               entry.energy_kwh or 0.0)
        return entry

    def estimate_call(self, model: str | None, input_tokens: int = 0, output_tokens: int = 0, *,
                      pricing: Pricing | None = None, params_billion: float | None = None,
                      seconds: float | None = None, allow_unpriced: bool | None = None) -> CallEstimate:
        """Cost, energy and emissions of a call with these token counts (nothing is recorded)."""
        return CallEstimate(model, *self._price_call(model, input_tokens, output_tokens, pricing, params_billion,
                                                     seconds, allow_unpriced))

    def _price_call(self, model: str | None, input_tokens: Any, output_tokens: Any, pricing: Pricing | None,
                    params_billion: float | None, seconds: float | None, allow_unpriced: bool | None,
                    ) -> tuple[int, int, float, float | None, float | None, bool, str]:
        """(input tokens, output tokens, cost, kWh, gCO2e, priced, price source) of a call (tokens checked).

        Price look-ups are memoised by the price table (per model id, cleared whenever the table changes).
        """
        table = self.prices if self.prices is not None else default_table()
        unpriced_ok = self.allow_unpriced if allow_unpriced is None else allow_unpriced
        chosen, priced, source = price_with_source(model, pricing, table, unpriced_ok)
        if type(input_tokens) is not int or type(output_tokens) is not int or input_tokens < 0 or output_tokens < 0:
            input_tokens, output_tokens, *_ = normalize_numbers(input_tokens, output_tokens, 0.0, 0.0, None, None)
        total_params = None
        if params_billion is None and model is not None:
            info = table.find(model)
            if info is not None:
                params_billion, total_params = info.params_billion, info.total_params_billion
        energy = self.energy.estimate(output_tokens, params_billion, input_tokens=input_tokens,
                                      total_params_billion=total_params, request_seconds=seconds)
        return (input_tokens, output_tokens, chosen.cost(input_tokens, output_tokens), energy.kwh, energy.gco2e,
                priced, source)

    def record_call(self, *, stage: str, model: str, component: str | None = None,
                    input_tokens: int | None = None, output_tokens: int | None = None, seconds: float = 0.0,
                    pricing: Pricing | None = None, params_billion: float | None = None, usage: Any = None,
                    input_text: str | None = None, output_text: str | None = None,
                    decision_id: str | None = None, principal: str | None = None,
                    metadata: Mapping[str, Any] | None = None, allow_unpriced: bool | None = None,
                    estimated: bool | None = None, reservation: Reservation | None = None) -> LedgerEntry:
        """Record an LLM call, priced from its tokens, with estimated energy and emissions.

        Token counts come, in order of preference, from the provider's ``usage`` (OpenAI, Anthropic, LangChain
        shapes), then ``input_tokens`` / ``output_tokens``, then counting ``input_text`` / ``output_text``.
        The entry is ``estimated`` unless ``usage`` reported both counts (override with ``estimated=``).
        ``metadata["price_source"]`` says which source priced it (candidate, override, genai-prices, shipped).
        """
        tokens_in, tokens_out, reported = self._resolve_tokens(model, input_tokens, output_tokens, usage,
                                                               input_text, output_text)
        tokens_in, tokens_out, cost, kwh, gco2e, priced, source = self._price_call(
            model, tokens_in, tokens_out, pricing, params_billion, seconds, allow_unpriced)
        if type(self).record is not CostLedger.record:  # a view that stamps or forwards entries (StageLedger)
            return self.record(
                stage, component, model, input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=cost,
                seconds=seconds, energy_kwh=kwh, emissions_gco2e=gco2e, decision_id=decision_id,
                principal=principal, metadata={"price_source": source, **(metadata or {})},
                estimated=(not reported) if estimated is None else estimated, priced=priced,
                reservation=reservation)
        _check_names(stage, component, model, decision_id, principal)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInputError(f"metadata must be a mapping or None, got {type(metadata).__name__}")
        meta = {"price_source": source}
        if metadata:
            meta.update(metadata)
        return self._append(stage, component, model, tokens_in, tokens_out, cost, seconds, kwh, gco2e, decision_id,
                            principal, meta, (not reported) if estimated is None else estimated, priced, None,
                            reservation)

    @staticmethod
    def _resolve_tokens(model: str | None, input_tokens: int | None, output_tokens: int | None, usage: Any,
                        input_text: str | None, output_text: str | None) -> tuple[int, int, bool]:
        reported_in, reported_out = parse_usage(usage)
        resolved = []
        for reported, given, text in ((reported_in, input_tokens, input_text),
                                      (reported_out, output_tokens, output_text)):
            if reported is not None:
                resolved.append(reported)
            elif given is not None:
                resolved.append(given)
            elif text is not None:
                resolved.append(count_tokens(text, model))
            else:
                resolved.append(0)
        return resolved[0], resolved[1], reported_in is not None and reported_out is not None

    # -- budgets ------------------------------------------------------------------------------------------
    def reserve(self, usd: float = 0.0, tokens: float = 0.0, seconds: float = 0.0, kwh: float = 0.0, *,
                label: str | None = None) -> Reservation:
        """Reserve on the attached budget (raises BudgetExceededError); a no-op reservation without budget."""
        if self.budget is None:
            return Reservation(None, Amounts(usd, tokens, seconds, kwh).validate(), label=label)
        return self.budget.reserve(usd, tokens, seconds, kwh, label=label)

    def reserve_call(self, model: str | None, input_tokens: int, output_tokens: int, *,
                     pricing: Pricing | None = None, allow_unpriced: bool | None = None,
                     label: str | None = None) -> Reservation:
        """Price a call's estimate and reserve it on the attached budget in one step (what framework meters do
        before a model call): an unknown price raises :class:`~rag_routing.errors.UnknownPriceError` and a
        budget that cannot cover it :class:`~rag_routing.errors.BudgetExceededError`, before anything runs.

        Example:
            >>> ledger = CostLedger(budget=Budget(max_usd=0.01))
            >>> held = ledger.reserve_call("gpt-4o-mini", 1000, 500, label="generation/gpt-4o-mini")
            >>> round(ledger.budget.reserved().usd, 6); held.release()
            0.00045
        """
        tokens_in, tokens_out, cost, kwh, *_ = self._price_call(model, input_tokens, output_tokens, pricing, None,
                                                                None, allow_unpriced)
        return self.reserve(cost, tokens_in + tokens_out, 0.0, kwh or 0.0, label=label)

    def guard(self, *, stage: str, model: str, component: str | None = None, est_input_tokens: int | None = None,
              est_output_tokens: int = 0, input_text: str | None = None, est_seconds: float = 0.0,
              pricing: Pricing | None = None, params_billion: float | None = None,
              decision_id: str | None = None, principal: str | None = None,
              metadata: Mapping[str, Any] | None = None, allow_unpriced: bool | None = None) -> CallGuard:
        """A (sync or async) context manager that reserves the estimate before the call and records it after.

        Example:
            >>> ledger = CostLedger(budget=Budget(max_usd=0.01))
            >>> with ledger.guard(stage="generation", model="gpt-4o", est_input_tokens=1000,
            ...                   est_output_tokens=200) as call:
            ...     _ = call.record(usage={"input_tokens": 1000, "output_tokens": 150})
            >>> round(ledger.totals()["cost_usd"], 4)
            0.004
        """
        from rag_routing.ledger.guard import CallGuard

        return CallGuard(self, stage=stage, model=model, component=component, est_input_tokens=est_input_tokens,
                         est_output_tokens=est_output_tokens, input_text=input_text, est_seconds=est_seconds,
                         pricing=pricing, params_billion=params_billion, decision_id=decision_id,
                         principal=principal, metadata=metadata, allow_unpriced=allow_unpriced)

    def _keep(self, entry: LedgerEntry) -> None:
        """Hold ``entry`` in memory (caller holds the lock); past ``max_entries`` fold the oldest into the sums."""
        self._entries.append(entry)
        limit = self.max_entries
        # Fold in batches (a tenth of the limit, at most 1,000): amortised, a record stays a few microseconds.
        if limit is not None and len(self._entries) > limit + min(max(limit // 10, 1), 1000) - 1:
            oldest = [self._entries.popleft() for _ in range(len(self._entries) - limit)]  # type: ignore[union-attr]
            self._evicted += len(oldest)
            self._evicted_totals = reports.merge_totals(self._evicted_totals, reports.totals(oldest))
            for by, groups in self._evicted_groups.items():
                self._evicted_groups[by] = reports.merge_breakdowns(groups, reports.breakdown(oldest, by))

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """A snapshot of the entries held in memory (all of them, or the newest ``max_entries``), in recording
        order."""
        with self._lock:
            held = tuple(self._entries)
        return held if self.max_entries is None else held[-self.max_entries:]

    @property
    def evicted(self) -> int:
        """How many entries ``max_entries`` dropped from memory (still counted in totals and reports)."""
        with self._lock:
            return self._evicted + max(0, len(self._entries) - (self.max_entries or len(self._entries)))

    def __len__(self) -> int:
        return len(self._entries) if self.max_entries is None else min(len(self._entries), self.max_entries)

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(self.entries)

    def _snapshot(self) -> tuple[tuple[LedgerEntry, ...], dict[str, Any], dict[str, dict[str, dict[str, Any]]]]:
        """Every entry held (the newest ``max_entries`` plus a batch not yet folded) and the folded sums."""
        with self._lock:
            return (tuple(self._entries), dict(self._evicted_totals),
                    {by: dict(groups) for by, groups in self._evicted_groups.items()})

    def totals(self) -> dict[str, Any]:
        """Calls, tokens, $, seconds, kWh, gCO2e (exactly rounded sums) and flag counts over all entries."""
        entries, evicted, _ = self._snapshot()
        held = reports.totals(entries)
        return held if self.max_entries is None else reports.merge_totals(evicted, held)

    def breakdown(self, by: str = "stage") -> dict[str, dict[str, Any]]:
        """:meth:`totals` per ``stage``, ``component``, ``model``, ``principal`` or ``decision_id`` (with
        ``max_entries``, ``decision_id`` covers the entries still held)."""
        entries, _, groups = self._snapshot()
        kept = reports.breakdown(entries, by)
        return reports.merge_breakdowns(groups[by], kept) if self.max_entries is not None and by in groups else kept

    def report(self, by: str = "stage") -> str:
        """A terminal table of the :meth:`breakdown` with a total row."""
        return reports.table_from(self.breakdown(by), self.totals(), by)

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        """Totals, breakdowns and every entry held as JSON (also written to ``path`` if given)."""
        summary = None
        if self.max_entries is not None:
            summary = {"totals": self.totals(),
                       "breakdown": {by: self.breakdown(by) for by in ("stage", "component", "model")},
                       "evicted_entries": self.evicted}
        return reports.to_json(self.entries, ledger_id=self.ledger_id, path=path, indent=indent, summary=summary)

    @classmethod
    def from_json(cls, source: str | Path, **kwargs: Any) -> CostLedger:
        """Rebuild a ledger from :meth:`to_json` output (a JSON string or a file path)."""
        ledger_id, entries = reports.from_json(source)
        ledger = cls(ledger_id=kwargs.pop("ledger_id", ledger_id), **kwargs)
        with ledger._lock:
            for entry in entries:
                ledger._keep(entry)
        ledger._seq = itertools.count(len(entries) + 1)
        return ledger

    def to_csv(self, path_or_buffer: str | Path | IO[str] | None = None) -> str | None:
        """One CSV row per entry (metadata as JSON); returns the text when no destination is given."""
        return reports.to_csv(self.entries, path_or_buffer)

    def __repr__(self) -> str:
        t = self.totals()
        return f"CostLedger({t['calls']} calls, ${t['cost_usd']:.6f}, budget={self.budget!r})"


def _check_names(stage: Any, component: Any, model: Any, decision_id: Any, principal: Any) -> None:
    if type(stage) is not str or not stage:
        raise InvalidInputError(f"stage must be a non-empty string, got {stage!r}")
    for name, value in (("component", component), ("model", model), ("decision_id", decision_id),
                        ("principal", principal)):
        if value is not None and type(value) is not str and not isinstance(value, str):
            raise InvalidInputError(f"{name} must be a string or None, got {type(value).__name__}")


__all__ = ["CostLedger", "CallEstimate", "LedgerEntry"]
