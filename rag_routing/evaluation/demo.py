"""``rag-routing demo``: a small routing benchmark on the shared RouteLLM MMLU data.

The baselines plus whichever learned routers of :data:`DEMO_ROUTERS` can be imported are fitted on half of
the 14,037 decontaminated MMLU questions and scored on the other half; the summary says how much cheaper than
GPT-4 each router reaches GPT-4's accuracy.

Example:
    >>> report = run_demo("../shared/data", embedder="tfidf", progress=False)   # doctest: +SKIP
    >>> print(saving_summary(report))                                           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.benchmark import BASELINES, load_split, router_class, run_benchmark
from rag_routing.evaluation.report import BenchmarkReport

#: Learned routers the demo runs when they are installed, in this order.
DEMO_ROUTERS: tuple[str, ...] = ("knn",)
#: Where the RouteLLM MMLU responses lie inside the shared data folder.
MMLU_RESPONSES = Path("routellm") / "mmlu" / "responses"


def importable(names: Sequence[str]) -> list[str]:
    """The names in ``names`` whose router class can be imported now."""
    found = []
    for name in names:
        try:
            router_class(name)
        except InvalidInputError:
            continue
        found.append(name)
    return found


def run_demo(data: str | Path, routers: Sequence[str] | None = None, *, embedder: Any = "tfidf", seed: int = 0,
             progress: bool = True) -> BenchmarkReport:
    """Benchmark ``routers`` (default: the importable :data:`DEMO_ROUTERS`) on RouteLLM MMLU in ``data``."""
    folder = Path(data).expanduser() / MMLU_RESPONSES
    if not folder.is_dir():
        raise InvalidInputError(f"RouteLLM MMLU data not found at {str(folder)!r}; pass --data pointing at the "
                                "shared data folder (the one holding routellm/, routerbench/, routerdc7/)")
    train, test = load_split(folder, test_size=0.5, seed=seed)
    chosen = importable(DEMO_ROUTERS) if routers is None else list(routers)
    return run_benchmark(train, test, chosen, embedder=embedder, seed=seed, progress=progress)


def saving_summary(report: BenchmarkReport) -> str:
    """One line per router: the cost of matching the best single candidate, and the saving."""
    lines = []
    for r in report.results:
        if r.kind == "single" or r.router in ("best", "cheapest"):
            continue
        if r.saving_vs_best_single is None:
            line = (f"{r.router}: never reaches {report.best_single}'s quality "
                    f"(best {r.max_quality:.4f}; AIQ {r.aiq:.4f})")
        else:
            tag = " (reads the answers: an upper bound)" if r.router == "oracle" else ""
            line = (f"{r.router}: {report.best_single}'s quality at {100 * r.saving_vs_best_single:.1f} % lower "
                    f"cost{tag}; AIQ {r.aiq:.4f}")
        if r.cpt:
            line += (f"; half of the {report.weak} -> {report.strong} quality gap with {100 * r.cpt['50']:.1f} % "
                     "strong calls (random: 50 %)")
        lines.append(line)
    learned = [r for r in report.results if r.kind == "router"]
    if not learned:
        lines.append(f"(no learned router available yet; the demo uses {', '.join(DEMO_ROUTERS)} when installed; "
                     f"baselines: {', '.join(BASELINES)})")
    return "\n".join(lines)


__all__ = ["DEMO_ROUTERS", "run_demo", "saving_summary", "importable"]
