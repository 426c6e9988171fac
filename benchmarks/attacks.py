"""Confounder gadgets (Shafran et al. 2025) against every learned router, before and after each defence.

Run: ``python benchmarks/attacks.py [--data ../shared/data] [--routers knn,mf,...] [--keys 10,100]
[--poison-seeds 5] [--quick] [--json OUT]``.

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

Many keys (``--keys 1,10,100``): the attacked queries are sent round-robin by that many fresh keys. Every
defence then runs behind a :class:`NewKeyPool` (keys without standing act as one principal): honest users
(20 keys) built standing before the attack by sending the calibration queries over two simulated days, and the
clean traffic is theirs. ``all/per-key`` is the same defence without the pool (the issue's finding: per-key
limits do nothing against many keys). ``new honest`` is the share of clean routes changed for honest keys that
are themselves new during the attack (they share the pool's limits: the price of the damping).

Poisoning (``--poison-seeds 5``): :func:`feedback_campaign` on an epsilon-greedy bandit, 2,000 poisoned updates
from 1 / 10 / 100 keys after two days of honest feedback, per-key rate limit vs. the pool.
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
    NewKeyPool,
    RoutingShiftAlarm,
    common_tokens,
    flip_report,
    search_gadget,
)
from rag_routing.security.poisoning import DAY, SimulatedClock, feedback_campaign  # noqa: E402

HONEST_KEYS = [f"user-{i}" for i in range(20)]

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


def defences(router: Any, cal: RoutingDataset, n_test: int, lm_filter: GadgetFilter,
             pooled: bool = False) -> dict[str, GuardedRouter]:
    """Fresh guards (they keep per-principal state) around ``router``.

    ``pooled``: each defence sits behind a :class:`NewKeyPool` on a simulated clock, and honest users build
    standing first (the calibration queries, round-robin over :data:`HONEST_KEYS`, over two days); the clock
    then stands at the attack's start, past every quota window of the warm-up."""
    share = float((router.route_indices(cal) == int(np.argmax(router.mean_cost_))).mean())
    quota = int(math.ceil(share * n_test * 1.2))
    clock = SimulatedClock()

    def alarm() -> RoutingShiftAlarm:
        return RoutingShiftAlarm(window=50, min_requests=20, alpha=1e-3, action="downgrade")

    def guarded(guards: list[Any]) -> GuardedRouter:
        pool = NewKeyPool(min_requests=5, min_age_seconds=3600, clock=clock) if pooled else None
        return GuardedRouter(router, guards, identities=pool)

    built = {
        "quota": guarded([ExpensiveRouteQuota(quota, 3600, clock=clock)]),
        "alarm": guarded([alarm()]),
        "filter": guarded([lm_filter]),
        "all": guarded([lm_filter, alarm(), ExpensiveRouteQuota(quota, 3600, clock=clock)]),
    }
    for defended in built.values():
        defended.prepare(cal)
    if pooled:
        for defended in built.values():
            for i, query in enumerate(cal.queries):
                clock.now = i * 2 * DAY / len(cal.queries)
                defended.route_one(query, principal=HONEST_KEYS[i % len(HONEST_KEYS)])
        clock.now = 3 * DAY
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
    for n_keys in args.keys:
        keys = [f"attacker-{i}" for i in range(n_keys)]
        for label, guarded in defences(router, split.cal, len(test), lm_filter, pooled=True).items():
            row = flip_report(router, test.queries, found.gadget, defence=guarded, defence_name=f"{label}",
                              attacker=keys, benign=HONEST_KEYS).to_dict()
            if label == "all":
                newcomers = [f"newcomer-{i}" for i in range(len(test))]
                reference = router.route_indices(test.queries)
                routed = [guarded.route_one(q, principal=k).index for q, k in zip(test.queries, newcomers)]
                row["new_honest_changed"] = float((np.array(routed) != reference).mean())
            rows.append({**row, "keys": n_keys, "pooled": True})
        per_key = defences(router, split.cal, len(test), lm_filter)["all"]
        rows.append({**flip_report(router, test.queries, found.gadget, defence=per_key, defence_name="all/per-key",
                                   attacker=keys).to_dict(), "keys": n_keys, "pooled": False})
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


