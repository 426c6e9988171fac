"""RouterDC's two protocols on its seven 7-8B models (``../shared/data/routerdc7``), with ``auto`` against
``fixed`` and the best single model of each test set.

Run: ``python benchmarks/routerdc_protocols.py [--data ../shared/data] [--routers auto] [--embedder tfidf]
[--tasks mmlu,cmmlu,...] [--json OUT.json]``.

* **in distribution**: train on ``<task>_train.json``, test on ``<task>_test.json``;
* **leave one task out**: train on the other tasks' training files (their union, as ``rag-routing bench
  --train A --train B ...`` reads them), test on ``<task>_test.json``.

Printed per task and protocol: each router's quality at λ = 0 (the data carry no costs; they are priced per
token with the shipped price table, so λ = 0 is RouterDC's accuracy setting), ``fixed`` (the model with the best
training mean), the best single model on the test set, and what ``auto`` chose. The last lines give the mean gain
over the best single model in points, next to RouterDC's published +2.76 (in distribution) and +1.90 (out of
distribution). Settings are the library defaults; nothing is chosen on a test file.

The same figures from the command line, e.g. ``rag-routing bench --train .../mmlu_train.json --test
.../mmlu_test.json --routers auto --embedder tfidf`` and, leaving MMLU out, ``rag-routing bench --train
.../cmmlu_train.json --train .../arc_challenge_train.json --train .../arc_easy_train.json --train
.../humaneval_train.json --test .../mmlu_test.json --routers auto --embedder tfidf``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.evaluation.benchmark import load_split, run_benchmark  # noqa: E402
from rag_routing.evaluation.report import BenchmarkReport, RouterResult  # noqa: E402

TASKS = ("mmlu", "cmmlu", "arc_challenge", "arc_easy", "humaneval")
#: RouterDC (Chen et al. 2024), Tables 1 and 3: mean gain of RouterDC over the best single model, in points.
ROUTERDC_GAIN = {"in distribution": 2.76, "leave one task out": 1.90}


def quality_at_zero(row: RouterResult) -> float:
    """Realised test quality at λ = 0 (the first point of the sweep; a fixed choice has only that point)."""
    lams, quality = row.curve["lam"], row.curve["quality"]
    return float(quality[lams.index(0.0)] if 0.0 in lams else max(quality))


def run(folder: Path, task: str, protocol: str, routers: list[str], embedder: str) -> BenchmarkReport:
    test = folder / f"{task}_test.json"
    if protocol == "in distribution":
        train: list[Path] = [folder / f"{task}_train.json"]
    else:
        train = [folder / f"{other}_train.json" for other in TASKS if other != task]
    train_set, test_set = load_split(train=train, test=test)
    return run_benchmark(train_set, test_set, routers, embedder=embedder, progress=False)


def summary(report: BenchmarkReport, routers: list[str]) -> dict[str, Any]:
    best = report.result(report.best_single)
    row: dict[str, Any] = {"best_single": report.best_single, "best_single_quality": quality_at_zero(best),
                           "fixed": quality_at_zero(report.result("fixed")),
                           "random": quality_at_zero(report.result("random"))}
    for name in routers:
        row[name] = quality_at_zero(report.result(name))
    auto = next((r for r in report.results if r.router == "auto"), None)
    if auto is not None and auto.explain:
        row["auto_chose"] = auto.explain["chosen"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--routers", default="auto")
    parser.add_argument("--embedder", default="tfidf")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--protocols", default="in distribution,leave one task out")
    parser.add_argument("--json")
    args = parser.parse_args()
    folder = Path(args.data) / "routerdc7"
    routers = [r for r in args.routers.split(",") if r]
    results: dict[str, dict[str, Any]] = {}
    for protocol in args.protocols.split(","):
        results[protocol] = {}
        for task in args.tasks.split(","):
            started = time.perf_counter()
            row = summary(run(folder, task, protocol, routers, args.embedder), routers)
            row["seconds"] = round(time.perf_counter() - started, 1)
            results[protocol][task] = row
            cells = "  ".join(f"{name} {row[name]:.4f}" for name in routers)
            print(f"{protocol:>18} {task:<13} {cells}  fixed {row['fixed']:.4f}  random {row['random']:.4f}  "
                  f"best single {row['best_single_quality']:.4f} ({row['best_single']})  "
                  f"auto chose {row.get('auto_chose', '-')}  {row['seconds']} s", flush=True)
    for protocol, rows in results.items():
        for name in routers:
            gains = [100 * (r[name] - r["best_single_quality"]) for r in rows.values()]
            floor = min(r[name] - r["fixed"] for r in rows.values())
            print(f"{protocol}: {name} mean gain over the best single model {sum(gains) / len(gains):+.2f} points "
                  f"(RouterDC {ROUTERDC_GAIN.get(protocol, float('nan')):+.2f}); worst task vs fixed {floor:+.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
