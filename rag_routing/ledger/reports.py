"""Totals, breakdowns, a terminal table, JSON and CSV for ledger entries.

Sums of money, seconds and energy use :func:`math.fsum`: exactly rounded, so the totals do not depend on the
order in which threads recorded the entries.

Example:
    >>> from rag_routing.ledger.entry import LedgerEntry
    >>> rows = [LedgerEntry("generation", "a", cost_usd=0.1), LedgerEntry("generation", "b", cost_usd=0.2)]
    >>> totals(rows)["cost_usd"], list(breakdown(rows, "component"))
    (0.30000000000000004, ['a', 'b'])
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.ledger.entry import ENTRY_FIELDS, LedgerEntry

GROUPS = ("stage", "component", "model", "principal", "decision_id")
NONE_KEY = "(none)"


def totals(entries: Sequence[LedgerEntry]) -> dict[str, Any]:
    """Calls, tokens, $, seconds, energy, emissions and how many entries are estimated / unpriced / unknown."""
    input_tokens = sum(e.input_tokens for e in entries)
    output_tokens = sum(e.output_tokens for e in entries)
    return {
        "calls": len(entries),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "tokens": input_tokens + output_tokens,
        "cost_usd": math.fsum(e.cost_usd for e in entries),
        "seconds": math.fsum(e.seconds for e in entries),
        "energy_kwh": math.fsum(e.energy_kwh for e in entries if e.energy_kwh is not None),
        "emissions_gco2e": math.fsum(e.emissions_gco2e for e in entries if e.emissions_gco2e is not None),
        "estimated_calls": sum(1 for e in entries if e.estimated),
        "unpriced_calls": sum(1 for e in entries if not e.priced),
        "energy_unknown_calls": sum(1 for e in entries if e.energy_kwh is None),
    }


def breakdown(entries: Sequence[LedgerEntry], by: str = "stage") -> dict[str, dict[str, Any]]:
    """:func:`totals` per value of ``by`` (first-seen order); a missing value is grouped as ``"(none)"``."""
    if by not in GROUPS:
        raise InvalidInputError(f"breakdown by must be one of {GROUPS}, got {by!r}")
    groups: dict[str, list[LedgerEntry]] = {}
    for e in entries:
        key = getattr(e, by)
        groups.setdefault(NONE_KEY if key is None else str(key), []).append(e)
    return {key: totals(rows) for key, rows in groups.items()}


def merge_totals(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The :func:`totals` of two disjoint sets of entries, from their totals."""
    return {key: (math.fsum((a[key], b[key])) if isinstance(a[key], float) else a[key] + b[key]) for key in a}