def many_keys_table(rows: list[dict[str, Any]]) -> str:
    """Flip rate (clean routes changed for established honest keys; for new honest keys) per number of keys."""
    labels = list(dict.fromkeys(r["defence"] for r in rows))
    lines = ["many keys: flip rate under attack (clean routes changed: established honest keys / new honest keys)",
             f"{'router':<12}{'keys':>6}" + "".join(f"{label:>20}" for label in labels)]
    for router in dict.fromkeys(r["router"] for r in rows):
        for n_keys in dict.fromkeys(r["keys"] for r in rows):
            cells = {r["defence"]: r for r in rows if r["router"] == router and r["keys"] == n_keys}
            line = f"{router:<12}{n_keys:>6}"
            for label in labels:
                r = cells.get(label)
                extra = f"/{r['new_honest_changed']:.0%}" if r is not None and "new_honest_changed" in r else ""
                line += f"{'-':>20}" if r is None else f"{r['flip_rate']:>8.0%} ({r['clean_changed']:.0%}{extra})".rjust(20)
            lines.append(line)
    return "\n".join(lines)


def poisoning(seeds: int) -> tuple[str, list[dict[str, Any]]]:
    """Feedback campaigns from 1 / 10 / 100 keys, per-key rate limit vs. the pool, over ``seeds`` seeds."""
    reports = []
    for n_keys in (1, 10, 100):
        for pooled in (False, True):
            pool = (lambda clock: NewKeyPool(min_requests=10, min_age_seconds=3600, clock=clock)) if pooled else None
            reports += [feedback_campaign(seed=seed, n_keys=n_keys, identities=pool).to_dict() for seed in range(seeds)]
    lines = [f"feedback poisoning (2,000 poisoned updates in one hour after two days of honest feedback; {seeds} seeds)",
             f"{'keys':>5} {'defence':<14}{'flipped':>9}{'poison rejected':>17}{'honest rejected (day 2)':>25}"]
    for n_keys in (1, 10, 100):
        for pooled in (False, True):
            rs = [r for r in reports if r["n_keys"] == n_keys and r["defended"] == pooled]
            lines.append(f"{n_keys:>5} {'pool' if pooled else 'per-key only':<14}"
                         f"{sum(r['flipped'] for r in rs):>5} / {len(rs)}"
                         f"{np.mean([r['poison_rejected'] / r['poison_sent'] for r in rs]):>17.1%}"
                         f"{np.mean([r['honest_rejected_day2'] / r['honest_sent_day2'] for r in rs]):>25.1%}")
    return "\n".join(lines), reports


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
    parser.add_argument("--keys", default="10,100", help="attacker key counts for the many-keys rows ('' = none)")
    parser.add_argument("--poison-seeds", type=int, default=5, help="seeds of the feedback-poisoning runs (0 = skip)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    args.keys = [int(k) for k in args.keys.split(",") if k.strip()]
    if any(k < 1 for k in args.keys) or args.poison_seeds < 0:
        parser.error("--keys takes positive integers and --poison-seeds a count >= 0")
    started = time.perf_counter()
    split = Split(args.data, args.n_train, args.n_cal, args.n_test, args.seed)
    vocab = common_tokens(split.train.queries, 1000)
    lm_filter = GadgetFilter(false_positive_rate=0.01).fit(split.clean_log)
    rows: list[dict[str, Any]] = []
    for name in [r.strip() for r in args.routers.split(",") if r.strip()]:
        done = attack(name, split, vocab, lm_filter, args)
        rows += done
        print(f"{name}: {done[-1]['seconds']} s; gadget {done[0]['gadget']!r}", file=sys.stderr, flush=True)
    one_key = [r for r in rows if "keys" not in r]
    print(table(one_key, "flip_rate", "flip rate Mixtral -> GPT-4 of held-out queries under attack "
                "(in brackets: share of clean routes the defence changes)", "clean_changed"))
    print()
    print(table(one_key, "expensive_share_attacked", "share of the attacker's queries sent to GPT-4 "
                f"(clean traffic: {np.mean([r['expensive_share_clean'] for r in one_key]):.0%} on average)"))
    if args.keys:
        print()
        print(many_keys_table([r for r in rows if "keys" in r]))
    if args.poison_seeds:
        text, reports = poisoning(args.poison_seeds)
        print()
        print(text)
        rows += [{"poisoning": True, **r} for r in reports]
    print(f"\n{len(split.train)} train / {len(split.cal)} calibration / {len(split.test)} attacked MMLU queries, "
          f"TF-IDF-LSA-128 features, filter LM on {len(split.clean_log)} clean queries, "
          f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
