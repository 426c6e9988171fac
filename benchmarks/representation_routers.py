"""Rule, semantic, encoder and contrastive routers on the shared benchmark data (GraphRouter: benchmarks/graph_router.py).

Run: ``python benchmarks/representation_routers.py [--data ../shared/data] [--only routerbench|routerdc7]
[--embedder minilm|tfidf]``.

* **RouterBench** ARC-Challenge + Winogrande, train -> test (11 candidates, real $ costs): AIQ, max quality and
  fit seconds of ``rules`` (one plain rule per task, ``metadata.eval_name == task`` -> the candidate with the best
  training accuracy on that task: the hand-written table an engineer would write) and ``semantic`` (routes built
  from the training outcomes; dense + BM25, thresholds fitted on held-out training queries; ``similarity`` and
  ``classifier`` scorers), next to the baselines.
* **RouterDC7**, in distribution (train -> test per task, as RouterDC reports): the best quality a router reaches
  beside the best single model and the oracle. Files carry no cost: priced per token (see
  ``rag_routing.evaluation.token_costs``).

Torch runs on one thread (``torch.set_num_threads(1)``): the timings are those of a busy 2-core machine. MiniLM
vectors come from the embedding cache (``~/.cache/rag_routing/embeddings.sqlite``) when present.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.evaluation.benchmark import load_split, run_benchmark  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.routers.contrastive import ContrastiveRouter  # noqa: E402
from rag_routing.routers.encoder import EncoderClassifierRouter  # noqa: E402
from rag_routing.routers.rules import ConditionalRouter  # noqa: E402
from rag_routing.routers.semantic import SemanticRouter  # noqa: E402

ROUTERDC_TASKS = ("mmlu", "cmmlu", "arc_challenge", "arc_easy", "humaneval")


def _one_thread() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def per_task_rules(train: RoutingDataset, key: str = "eval_name") -> list[dict]:
    """One rule per task: the candidate with the best mean training quality there (ties: the cheaper)."""
    rules = []
    tasks = sorted({str(m.get(key)) for m in train.metadata})
    for task in tasks:
        rows = np.array([str(m.get(key)) == task for m in train.metadata])
        q = np.nanmean(train.quality[rows], axis=0)
        c = np.nanmean(train.cost[rows], axis=0)
        best = np.flatnonzero(q >= np.nanmax(q) - 1e-12)
        rules.append({"field": f"metadata.{key}", "op": "metadata_eq", "value": task,
                      "route": train.candidates[int(best[np.argmin(c[best])])]})
    return rules


def routers_for(train: RoutingDataset, embedder: str, with_rules: bool) -> list:
    routers = [SemanticRouter(featurizer=embedder), SemanticRouter(featurizer=embedder, scorer="classifier")]
    routers[1].name = "semantic-clf"  # label in the table only (an instance attribute, the class keeps its name)
    if with_rules:
        routers.insert(0, ConditionalRouter(rules=per_task_rules(train)))
    return routers


def routerbench(root: Path, embedder: str) -> None:
    folder = root / "routerbench"
    parts = [load_split(train=folder / f"{t}_train.csv", test=folder / f"{t}_test.csv")
             for t in ("arc_challenge", "winograde")]
    train = parts[0][0].concat(parts[1][0], name="routerbench:arc+winogrande")
    test = parts[0][1].concat(parts[1][1], name="routerbench:arc+winogrande")
    start = time.perf_counter()
    report = run_benchmark(train, test, routers_for(train, embedder, True), embedder=embedder, progress=False)
    print(f"\n== RouterBench ARC-Challenge + Winogrande, train -> test ({len(train)} / {len(test)}; "
          f"{time.perf_counter() - start:.0f} s in all)")
    print(report.table())


def routerdc7(root: Path, embedder: str) -> None:
    print("\n== RouterDC7 in distribution (train -> test per task): max quality; fit seconds")
    print(f"  {'task':<14} {'semantic':>9} {'sem-clf':>9} {'best single':>12} {'oracle':>7} {'fit s':>11}")
    for task in ROUTERDC_TASKS:
        train, test = load_split(train=root / "routerdc7" / f"{task}_train.json",
                                 test=root / "routerdc7" / f"{task}_test.json")
        report = run_benchmark(train, test, routers_for(train, embedder, False), embedder=embedder, progress=False)
        by = {r.router: r for r in report.results}
        single = max((r for r in report.results if r.kind == "single"), key=lambda r: r.max_quality)
        fit = "/".join(f"{by[n].fit_seconds:.1f}" for n in ("semantic", "semantic-clf"))
        print(f"  {task:<14} {by['semantic'].max_quality:>9.4f} {by['semantic-clf'].max_quality:>9.4f} "
              f"{single.max_quality:>12.4f} {by['oracle'].max_quality:>7.4f} {fit:>11}")


#: CPU-sized fine-tuning: a random subset of training queries, short inputs, two epochs, early stopping.
FINE_TUNE = {"max_train": 600, "epochs": 2, "max_seq_length": 64, "batch_size": 32}


def _rb_split(root: Path) -> tuple[RoutingDataset, RoutingDataset]:
    folder = root / "routerbench"
    parts = [load_split(train=folder / f"{t}_train.csv", test=folder / f"{t}_test.csv")
             for t in ("arc_challenge", "winograde")]
    return (parts[0][0].concat(parts[1][0], name="routerbench:arc+winogrande"),
            parts[0][1].concat(parts[1][1], name="routerbench:arc+winogrande"))


def encoder_routerbench(root: Path, names: tuple[str, ...]) -> None:
    train, test = _rb_split(root)
    known = {"encoder": lambda: EncoderClassifierRouter(head="regression", **FINE_TUNE),
             "contrastive": lambda: ContrastiveRouter(**FINE_TUNE)}
    routers = [known[n]() for n in names]
    start = time.perf_counter()
    report = run_benchmark(train, test, routers, progress=False)
    print(f"\n== RouterBench, fine-tuned MiniLM ({FINE_TUNE}; {time.perf_counter() - start:.0f} s in all)")
    print(report.table())


def contrastive_routerdc7(root: Path, tasks: tuple[str, ...]) -> None:
    print(f"\n== RouterDC7 in distribution, ContrastiveRouter (RouterDC), {FINE_TUNE}: test quality at λ = 0")
    print(f"  {'task':<14} {'n train/test':>13} {'routerdc':>9} {'best single':>12} {'oracle':>7} {'fit s':>7}")
    for task in tasks:
        train, test = load_split(train=root / "routerdc7" / f"{task}_train.json",
                                 test=root / "routerdc7" / f"{task}_test.json")
        router = ContrastiveRouter(**FINE_TUNE)
        start = time.perf_counter()
        router.fit(train)
        fit_s = time.perf_counter() - start
        chosen = router.route_indices(test.queries, lam=0.0)
        q = np.nan_to_num(test.quality)
        mean = q.mean(axis=0)
        print(f"  {task:<14} {len(train):>6}/{len(test):<6} {q[np.arange(len(test)), chosen].mean():>9.4f} "
              f"{mean.max():>12.4f} {q.max(axis=1).mean():>7.4f} {fit_s:>7.0f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--only", choices=("routerbench", "routerdc7", "encoder", "routerdc"), action="append",
                        help="sections (repeatable); default routerbench and routerdc7 (no fine-tuning)")
    parser.add_argument("--tasks", default=",".join(ROUTERDC_TASKS), help="RouterDC7 tasks of --only routerdc")
    parser.add_argument("--fine-tuned", default="encoder,contrastive", help="routers of --only encoder")
    parser.add_argument("--max-train", type=int, default=FINE_TUNE["max_train"], help="queries fine-tuned on")
    parser.add_argument("--epochs", type=int, default=FINE_TUNE["epochs"])
    args = parser.parse_args(argv)
    _one_thread()
    FINE_TUNE.update(max_train=args.max_train, epochs=args.epochs)
    sections = args.only or ["routerbench", "routerdc7"]
    if "routerbench" in sections:
        routerbench(args.data, args.embedder)
    if "routerdc7" in sections:
        routerdc7(args.data, args.embedder)
    if "routerdc" in sections:
        contrastive_routerdc7(args.data, tuple(t for t in args.tasks.split(",") if t))
    if "encoder" in sections:
        encoder_routerbench(args.data, tuple(n for n in args.fine_tuned.split(",") if n))


if __name__ == "__main__":
    main()