def merge_breakdowns(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The :func:`breakdown` of two disjoint sets of entries (``a``'s keys first)."""
    out = dict(a)
    for key, t in b.items():
        out[key] = merge_totals(out[key], t) if key in out else t
    return out


def table(entries: Sequence[LedgerEntry], by: str = "stage") -> str:
    """A fixed-width terminal table of :func:`breakdown` plus a TOTAL row and notes on estimates."""
    return table_from(breakdown(entries, by), totals(entries), by)


def table_from(rows: dict[str, dict[str, Any]], overall: dict[str, Any], by: str = "stage") -> str:
    """:func:`table` from a breakdown and its totals (e.g. a bounded ledger's, see ``CostLedger(max_entries=)``)."""
    header = [by, "calls", "in tok", "out tok", "cost $", "seconds", "energy Wh", "gCO2e"]

    def cells(name: str, t: dict[str, Any]) -> list[str]:
        energy = "?" if t["energy_unknown_calls"] == t["calls"] and t["calls"] else f"{t['energy_kwh'] * 1e3:.4f}"
        co2 = "?" if energy == "?" else f"{t['emissions_gco2e']:.4f}"
        return [name, str(t["calls"]), str(t["input_tokens"]), str(t["output_tokens"]), f"{t['cost_usd']:.6f}",
                f"{t['seconds']:.3f}", energy, co2]

    body = [cells(name, t) for name, t in rows.items()]
    total = cells("TOTAL", overall)
    widths = [max(len(r[i]) for r in [header, *body, total]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    rule = "-" * len(line(header))
    out = [line(header), rule, *(line(r) for r in body), rule, line(total)]
    notes = []
    if overall["estimated_calls"]:
        notes.append(f"{overall['estimated_calls']} call(s) with estimated tokens")
    if overall["unpriced_calls"]:
        notes.append(f"{overall['unpriced_calls']} unpriced call(s) counted at $0")
    if overall["energy_unknown_calls"]:
        notes.append(f"energy unknown for {overall['energy_unknown_calls']} call(s) (model size unknown)")
    if notes:
        out.append("note: " + "; ".join(notes))
    return "\n".join(out)


def to_json(entries: Sequence[LedgerEntry], *, ledger_id: str | None = None, path: str | Path | None = None,
            indent: int | None = 2, summary: dict[str, Any] | None = None) -> str:
    """Totals, breakdowns by stage / component / model, and every entry; written to ``path`` if given.

    ``summary`` (``{"totals": ..., "breakdown": {by: ...}}``) replaces the totals and breakdowns computed from
    ``entries``, for a ledger that no longer holds all of its entries in memory."""
    doc = {
        "ledger_id": ledger_id,
        "totals": totals(entries) if summary is None else summary["totals"],
        "breakdown": ({by: breakdown(entries, by) for by in ("stage", "component", "model")} if summary is None
                      else summary["breakdown"]),
        "entries": [e.to_dict() for e in entries],
    }
    if summary is not None and "evicted_entries" in summary:
        doc["evicted_entries"] = summary["evicted_entries"]  # counted in the totals, no longer listed
    text = json.dumps(doc, indent=indent, default=str)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def from_json(source: str | Path) -> tuple[str | None, list[LedgerEntry]]:
    """(ledger id, entries) from :func:`to_json` output: a JSON string or a path to a file holding one."""
    if not isinstance(source, (str, Path)):
        raise InvalidInputError(f"from_json takes a JSON string or a file path, got {type(source).__name__}")
    text = source if isinstance(source, str) and source.lstrip().startswith("{") else None
    if text is None:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptStateError(f"ledger export {str(source)!r} is not UTF-8 text: {exc}") from exc
        except OSError as exc:  # missing, a folder, unreadable, a name too long
            raise InvalidInputError(f"cannot read a ledger JSON export from {str(source)[:200]!r}: "
                                    f"{exc.strerror or exc}; pass the path of a to_json() file or its text") from exc
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
            raise TypeError("expected an object with an 'entries' list")
        ledger_id = doc.get("ledger_id")
        if ledger_id is not None and not isinstance(ledger_id, str):
            raise TypeError(f"ledger_id must be a string, got {type(ledger_id).__name__}")
        return ledger_id, [LedgerEntry.from_dict(d) for d in doc["entries"]]
    except RecursionError as exc:  # JSON nested deeper than the parser's stack
        raise CorruptStateError("not a ledger JSON export: nested too deeply to read") from exc
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, InvalidInputError) as exc:
        raise CorruptStateError(f"not a ledger JSON export: {exc}") from exc


def to_csv(entries: Iterable[LedgerEntry], path_or_buffer: str | Path | IO[str] | None = None) -> str | None:
    """One row per entry with a header of the entry fields; ``metadata`` is a JSON string, ``None`` empty."""
    if path_or_buffer is None:
        buffer = io.StringIO()
        _write_csv(entries, buffer)
        return buffer.getvalue()
    if hasattr(path_or_buffer, "write"):
        _write_csv(entries, path_or_buffer)  # type: ignore[arg-type]
        return None
    with open(path_or_buffer, "w", newline="", encoding="utf-8") as handle:  # type: ignore[arg-type]
        _write_csv(entries, handle)
    return None


def _write_csv(entries: Iterable[LedgerEntry], handle: IO[str]) -> None:
    writer = csv.writer(handle)
    writer.writerow(ENTRY_FIELDS)
    for e in entries:
        row: list[Any] = []
        for name in ENTRY_FIELDS:
            value = getattr(e, name)
            if name == "metadata":
                value = json.dumps(dict(value), default=str, sort_keys=True)
            row.append("" if value is None else value)
        writer.writerow(row)


__all__ = ["totals", "breakdown", "table", "table_from", "merge_totals", "merge_breakdowns", "to_json", "from_json",
           "to_csv", "GROUPS"]
