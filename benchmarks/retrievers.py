"""Dense (MiniLM + FAISS) vs BM25 vs hybrid (RRF) on CISI and MuSiQue: quality, build time and latency.

    python benchmarks/retrievers.py                   # data from ../shared/data (relative to the repository)
    python benchmarks/retrievers.py --data /path/to/data --skip-dense
    python benchmarks/retrievers.py --bm25s           # also time bm25s (pip install bm25s) on the same tokens

CISI (BEIR format): the 76 queries with at least one relevant document; nDCG@10, recall@100, MRR.
MuSiQue (100 multi-hop questions, 237 single-hop sub-questions, one 1,890-passage corpus): recall@5/10.
Timings are wall-clock on this machine; the corpus is embedded without the on-disk cache unless --cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rag_routing.retrieval import (  # noqa: E402
    BM25Retriever,
    DenseRetriever,
    HybridRetriever,
    Retriever,
    WordTokenizer,
    evaluate,
    load_corpus,
    load_qrels,
    load_queries,
)

DEFAULT_DATA = Path(os.environ.get("RAG_ROUTING_SHARED_DATA", REPO.parent / "shared" / "data"))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn``: CPU time (all threads) is the figure to trust on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def latency(retriever: Retriever, queries: Sequence[str], k: int = 10) -> dict[str, float]:
    """p50 of single-query calls (wall and CPU) and queries/s of one batch call (k=100)."""
    retriever.retrieve(queries[0], k)  # warm-up
    single = [cpu_timed(lambda q=q: retriever.retrieve(q, k)) for q in queries]
    batch, _ = cpu_timed(lambda: retriever.retrieve_batch(list(queries), 100))
    return {"p50_ms": 1e3 * statistics.median(s[0] for s in single),
            "p50_cpu_ms": 1e3 * statistics.median(s[1] for s in single), "qps_batch": len(queries) / batch}


def build(args: argparse.Namespace, docs: list,
          with_dense: bool) -> tuple[dict[str, Retriever], dict[str, tuple[float, float]]]:
    """The retrievers and their (wall, CPU) build seconds."""
    retrievers: dict[str, Retriever] = {}
    seconds: dict[str, tuple[float, float]] = {}
    if with_dense:
        dense = DenseRetriever(cache=True if args.cache else None)
        seconds["model load"] = cpu_timed(lambda: dense.embed(["warm up"]))
        seconds["dense"] = cpu_timed(lambda: dense.add_documents(docs))
        retrievers["dense"] = dense
    import scipy.sparse  # noqa: F401  (imported before timing: a one-off cost of the first index)

    bm25 = BM25Retriever()
    seconds["bm25"] = cpu_timed(lambda: bm25.add_documents(docs).retrieve("warm up index", 1))
    retrievers["bm25"] = bm25
    if with_dense:
        retrievers["hybrid"] = HybridRetriever([retrievers["dense"], bm25])
        seconds["hybrid"] = (seconds["dense"][0] + seconds["bm25"][0], seconds["dense"][1] + seconds["bm25"][1])
    return retrievers, seconds


def run_cisi(args: argparse.Namespace) -> None:
    folder = args.data / "rag" / "cisi"
    docs = load_corpus(folder / "corpus.jsonl")
    queries = load_queries(folder / "queries.jsonl")
    qrels = {q: rel for q, rel in load_qrels(folder / "qrels" / "test.tsv").items() if any(rel.values())}
    ids = [q for q in queries if q in qrels]
    texts = [queries[q] for q in ids]
    print(f"\n== CISI: {len(docs)} documents, {len(ids)} judged queries (of {len(queries)}) ==")
    retrievers, build_s = build(args, docs, not args.skip_dense)
    if "model load" in build_s:
        print(f"MiniLM load: {build_s['model load'][0]:.1f} s wall, {build_s['model load'][1]:.1f} s CPU")
    print(f"{'retriever':10s} {'nDCG@10':>8s} {'R@100':>7s} {'MRR':>6s} {'build s':>8s} {'CPU s':>7s} "
          f"{'p50 ms':>8s} {'CPU ms':>7s} {'batch q/s':>10s}")
    for name, r in retrievers.items():
        hits = r.retrieve_batch(texts, 100)
        m = evaluate({q: [h.id for h in h_] for q, h_ in zip(ids, hits)}, qrels)
        lat = latency(r, texts)
        print(f"{name:10s} {m['ndcg@10']:8.4f} {m['recall@100']:7.4f} {m['mrr']:6.3f} {build_s[name][0]:8.2f} "
              f"{build_s[name][1]:7.2f} {lat['p50_ms']:8.2f} {lat['p50_cpu_ms']:7.2f} {lat['qps_batch']:10.1f}")
    if args.bm25s:
        compare_bm25s(docs, ids, texts, qrels)


def run_musique(args: argparse.Namespace) -> None:
    folder = args.data / "rag" / "musique_100"
    docs = load_corpus(folder / "corpus.jsonl")
    sets = {
        "multi-hop": (load_queries(folder / "questions.jsonl", "question"), load_qrels(folder / "qrels.tsv")),
        "single-hop": (load_queries(folder / "single_hop_subquestions.jsonl", "question"),
                       load_qrels(folder / "single_hop_qrels.tsv")),
    }
    print(f"\n== MuSiQue: {len(docs)} passages; recall@5 / recall@10 ==")
    retrievers, build_s = build(args, docs, not args.skip_dense)
    print(f"{'retriever':10s} " + " ".join(f"{name + ' R@' + str(k):>14s}" for name in sets for k in (5, 10))
          + f" {'build s':>8s} {'CPU s':>7s}")
    for name, r in retrievers.items():
        cells = []
        for queries, qrels in sets.values():
            ids = [q for q in queries if q in qrels]
            hits = r.retrieve_batch([queries[q] for q in ids], 10)
            m = evaluate({q: [h.id for h in h_] for q, h_ in zip(ids, hits)}, qrels, ndcg_k=(), recall_k=(5, 10))
            cells += [m["recall@5"], m["recall@10"]]
        print(f"{name:10s} " + " ".join(f"{c:14.4f}" for c in cells)
              + f" {build_s[name][0]:8.2f} {build_s[name][1]:7.2f}")


def best_of(fn: Callable[[], Any], repeat: int = 5) -> float:
    return min(timed(fn)[1] for _ in range(repeat))


def compare_bm25s(docs: list, ids: list[str], texts: list[str], qrels: dict) -> None:
    """Our sparse BM25 vs rank-bm25 vs bm25s on identical tokens (best of 5 runs for build and batch)."""
    try:
        import bm25s  # type: ignore[import-not-found]
    except ImportError:
        print("\nbm25s is not installed: pip install bm25s to compare")
        return
    from rag_routing.retrieval.bm25_scoring import SparseBM25, select_top_k

    tok = WordTokenizer()
    doc_tokens = [tok(d.content) for d in docs]
    query_tokens = [tok(t) for t in texts]
    print("\n== BM25 backends on CISI (same tokens; build and 76-query batch best of 5; p50 per query, k=10) ==")
    print(f"{'backend':24s} {'build ms':>9s} {'batch ms':>9s} {'p50 ms':>8s} {'nDCG@10':>8s} {'R@100':>7s}")

    def report(name: str, make: Callable[[], Any], search: Callable[[Any, list, int], list]) -> None:
        index = make()
        build_ms = 1e3 * best_of(make)
        batch_ms = 1e3 * best_of(lambda: search(index, query_tokens, 100))
        p50 = 1e3 * statistics.median(timed(lambda q=q: search(index, [q], 10))[1] for q in query_tokens)
        rows = search(index, query_tokens, 100)
        m = evaluate({q: [docs[int(i)].id for i in r] for q, r in zip(ids, rows)}, qrels)
        print(f"{name:24s} {build_ms:9.1f} {batch_ms:9.2f} {p50:8.3f} {m['ndcg@10']:8.4f} {m['recall@100']:7.4f}")

    report("sparse (ours, default)", lambda: SparseBM25(doc_tokens),
           lambda idx, qs, k: [rows for rows, _ in idx.top_k(qs, k)])

    def rank_bm25_search(idx: Any, qs: list, k: int) -> list:
        out = []
        for q in qs:
            scores = idx.get_scores(q)
            matched = [i for i, f in enumerate(idx.doc_freqs) if not set(q).isdisjoint(f)]
            out.append(select_top_k(matched, scores[matched], k)[0])
        return out

    import rank_bm25

    report("rank-bm25 (reference)", lambda: rank_bm25.BM25Okapi(doc_tokens), rank_bm25_search)
    for method in ("robertson", "lucene"):
        def make(m: str = method) -> Any:
            index = bm25s.BM25(method=m, k1=1.5, b=0.75)
            index.index(doc_tokens, show_progress=False)
            return index

        report(f"bm25s ({method})", make,
               lambda idx, qs, k: list(idx.retrieve(qs, k=k, show_progress=False, n_threads=0)[0]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"shared data folder ({DEFAULT_DATA})")
    parser.add_argument("--skip-dense", action="store_true", help="BM25 only (no torch)")
    parser.add_argument("--bm25s", action="store_true", help="compare BM25 backends, bm25s included")
    parser.add_argument("--cache", action="store_true", help="keep corpus embeddings in the on-disk cache")
    parser.add_argument("--only", choices=["cisi", "musique"], help="run one collection")
    args = parser.parse_args(argv)
    if not (args.data / "rag" / "cisi").is_dir() or not (args.data / "rag" / "musique_100").is_dir():
        print(f"shared data not found under {args.data} (expected rag/cisi and rag/musique_100); "
              "pass --data /path/to/shared/data or set RAG_ROUTING_SHARED_DATA", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.only in (None, "cisi"):
        run_cisi(args)
    if args.only in (None, "musique"):
        run_musique(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
