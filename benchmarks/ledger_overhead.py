"""What the accounting costs: one ledger record (in memory, with a budget, with SQLite) and one routing decision.

Run: ``python benchmarks/ledger_overhead.py [--number N]``. Prints microseconds per operation (best of 5
timeit repeats) and the time of ``rag_routing.decision.select`` on a 10,000 x 10 matrix. Two columns: wall
time, and this process's CPU time (the honest figure on a busy machine; SQLite's fsync waits show only in the
wall time).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import timeit
from collections.abc import Callable

import numpy as np

from rag_routing.ledger import Budget, CostLedger, SQLiteStore, count_tokens


def best_us(fn: Callable[[], object], number: int, repeat: int = 5) -> tuple[float, float]:
    """Best per-call (wall, CPU) time in microseconds over ``repeat`` runs of ``number`` calls."""
    wall = min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6
    cpu = min(timeit.repeat(fn, number=number, repeat=repeat, timer=time.process_time)) / number * 1e6
    return wall, cpu


def record_kwargs() -> dict:
    return {"input_tokens": 812, "output_tokens": 96, "cost_usd": 0.00297, "seconds": 0.84}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing run (in memory)")
    args = parser.parse_args()
    rows: list[tuple[str, tuple[float, float], str]] = []

    ledger = CostLedger()
    rows.append(("record (memory)", best_us(lambda: ledger.record("generate", "gpt-4o", "gpt-4o", **record_kwargs()),
                                            args.number), "us/call"))
    bounded = CostLedger(max_entries=1_000)  # rag-routing serve's mode: the newest entries, exact totals
    rows.append(("record (memory, max_entries=1000)", best_us(
        lambda: bounded.record("generate", "gpt-4o", "gpt-4o", **record_kwargs()), args.number), "us/call"))
    budgeted = CostLedger(budget=Budget(max_usd=1e12))
    rows.append(("record (memory + budget)", best_us(
        lambda: budgeted.record("generate", "gpt-4o", "gpt-4o", **record_kwargs()), args.number), "us/call"))
    priced = CostLedger()
    rows.append(("record_call (price + energy)", best_us(
        lambda: priced.record_call(stage="generate", model="Meta-Llama-3-8B", input_tokens=812, output_tokens=96,
                                   seconds=0.84), args.number), "us/call"))
    guarded = CostLedger(budget=Budget(max_usd=1e12))

    def guarded_call() -> None:
        with guarded.guard(stage="generate", model="gpt-4o", est_input_tokens=812, est_output_tokens=96) as call:
            call.record(usage={"input_tokens": 812, "output_tokens": 90})

    rows.append(("guard: reserve + record + commit", best_us(guarded_call, args.number // 4), "us/call"))
    count_tokens("warm up the encoding")
    prompt = "Which retriever should answer this question about the 2019 annual report? " * 4
    rows.append(("count_tokens (~60 tokens)", best_us(lambda: count_tokens(prompt), args.number), "us/call"))

    with tempfile.TemporaryDirectory() as folder:
        for sync in ("FULL", "NORMAL"):
            store = SQLiteStore(os.path.join(folder, f"ledger-{sync}.db"), synchronous=sync)
            stored = CostLedger(store=store)
            rows.append((f"record (SQLite, synchronous={sync})", best_us(
                lambda s=stored: s.record("generate", "gpt-4o", "gpt-4o", **record_kwargs()),
                max(50, args.number // 100), repeat=3), "us/call"))
            store.close()

    try:
        from rag_routing.decision import select
    except ImportError as exc:  # pragma: no cover - decision.py is written alongside
        rows.append((f"decision.select unavailable: {exc}", (float("nan"), float("nan")), ""))
    else:
        rng = np.random.default_rng(0)
        quality = rng.random((10_000, 10))
        cost = rng.random((10_000, 10)) * 0.01
        wall, cpu = best_us(lambda: select(quality, cost, lam=10.0, budget=0.008, fallback=0), 10)
        rows.append(("decision.select 10,000 x 10 (lam, budget)", (wall / 1e3, cpu / 1e3), "ms/matrix"))
        rows.append(("  per query", (wall / 10_000, cpu / 10_000), "us/query"))

    width = max(len(name) for name, _, _ in rows)
    print(f"{'operation'.ljust(width)}  {'wall':>10}  {'cpu':>10}  unit")
    print("-" * (width + 34))
    for name, (wall, cpu), unit in rows:
        print(f"{name.ljust(width)}  {wall:>10.2f}  {cpu:>10.2f}  {unit}")

if __name__ == "__main__":
    main()
