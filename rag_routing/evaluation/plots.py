"""Plots of a :class:`~rag_routing.evaluation.report.BenchmarkReport` (needs the ``plot`` extra: matplotlib).

Left: every router's cost-quality operating points and their non-decreasing hull, the single candidates as
labelled markers (RouterBench's figure). Right, for two candidates: quality against the share of calls to
the strong model at RouteLLM's thresholds, with the weak and strong models as horizontal lines.

Example:
    >>> plot_report(report, "mmlu.png")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag_routing.errors import require
from rag_routing.evaluation.report import BenchmarkReport

_DASHED = {"random", "oracle"}


def _colours(n: int) -> list[Any]:
    """``n`` distinct colours (tab10, or tab20 beyond ten lines)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _cost_quality(ax: Any, report: BenchmarkReport, colours: dict[str, Any]) -> None:
    singles = [r for r in report.results if r.kind == "single"]
    for r in report.results:
        if r.kind == "single" or not r.curve:
            continue
        cost = [c * 1000 for c in r.curve["cost"]]
        (line,) = ax.plot([c * 1000 for c in r.hull["cost"]], r.hull["quality"], color=colours[r.router],
                          linestyle="--" if r.router in _DASHED else "-", label=f"{r.router} (AIQ {r.aiq:.3f})")
        size = 6 if len(r.hull["cost"]) > 1 else 40  # a fixed choice is one point: make it visible
        ax.scatter(cost, r.curve["quality"], s=size, color=line.get_color(), alpha=0.6)
    for r in singles:
        c, q = r.curve["cost"][0] * 1000, r.curve["quality"][0]
        ax.scatter([c], [q], marker="*", s=80, color="black", zorder=3)
        ax.annotate(r.router.rsplit("/", 1)[-1], (c, q), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    costs = [r.curve["cost"][0] for r in singles if r.curve["cost"][0] > 0]
    if costs and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("mean cost, US $ per 1,000 queries")
    ax.set_ylabel("mean quality")
    ax.set_title(f"{report.dataset}\ncost vs quality, {report.n_test} test queries",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)


def _routellm(ax: Any, report: BenchmarkReport, colours: dict[str, Any]) -> None:
    for r in report.results:
        if r.routellm_curve is None:
            continue
        share = [100 * s for s in r.routellm_curve["strong_share"]]
        ax.plot(share, r.routellm_curve["performance"], marker=".", color=colours[r.router],
                linestyle="--" if r.router in _DASHED else "-", label=f"{r.router} (APGR {r.apgr:.3f})")
    for name, color in ((report.weak, "grey"), (report.strong, "red")):
        row = next(r for r in report.results if r.kind == "single" and r.router == name)
        ax.axhline(row.max_quality, color=color, linestyle=":", label=name)
    ax.set_xlabel("calls to the strong model (%)")
    ax.set_ylabel("mean quality")
    ax.set_title("RouteLLM protocol\n10 quantile thresholds of the router score", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)


def plot_report(report: BenchmarkReport, path: str | Path) -> Path:
    """Draw ``report`` to an image file (the format follows the extension); returns the path."""
    require("matplotlib", "plot")
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state is touched

    panels = 2 if report.strong is not None else 1
    fig = Figure(figsize=(9 * panels, 5.5))
    axes = fig.subplots(1, panels, squeeze=False)
    names = [r.router for r in report.results if r.kind != "single"]
    colours = dict(zip(names, _colours(len(names))))  # one colour per router in both panels
    _cost_quality(axes[0][0], report, colours)
    if panels == 2:
        _routellm(axes[0][1], report, colours)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    return target


__all__ = ["plot_report"]
