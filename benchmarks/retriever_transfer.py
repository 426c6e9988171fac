"""Retriever router under transfer: CISI -> MuSiQue, MuSiQue -> CISI, and 5-fold CV inside each corpus.

Issue 15's floor for the retriever stage: the routed nDCG@10 must not fall below that of the best *fixed*
retriever chosen on the training side (minus 0.005). For each corpus every query is run once through dense
(MiniLM + FAISS, embeddings cached on disk), BM25 and hybrid (RRF) over that corpus; a retriever's outcome on a
query is its nDCG@10 (retrievers are deterministic, so the routed outcome of a query is the cached outcome of
the retriever chosen for it). A :class:`~rag_routing.stages.retriever.RetrieverRouter` is fitted with
``fit_from_outcomes`` on the training queries (its default router, kept only when its own CV shows a real gain,
with the support fallback) and chooses a retriever *name* for each test query:

- transfer A -> B: fitted on all of A's queries, applied to B's queries, B's retrievers;
  fixed = the retriever with A's best mean nDCG@10, scored on B;
- CV inside A: 5 folds; per fold fitted on the other four, fixed = the training folds' best.

CISI: the 76 queries with a judged relevant document. MuSiQue: 100 multi-hop questions and 237 single-hop
sub-questions over the same 1,890 passages. Usage::

    python benchmarks/retriever_transfer.py                  # data from ../shared/data/rag
    python benchmarks/retriever_transfer.py --folds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag_routing.retrieval import (  # noqa: E402
    BM25Retriever, DenseRetriever, HybridRetriever, load_corpus, load_qrels, load_queries,
)
from rag_routing.retrieval.metrics import ndcg_at_k  # noqa: E402
from rag_routing.stages import RetrieverRouter  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rag"
NAMES = ["dense", "bm25", "hybrid"]


def load_cisi(folder: Path) -> tuple[list[str], list[dict[str, int]]]:
    qrels = {q: r for q, r in load_qrels(folder / "qrels" / "test.tsv").items() if any(v > 0 for v in r.values())}
    queries = load_queries(folder / "queries.jsonl")
    ids = sorted(qrels, key=lambda q: int(q) if q.isdigit() else q)
    return [queries[q] for q in ids], [qrels[q] for q in ids]


def load_musique(folder: Path) -> tuple[list[str], list[dict[str, int]]]:
    texts: list[str] = []
    relevant: list[dict[str, int]] = []
    for questions, qrels_file in (("questions.jsonl", "qrels.tsv"),
                                  ("single_hop_subquestions.jsonl", "single_hop_qrels.tsv")):
        queries = load_queries(folder / questions, text_field="question")
        qrels = load_qrels(folder / qrels_file)
        for q in sorted(qrels):
            texts.append(queries[q])
            relevant.append(qrels[q])
    return texts, relevant


def outcomes(folder: Path, texts: list[str], relevant: list[dict[str, int]]) -> tuple[dict[str, np.ndarray],
                                                                                        dict[str, float]]:
    """Per-query nDCG@10 of each retriever over this corpus, and its seconds per query (the option's cost)."""
    docs = load_corpus(folder / "corpus.jsonl")
    dense = DenseRetriever(name="dense", cache=True).add_documents(docs)
    bm25 = BM25Retriever(name="bm25").add_documents(docs)
    retrievers = {"dense": dense, "bm25": bm25, "hybrid": HybridRetriever([dense, bm25], name="hybrid")}
    ndcg, seconds = {}, {}
    for name, retriever in retrievers.items():
        start = time.perf_counter()
        run = [[h.id for h in hits] for hits in retriever.retrieve_batch(texts, 10)]
        seconds[name] = (time.perf_counter() - start) / len(texts)
        ndcg[name] = np.asarray(ndcg_at_k(run, relevant, 10), dtype=np.float64)
    return ndcg, seconds


def fitted_stage(texts: list[str], ndcg: dict[str, np.ndarray], seconds: dict[str, float],
                 rows: np.ndarray) -> RetrieverRouter:
    # The options' retrievers are never run here: choices are scored from the cached outcomes.
    stage = RetrieverRouter({name: BM25Retriever(name=name) for name in NAMES}, k=10)
    return stage.fit_from_outcomes([texts[i] for i in rows], {n: ndcg[n][rows] for n in NAMES}, seconds)


def routed(stage: RetrieverRouter, texts: list[str], ndcg: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    choices = [stage.choose(t).choice for t in texts]
    return np.array([ndcg[c][i] for i, c in enumerate(choices)]), choices


def best_fixed(ndcg: dict[str, np.ndarray], rows: np.ndarray) -> str:
    return max(NAMES, key=lambda n: (float(ndcg[n][rows].mean()), -NAMES.index(n)))


def transfer(src: dict[str, Any], dst: dict[str, Any]) -> dict[str, Any]:
    rows = np.arange(len(src["texts"]))
    stage = fitted_stage(src["texts"], src["ndcg"], src["seconds"], rows)
    got, choices = routed(stage, dst["texts"], dst["ndcg"])
    fixed = best_fixed(src["ndcg"], rows)
    selection = getattr(stage, "selection_", None)
    out = 0.0
    if stage.router is not None and callable(getattr(stage.router, "out_of_support", None)):
        out = float(np.mean(stage.router.out_of_support(dst["texts"])))
    return {"router": float(got.mean()), "fixed": fixed, "fixed_ndcg": float(dst["ndcg"][fixed].mean()),
            "choices": {n: choices.count(n) for n in NAMES}, "out_of_support": out,
            "selection": None if selection is None else selection.reason}


def cross_validation(corpus: dict[str, Any], folds: int, seed: int) -> dict[str, Any]:
    n = len(corpus["texts"])
    assignment = np.random.default_rng(seed).permutation(n) % folds
    got, fixed = np.zeros(n), np.zeros(n)
    kept = 0
    for f in range(folds):
        train, held = np.flatnonzero(assignment != f), np.flatnonzero(assignment == f)
        stage = fitted_stage(corpus["texts"], corpus["ndcg"], corpus["seconds"], train)
        kept += stage.router is not None
        got[held], _ = routed(stage, [corpus["texts"][i] for i in held], {k: v[held] for k, v in corpus["ndcg"].items()})
        fixed[held] = corpus["ndcg"][best_fixed(corpus["ndcg"], train)][held]
    return {"router": float(got.mean()), "fixed_ndcg": float(fixed.mean()), "folds_router_kept": kept}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.data / "cisi").is_dir() or not (args.data / "musique_100").is_dir():
        print(f"no CISI / MuSiQue data under {args.data}; pass --data", file=sys.stderr)
        return 2
    started = time.perf_counter()
    corpora: dict[str, dict[str, Any]] = {}
    for name, loader in (("cisi", load_cisi), ("musique", load_musique)):
        folder = args.data / ("cisi" if name == "cisi" else "musique_100")
        texts, relevant = loader(folder)
        ndcg, seconds = outcomes(folder, texts, relevant)
        corpora[name] = {"texts": texts, "ndcg": ndcg, "seconds": seconds}
        print(f"{name}: {len(texts)} queries; nDCG@10 " + ", ".join(f"{n} {ndcg[n].mean():.4f}" for n in NAMES),
              flush=True)
    report: dict[str, Any] = {"ndcg@10": {c: {n: float(v["ndcg"][n].mean()) for n in NAMES}
                                          for c, v in corpora.items()}}
    for src, dst in (("cisi", "musique"), ("musique", "cisi")):
        r = report[f"{src}->{dst}"] = transfer(corpora[src], corpora[dst])
        print(f"{src} -> {dst}: router {r['router']:.4f}  fixed ({r['fixed']}, chosen on {src}) "
              f"{r['fixed_ndcg']:.4f}  diff {r['router'] - r['fixed_ndcg']:+.4f}  choices {r['choices']}  "
              f"out of support {r['out_of_support']:.1%}\n    {r['selection']}", flush=True)
    for name, corpus in corpora.items():
        r = report[f"cv:{name}"] = cross_validation(corpus, args.folds, args.seed)
        print(f"{args.folds}-fold CV in {name}: router {r['router']:.4f}  fixed (training folds' best) "
              f"{r['fixed_ndcg']:.4f}  diff {r['router'] - r['fixed_ndcg']:+.4f}  router kept in "
              f"{r['folds_router_kept']}/{args.folds} folds", flush=True)
    report["elapsed_s"] = time.perf_counter() - started
    print(f"elapsed {report['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
