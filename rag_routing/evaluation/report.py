"""Benchmark results: one :class:`RouterResult` per router, a :class:`BenchmarkReport` per run, its JSON and
its text table.

JSON layout (``BenchmarkReport.to_dict``): ``dataset``, ``candidates``, ``n_train``, ``n_test``,
``cost_source``, ``embedder``, ``seed``, ``strong``/``weak`` (two candidates), ``best_single``,
``cost_range``, ``zero_router_aiq`` (AIQ of the hull of the single candidates, RouterBench's "zero router"),
``seconds``, ``notes`` and ``results``: per router ``router``, ``kind`` (``router``/``baseline``/``single``),
``aiq``, ``max_quality``, ``cost_at_best_single_quality`` (mean US $ per query, ``null`` if never reached),
``saving_vs_best_single`` (a fraction of the best single candidate's cost, like every other field; the
table prints it in %), ``out_of_support`` (share of test queries outside the router's training support, for
routers that estimate it; absent otherwise), ``explain`` (what a router that chooses its own method, such as
``auto``, chose and why; absent otherwise), and for two candidates ``apgr`` and ``cpt`` = ``{"20": x, "50": x, "80": x}``
(fractions of queries sent to the strong model; ``null`` for a fixed choice, which has no threshold curve),
plus the operating points (``curve``), their hull, RouteLLM's curve and timings.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RouterResult:
    """Metrics of one router (or fixed choice) on the test set."""

    router: str
    kind: str
    aiq: float
    max_quality: float
    cost_at_best_single_quality: float | None
    saving_vs_best_single: float | None
    apgr: float | None = None
    cpt: dict[str, float] | None = None
    curve: dict[str, list[float]] = field(default_factory=dict)
    hull: dict[str, list[float]] = field(default_factory=dict)
    routellm_curve: dict[str, list[float]] | None = None
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    out_of_support: float | None = None
    explain: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.out_of_support is not None:
            extra["out_of_support"] = self.out_of_support
        if self.explain is not None:
            extra["explain"] = self.explain
        return {
            "router": self.router,
            "kind": self.kind,
            "aiq": self.aiq,
            "max_quality": self.max_quality,
            "cost_at_best_single_quality": self.cost_at_best_single_quality,
            "saving_vs_best_single": self.saving_vs_best_single,
            "apgr": self.apgr,
            "cpt": self.cpt,
            "curve": self.curve,
            "hull": self.hull,
            "routellm_curve": self.routellm_curve,
            "fit_seconds": round(self.fit_seconds, 4),
            "eval_seconds": round(self.eval_seconds, 4),
            **extra,
        }


@dataclass
class BenchmarkReport:
    """Everything a benchmark run measured (see module docstring for the JSON layout)."""

    dataset: str
    candidates: list[str]
    n_train: int
    n_test: int
    cost_source: str
    embedder: str | None
    seed: int
    best_single: str
    cost_range: tuple[float, float]
    zero_router_aiq: float
    results: list[RouterResult]
    strong: str | None = None
    weak: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def two_candidates(self) -> bool:
        return len(self.candidates) == 2

    def result(self, router: str) -> RouterResult:
        """The result row called ``router``."""
        for row in self.results:
            if row.router == router:
                return row
        raise KeyError(f"no result for {router!r}; rows: {[r.router for r in self.results]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "candidates": list(self.candidates),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "cost_source": self.cost_source,
            "embedder": self.embedder,
            "seed": self.seed,
            "strong": self.strong,
            "weak": self.weak,
            "best_single": self.best_single,
            "cost_range": list(self.cost_range),
            "zero_router_aiq": self.zero_router_aiq,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "notes": list(self.notes),
            "results": [r.to_dict() for r in self.results],
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically; NaN written as ``null``). Returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(_finite(self.to_dict()), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target

    def table(self) -> str:
        """The results as a fixed-width text table (costs in US $ per 1,000 queries)."""
        return format_table(self)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_table(report: BenchmarkReport) -> str:
    """Fixed-width table of ``report`` (see :meth:`BenchmarkReport.table`)."""
    columns = ["router", "AIQ", "max quality", "$/1k q @best", "saving %"]
    if report.two_candidates:
        columns += ["APGR", "CPT20 %", "CPT50 %", "CPT80 %"]
    columns += ["fit s"]
    rows = []
    for r in report.results:
        cost = None if r.cost_at_best_single_quality is None else r.cost_at_best_single_quality * 1000
        row = [r.router if r.kind != "single" else f"= {r.router}", _fmt(r.aiq, ".4f"), _fmt(r.max_quality, ".4f"),
               _fmt(cost, ".4g"), _fmt(None if r.saving_vs_best_single is None else 100 * r.saving_vs_best_single,
                                       ".1f")]
        if report.two_candidates:
            cpt = r.cpt or {}
            row += [_fmt(r.apgr, ".3f")] + [_fmt(None if k not in cpt else 100 * cpt[k], ".2f")
                                            for k in ("20", "50", "80")]
        row += [_fmt(r.fit_seconds, ".2f") if r.kind != "single" else "-"]
        rows.append(row)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(columns, widths)))
    out = [f"{report.dataset}: {report.n_train} train / {report.n_test} test queries, "
           f"{len(report.candidates)} candidates; best single: {report.best_single}",
           f"costs: {report.cost_source}", line, "-" * len(line)]
    for row in rows:
        out.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    lo, hi = report.cost_range
    out.append(f"AIQ over mean cost ${lo * 1000:.4g}-${hi * 1000:.4g} per 1k queries; zero router (hull of the "
               f"single candidates) AIQ {report.zero_router_aiq:.4f}; '= name' rows are single candidates")
    out.append(f"best single: {report.best_single}, the best mean test quality (several tied: the cheapest of them); "
               "fixed: per λ the candidate with the best training-mean quality - λ·cost")
    for r in report.results:
        if r.out_of_support is not None:
            out.append(f"{r.router}: {100 * r.out_of_support:.1f} % of test queries out of its training support")
        if r.explain is not None and r.explain.get("reason"):
            out.append(f"{r.router} chose {r.explain.get('chosen')}: {r.explain['reason']}")
    out += [f"note: {note}" for note in report.notes if note.startswith("identical operating points")]
    return "\n".join(out)


__all__ = ["RouterResult", "BenchmarkReport", "format_table"]
