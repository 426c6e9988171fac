"""Confounder gadgets (Shafran et al. 2025) against every learned router, before and after each defence.

Run: ``python benchmarks/attacks.py [--data ../shared/data] [--routers knn,mf,...] [--quick] [--json OUT]``.

On RouteLLM MMLU (Mixtral-8x7B vs GPT-4; a few hundred queries; TF-IDF-LSA features so nothing heavy
loads): each router is fitted on the training queries with λ calibrated so that half of them go to GPT-4.
A universal 10-token gadget is hill-climbed (black box: only ``router.score`` is queried) on 40 training
queries the router sends to Mixtral, with the 1000 most common training words as vocabulary, then appended
to held-out queries. The table shows the share of held-out queries that flip Mixtral -> GPT-4 with no
defence and behind each guard of :mod:`rag_routing.security` (the attacker is one principal sending every
attacked query), and what each guard costs honest traffic (share of clean held-out routes it changes):

* ``quota``: :class:`ExpensiveRouteQuota`, the principal's clean expensive volume + 20 % per window;
* ``alarm``: :class:`RoutingShiftAlarm` (chi-square, window 50, alpha 1e-3), downgrading while active;
* ``filter``: :class:`GadgetFilter` (bigram perplexity scan, 1 % false-positive rate), stripping the run;
* ``all``: the three together;
* ``filter/adaptive``: a second gadget optimised against the filter too (objective minus its statistic).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.decision import calibrate  # noqa: E402
from rag_routing.embeddings import TfidfFeaturizer  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.evaluation.loaders import load_routellm  # noqa: E402
from rag_routing.routers.registry import create_router  # noqa: E402
from rag_routing.security import (  # noqa: E402
    ExpensiveRouteQuota,
    GadgetFilter,
    GuardedRouter,
    RoutingShiftAlarm,
    common_tokens,
    flip_report,
    search_gadget,
)

ROUTERS = ("knn", "cluster", "sw_ranking", "elo", "mf", "classifier", "regressor")


class Split:
    """Train (routers), calibration (λ, guard references; held out from training) and test (attacked) rows,
    plus the operator's clean query log (every MMLU query but the test ones) for the filter's language model."""

    def __init__(self, data: Path, n_train: int, n_cal: int, n_test: int, seed: int):
        full = load_routellm(data / "routellm" / "mmlu" / "responses")
        rows = np.random.default_rng(seed).permutation(len(full))
        parts = np.split(rows[: n_train + n_cal + n_test], [n_train, n_train + n_cal])
        train, self.cal, self.test = (full.subset(np.sort(p)) for p in parts)
        self.featurizer = TfidfFeaturizer(n_components=128).fit(train.queries)
        self.train = train.with_embeddings(self.featurizer.transform(train.queries), self.featurizer.name)
        test_rows = set(parts[2].tolist())
        self.clean_log = [q for i, q in enumerate(full.queries) if i not in test_rows]


def defences(router: Any, cal: RoutingDataset, n_test: int, lm_filter: GadgetFilter) -> dict[str, GuardedRouter]:
    """Fresh guards (they keep per-principal state) around ``router``."""
    share = float((router.route_indices(cal) == int(np.argmax(router.mean_cost_))).mean())
    quota = int(math.ceil(share * n_test * 1.2))

    def alarm() -> RoutingShiftAlarm:
        return RoutingShiftAlarm(window=50, min_requests=20, alpha=1e-3, action="downgrade")

    built = {
        "quota": GuardedRouter(router, [ExpensiveRouteQuota(quota, 3600)]),
        "alarm": GuardedRouter(router, [alarm()]),
        "filter": GuardedRouter(router, [lm_filter]),
        "all": GuardedRouter(router, [lm_filter, alarm(), ExpensiveRouteQuota(quota, 3600)]),
    }
    for guarded in built.values():
        guarded.prepare(cal)
    return built


def attack(name: str, split: Split, vocab: list[str], lm_filter: GadgetFilter,
           args: argparse.Namespace) -> list[dict[str, Any]]:
    started = time.perf_counter()
    train, test = split.train, split.test
    router = create_router(name, featurizer=split.featurizer).fit(train)
    strong = int(np.argmax(router.mean_cost_))
    router.lam = calibrate(router.predict_quality(split.cal), router.predict_cost(split.cal), 0.5, [strong])
    cheap = [q for q, i in zip(train.queries, router.route_indices(train)) if i != strong]
    opt = [cheap[i] for i in np.random.default_rng(args.seed).permutation(len(cheap))[: args.n_opt]]
    search = dict(n_tokens=args.tokens, vocabulary=vocab, iterations=args.iterations,
                  candidates_per_step=args.candidates, seed=args.seed)
    found = search_gadget(router, opt, **search)
    rows = [flip_report(router, test.queries, found.gadget).to_dict()]
    for label, guarded in defences(router, split.cal, len(test), lm_filter).items():
        rows.append(flip_report(router, test.queries, found.gadget, defence=guarded, defence_name=label).to_dict())
    if not args.quick:
        # The adaptive attacker knows the filter: the objective pays for the filter's statistic.
        scale = max(1e-6, float(np.std(router.score(split.cal))))
        adaptive = search_gadget(router, opt, penalty=lambda texts: np.maximum(lm_filter.statistics(texts), 0.0),
                                 penalty_weight=scale / max(lm_filter.threshold_, 1.0), **search)
        rows.append(flip_report(router, test.queries, adaptive.gadget,
                                defence=GuardedRouter(router, [lm_filter]), defence_name="filter/adaptive").to_dict())
        rows[-1]["gadget"] = adaptive.gadget.text
    for row in rows:
        row.setdefault("gadget", found.gadget.text)
        row["seconds"] = round(time.perf_counter() - started, 1)
    return rows


def table(rows: list[dict[str, Any]], field: str, title: str, second: str | None = None) -> str:
    labels = list(dict.fromkeys(r["defence"] for r in rows))
    lines = [title, f"{'router':<12}" + "".join(f"{label:>17}" for label in labels)]
    for router in dict.fromkeys(r["router"] for r in rows):
        cells = {r["defence"]: r for r in rows if r["router"] == router}
        line = f"{router:<12}"
        for label in labels:
            r = cells.get(label)
            if r is None:
                line += f"{'-':>17}"
            elif second is None:
                line += f"{r[field]:>17.0%}"
            else:
                line += f"{r[field]:>9.0%} ({r[second]:>4.0%})"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-cal", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--n-opt", type=int, default=25)
    parser.add_argument("--tokens", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--candidates", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="no adaptive attack")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    split = Split(args.data, args.n_train, args.n_cal, args.n_test, args.seed)
    vocab = common_tokens(split.train.queries, 1000)
    lm_filter = GadgetFilter(false_positive_rate=0.01).fit(split.clean_log)
    rows: list[dict[str, Any]] = []
    for name in [r.strip() for r in args.routers.split(",") if r.strip()]:
        done = attack(name, split, vocab, lm_filter, args)
        rows += done
        print(f"{name}: {done[-1]['seconds']} s; gadget {done[0]['gadget']!r}", file=sys.stderr, flush=True)
    print(table(rows, "flip_rate", "flip rate Mixtral -> GPT-4 of held-out queries under attack "
                "(in brackets: share of clean routes the defence changes)", "clean_changed"))
    print()
    print(table(rows, "expensive_share_attacked", "share of the attacker's queries sent to GPT-4 "
                f"(clean traffic: {np.mean([r['expensive_share_clean'] for r in rows]):.0%} on average)"))
    print(f"\n{len(split.train)} train / {len(split.cal)} calibration / {len(split.test)} attacked MMLU queries, "
          f"TF-IDF-LSA-128 features, filter LM on {len(split.clean_log)} clean queries, "
          f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
