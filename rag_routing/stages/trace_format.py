"""Terminal rendering of decision traces: one row per stage with its choice, cost and reason.

Example:
    >>> from rag_routing.stages.state import TraceStep
    >>> print(format_trace([TraceStep("retriever", "bm25", "fixed option 'bm25' (no router)", seconds=0.002)]))
    ... # doctest: +NORMALIZE_WHITESPACE
    stage      choice  $          tokens  seconds  reason
    retriever  bm25    0.00000000 0       0.002    fixed option 'bm25' (no router)
"""

from __future__ import annotations

from collections.abc import Sequence

from rag_routing.stages.state import TraceStep


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def format_trace(steps: Sequence[TraceStep], *, reason_width: int = 90) -> str:
    """A fixed-width table of ``steps`` (stage, choice, US $, tokens, ledger seconds, reason)."""
    header = ("stage", "choice", "$", "tokens", "seconds", "reason")
    rows = [(s.stage, s.choice, f"{s.usd:.8f}", str(s.tokens), f"{s.seconds:.3f}", _shorten(s.reason, reason_width))
            for s in steps]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


__all__ = ["format_trace"]
