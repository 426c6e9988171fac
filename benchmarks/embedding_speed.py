"""The ONNX MiniLM embedder against sentence-transformers (torch) on the same texts: speed and agreement.

Run: ``python benchmarks/embedding_speed.py [--data ../shared/data] [--queries 200] [--batch 100]
[--mmlu-rows 2000]``.

1. **Speed**, one CPU process, each embedder warmed up, no embedding cache; the embedders are timed in
   rotation on the same texts (RouterBench test prompts), so a busy shared machine slows all of them alike:
   * per new query: ``transform([q])`` for each of ``--queries`` prompts (mean and median ms);
   * per batch: ``transform(batch)`` of ``--batch`` prompts, best of 3 (ms per text).
2. **Agreement**: cosine between the torch and ONNX vectors of every test query, and the routing decisions of
   ``knn`` and ``mf`` fitted on the torch training vectors, routing the test queries from torch vectors vs
   from ONNX vectors (λ = 0 and a cost-aware λ), on RouterBench ARC-Challenge + Winogrande (train -> test) and
   a ``--mmlu-rows`` sample of RouteLLM MMLU (50/50 split, seed 0).

Torch vectors are kept in the embedding cache (``$RAG_ROUTING_CACHE``, default ``~/.cache/rag_routing``) under
the model's name, ONNX vectors under their own key, so a second run skips the quality embedding work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag_routing.embeddings import DEFAULT_EMBEDDING_MODEL, EmbeddingCache, SentenceTransformerEmbedder  # noqa: E402
from rag_routing.evaluation.benchmark import build_router, load_split  # noqa: E402
from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.onnx_embedding import OnnxMiniLMEmbedder  # noqa: E402


def load_routerbench(root: Path) -> tuple[RoutingDataset, RoutingDataset]:
    folder = root / "routerbench"
    (a_tr, a_te), (w_tr, w_te) = [load_split(train=folder / f"{t}_train.csv", test=folder / f"{t}_test.csv")
                                  for t in ("arc_challenge", "winograde")]
    return a_tr.concat(w_tr, name="routerbench"), a_te.concat(w_te, name="routerbench")


def load_mmlu(root: Path, rows: int) -> tuple[RoutingDataset, RoutingDataset]:
    full = load_split(root / "routellm" / "mmlu" / "responses", test_size=0.5, seed=0)
    rng = np.random.default_rng(0)
    train, test = full
    pick = lambda d: d.subset(np.sort(rng.choice(len(d), min(rows // 2, len(d)), replace=False)))  # noqa: E731
    return pick(train), pick(test)


def speed(embedders: dict[str, Any], texts: list[str], batch: int) -> None:
    for emb in embedders.values():
        emb.transform(texts[:8])  # load + warm up
    single: dict[str, list[float]] = {k: [] for k in embedders}
    for text in texts:
        for name, emb in embedders.items():
            t0 = time.perf_counter()
            emb.transform([text])
            single[name].append((time.perf_counter() - t0) * 1e3)
    batched: dict[str, float] = {k: float("inf") for k in embedders}
    chunk = (texts * (batch // max(1, len(texts)) + 1))[:batch]
    for _ in range(3):
        for name, emb in embedders.items():
            t0 = time.perf_counter()
            emb.transform(chunk)
            batched[name] = min(batched[name], (time.perf_counter() - t0) * 1e3 / len(chunk))
    base = "torch (sentence-transformers)"
    print(f"\n## Speed: {len(texts)} new queries one at a time, and batches of {len(chunk)} (best of 3)")
    print(f"{'embedder':32s} {'mean ms/query':>14s} {'median':>8s} {'x faster':>9s} {'batch ms/text':>14s} "
          f"{'x faster':>9s}")
    for name in embedders:
        mean, med = statistics.fmean(single[name]), statistics.median(single[name])
        print(f"{name:32s} {mean:14.2f} {med:8.2f} {statistics.fmean(single[base]) / mean:9.2f} "
              f"{batched[name]:14.2f} {batched[base] / batched[name]:9.2f}")


def agreement(label: str, train: RoutingDataset, test: RoutingDataset, torch_emb: Any,
              onnx: dict[str, Any]) -> None:
    t_train = torch_emb.transform(train.queries)
    t_test = torch_emb.transform(test.queries)
    fitted = {}
    for name in ("knn", "mf"):
        router = build_router(name, None, 0)
        fitted[name] = router.fit(train.with_embeddings(t_train, DEFAULT_EMBEDDING_MODEL))
    cost = train.mean_cost()
    spread_q = float(np.ptp(np.nanmean(train.quality, axis=0))) or 1.0
    lam_mid = spread_q / max(float(np.ptp(cost)), 1e-12)  # a λ at which cost and quality trade off
    print(f"\n## {label}: {len(train)} train / {len(test)} test queries, {len(train.candidates)} candidates")
    print(f"{'ONNX variant':12s} {'mean cos':>9s} {'min cos':>8s} {'p1 cos':>7s} "
          + " ".join(f"{r + ' λ=' + lam:>14s}" for r in fitted for lam in ("0", "mid")))
    for variant, emb in onnx.items():
        o_test = emb.transform(test.queries)
        cos = (o_test * t_test).sum(axis=1)
        cells = []
        for router in fitted.values():
            for lam in (0.0, lam_mid):
                same = router.route_indices(t_test, lam=lam) == router.route_indices(o_test, lam=lam)
                cells.append(f"{100 * same.mean():13.2f}%")
        print(f"{variant:12s} {cos.mean():9.4f} {cos.min():8.4f} {np.percentile(cos, 1):7.4f} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--mmlu-rows", type=int, default=2000, help="0 skips MMLU")
    args = parser.parse_args()
    if not (args.data / "routerbench").is_dir():
        print(f"error: shared data not found under {args.data}; pass --data", file=sys.stderr)
        raise SystemExit(2)
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cpus={os.cpu_count()}")
    rb_train, rb_test = load_routerbench(args.data)
    texts = rb_test.queries[: args.queries]
    started = time.perf_counter()
    embedders = {"torch (sentence-transformers)": SentenceTransformerEmbedder(),
                 "onnx fp32 (default)": OnnxMiniLMEmbedder(quantize="fp32"),
                 "onnx int8": OnnxMiniLMEmbedder(quantize="int8")}
    speed(embedders, texts, args.batch)
    cache = EmbeddingCache()
    torch_cached = SentenceTransformerEmbedder(cache=cache)
    onnx = {"int8": OnnxMiniLMEmbedder(quantize="int8", cache=cache),
            "fp32": OnnxMiniLMEmbedder(quantize="fp32", cache=cache)}
    agreement("RouterBench ARC-Challenge + Winogrande", rb_train, rb_test, torch_cached, onnx)
    if args.mmlu_rows:
        m_train, m_test = load_mmlu(args.data, args.mmlu_rows)
        agreement(f"RouteLLM MMLU ({args.mmlu_rows}-row sample)", m_train, m_test, torch_cached, onnx)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
