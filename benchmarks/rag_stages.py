"""Stage routers measured on real data: MuSiQue (retrieval strategy) and CISI (retriever choice).

MuSiQue (``../shared/data/rag/musique_100``): 237 single-hop sub-questions + 100 multi-hop questions over one
corpus of 1,890 passages. Every question is answered with each retrieval strategy — ``none`` (no retrieval),
``single`` (one BM25 retrieval) and ``multi`` (IRCoT-like iterative retrieval) — by the local
SmolLM2-135M-Instruct (greedy, short answers). Reported per strategy: answer EM / F1 / Acc (SQuAD
normalisation, max over answer + aliases; Acc = gold answer contained in the prediction, Adaptive-RAG's
accuracy), retrieval recall against the qrels (over every retrieved passage), and the ledger's cost: LLM calls,
tokens, seconds, and US $ if the same tokens were billed at a stated hosted price (``--price-as``, default
gpt-4o-mini; the local model itself costs $0). *Routed* = Adaptive-RAG's complexity classifier trained on the
silver labels (simplest strategy that answered right; unanswered -> the dataset's nature) of the training
folds and applied to the held-out fold (k-fold cross-validation: no question is routed by a classifier that saw
it). Greedy decoding makes a strategy's outcome a pure function of the question, so the routed outcome of a
test question is its cached outcome under the chosen strategy; the routing's own cost is added.

CISI (``../shared/data/rag/cisi``): nDCG@10 of dense (MiniLM + FAISS), BM25, hybrid (RRF) and the
RetrieverRouter (direct classifier over MiniLM query embeddings, label = the retriever with the best nDCG@10,
ties to the faster one), k-fold cross-validated over the 76 judged queries; the routed run goes through the
real RetrieverRouter stage.

Outcomes are cached per question and strategy in ``~/.cache/rag_routing/rag_bench/`` (``--cache-dir``), so
reruns only pay for what is new. Usage::

    python benchmarks/rag_stages.py                # everything (hours on 2 busy CPU cores the first time)
    python benchmarks/rag_stages.py --limit 60     # a stratified sample of 60 MuSiQue questions
    python benchmarks/rag_stages.py --skip-musique # CISI only (about a minute)
"""

from __future__ import annotations

import argparse
import hashlib
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

from rag_routing.ledger import CostLedger, PriceTable, ledger_scope  # noqa: E402
from rag_routing.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, load_corpus, load_qrels  # noqa: E402
from rag_routing.retrieval.metrics import ndcg_at_k, recall_at_k  # noqa: E402
from rag_routing.stages import (  # noqa: E402
    ContextRouter, RetrievalStrategyRouter, RetrieverRouter, RoutedRAG, score_answer,
)
from rag_routing.stages.complexity import STRATEGIES, ComplexityClassifierRouter, complexity_dataset  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rag"
CACHE_VERSION = 1


# ---------------------------------------------------------------------------------------------------- MuSiQue
def load_musique(folder: Path, limit: int | None, seed: int) -> list[dict[str, Any]]:
    """Single-hop and multi-hop questions as ``{id, question, answers, gold, kind}``; a stratified sample
    when ``limit`` is set (same seed, same sample)."""
    def read(name: str) -> list[dict[str, Any]]:
        with open(folder / name, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    single = [{"id": r["_id"], "question": r["question"], "answers": [r["answer"], *r.get("answer_aliases", [])],
               "gold": list(r["gold_doc_ids"]), "kind": "single-hop"} for r in read("single_hop_subquestions.jsonl")]
    multi = [{"id": r["_id"], "question": r["question"], "answers": [r["answer"], *r.get("answer_aliases", [])],
              "gold": list(r["gold_doc_ids"]), "kind": "multi-hop"} for r in read("questions.jsonl")]
    rng = np.random.default_rng(seed)
    single = [single[i] for i in rng.permutation(len(single))]
    multi = [multi[i] for i in rng.permutation(len(multi))]
    # Interleaved in proportion (single, single, multi, ...), so any prefix is a stratified sample.
    merged = sorted([(i / len(single), 0, q) for i, q in enumerate(single)] +
                    [(i / len(multi), 1, q) for i, q in enumerate(multi)], key=lambda t: (t[0], t[1]))
    items = [q for _, _, q in merged]
    return items[:limit] if limit is not None else items


class OutcomeCache:
    """Per question and strategy outcomes in one JSON file, shared safely by several worker processes
    (``--shard``): every save merges with what is on disk, under an exclusive file lock."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = {}
        self.refresh()

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            print(f"warning: unreadable cache {self.path}; ignoring it", file=sys.stderr)
            return {}

    def refresh(self) -> None:
        """Pick up what other workers saved."""
        self.data = {**self._read(), **self.data}

    def get(self, qid: str, strategy: str) -> dict[str, Any] | None:
        return self.data.get(f"{qid}|{strategy}")

    def put(self, qid: str, strategy: str, record: dict[str, Any]) -> None:
        self.data[f"{qid}|{strategy}"] = record

    def save(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.data = {**self._read(), **self.data}
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.data), encoding="utf-8")
            os.replace(tmp, self.path)


def strategy_pipeline(retriever: Any, llm: Any, strategy: str, args: argparse.Namespace) -> RoutedRAG:
    """One fixed strategy; chunks context without Self-Route, so only the strategy differs."""
    stage = RetrievalStrategyRouter(retriever, llm, k=args.k, max_steps=args.max_steps, default=strategy,
                                    thought_tokens=args.thought_tokens)
    context = ContextRouter(max_chunks=args.k * args.max_steps, max_chars=args.max_context_chars, self_route=False)
    from rag_routing.stages import GeneratorRouter

    return RoutedRAG(retrieval_strategy=stage, context=context,
                     generator=GeneratorRouter({"smollm2-135m": llm}, max_new_tokens=args.max_new_tokens))


def measure(rag: RoutedRAG, item: dict[str, Any]) -> dict[str, Any]:
    ledger = CostLedger()
    with ledger_scope(ledger):
        state = rag.invoke(item["question"])
    totals = ledger.totals()
    retrieved = state.document_ids
    gen = ledger.breakdown("stage").get("generation", {})
    return {"answer": state.answer, **score_answer(state.answer, item["answers"]),
            "recall": len(set(retrieved) & set(item["gold"])) / len(item["gold"]), "n_docs": len(retrieved),
            "llm_calls": gen.get("calls", 0), "input_tokens": totals["input_tokens"],
            "output_tokens": totals["output_tokens"], "seconds": totals["seconds"]}


def run_outcomes(items: list[dict[str, Any]], args: argparse.Namespace, cache: OutcomeCache) -> None:
    shard, n_shards = args.shard
    mine = [it for i, it in enumerate(items) if i % n_shards == shard]
    missing = [(it, s) for it in mine for s in STRATEGIES if cache.get(it["id"], s) is None]
    print(f"MuSiQue: {len(items)} questions, {len(missing)} (question, strategy) outcomes to compute "
          f"({len(items) * 3 - len(missing)} cached)", flush=True)
    if not missing:
        return
    from rag_routing.llms import LocalLLM

    llm = LocalLLM(max_new_tokens=args.max_new_tokens)
    retriever = BM25Retriever(name="bm25").add_documents(load_corpus(args.data / "musique_100" / "corpus.jsonl"))
    pipelines = {s: strategy_pipeline(retriever, llm, s, args) for s in STRATEGIES}
    started = time.perf_counter()
    for done, (item, strategy) in enumerate(missing, 1):
        if done % 3 == 1:
            cache.refresh()  # another worker may have done it meanwhile
        if cache.get(item["id"], strategy) is None:
            cache.put(item["id"], strategy, measure(pipelines[strategy], item))
        if done % 3 == 0 or done == len(missing):
            cache.save()
            rate = (time.perf_counter() - started) / done
            print(f"  {done}/{len(missing)} outcomes, {rate:.1f}s each, ~{rate * (len(missing) - done) / 60:.0f} min "
                  "left", flush=True)


def price(record: dict[str, Any], table: PriceTable, model: str) -> float:
    return table.get(model).cost(record["input_tokens"], record["output_tokens"])


def label_outcomes(items: list[dict[str, Any]], cache: OutcomeCache, label: str) -> dict[str, list[float]]:
    """Per strategy, 1.0 where that strategy counts as right for the silver label.

    ``"acc"`` (Adaptive-RAG): the answer contains the gold answer. ``"f1"``: the strategy reaches the
    question's best F1 (and that F1 is > 0), i.e. the label becomes the simplest strategy with the best F1.
    """
    if label == "acc":
        return {s: [cache.get(it["id"], s)["acc"] for it in items] for s in STRATEGIES}
    best = [max(cache.get(it["id"], s)["f1"] for s in STRATEGIES) for it in items]
    return {s: [float(b > 0 and cache.get(it["id"], s)["f1"] >= b - 1e-9) for it, b in zip(items, best)]
            for s in STRATEGIES}


def route_cross_validated(items: list[dict[str, Any]], cache: OutcomeCache, args: argparse.Namespace,
                          table: PriceTable, label: str = "acc",
                          featurizer: str = "minilm") -> tuple[list[str], float]:
    """The strategy the complexity classifier picks for each question, trained on the other folds only."""
    from rag_routing.embeddings import make_featurizer

    n = len(items)
    folds = np.random.default_rng(args.seed).permutation(n) % args.folds
    chosen: list[str] = [""] * n
    route_seconds = 0.0
    queries = [it["question"] for it in items]
    outcomes = label_outcomes(items, cache, label)
    costs = {s: [price(cache.get(it["id"], s), table, args.price_as) for it in items] for s in STRATEGIES}
    fallback = ["multi" if it["kind"] == "multi-hop" else "single" for it in items]  # Adaptive-RAG's dataset bias
    for fold in range(args.folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        if test.size == 0:
            continue
        dataset = complexity_dataset([queries[i] for i in train],
                                     {s: [outcomes[s][i] for i in train] for s in outcomes},
                                     {s: [costs[s][i] for i in train] for s in costs},
                                     fallback=[fallback[i] for i in train], threshold=0.5)
        router = ComplexityClassifierRouter(featurizer=make_featurizer(featurizer)).fit(dataset)
        stage = RetrievalStrategyRouter(options={s: (lambda st: st) for s in STRATEGIES}, router=router)
        for i in test:
            t0 = time.perf_counter()
            chosen[i] = stage.choose(queries[i]).choice
            route_seconds += time.perf_counter() - t0
    return chosen, route_seconds / max(n, 1)


def route_probe_cross_validated(items: list[dict[str, Any]], cache: OutcomeCache, args: argparse.Namespace,
                                table: PriceTable, seed: int) -> tuple[list[str], float]:
    """The strategy a retrieval-probe stage picks for each question (single or multi, after one BM25
    retrieval), its router (ClusterRouter over the top-1 score, 4 bins) fitted on the other folds' F1 and
    US $ only, λ = 0 (the best predicted F1; ties to the cheaper). Routing runs through the real stage."""
    retriever = BM25Retriever(name="bm25").add_documents(load_corpus(args.data / "musique_100" / "corpus.jsonl"))
    stage = RetrievalStrategyRouter(retriever, llm=lambda messages: "", k=args.k, max_steps=args.max_steps,
                                    probe=True, lam=0.0)
    n = len(items)
    folds = np.random.default_rng(seed).permutation(n) % args.folds
    queries = [it["question"] for it in items]
    options = ("single", "multi")
    f1 = {s: [cache.get(it["id"], s)["f1"] for it in items] for s in options}
    costs = {s: [price(cache.get(it["id"], s), table, args.price_as) for it in items] for s in options}
    chosen: list[str] = [""] * n
    route_seconds = 0.0
    with ledger_scope(CostLedger()):  # the probe's retrievals are part of the strategies' measured cost
        for fold in range(args.folds):
            train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
            stage.fit_from_outcomes([queries[i] for i in train], {s: [f1[s][i] for i in train] for s in options},
                                    {s: [costs[s][i] for i in train] for s in options})
            for i in test:
                t0 = time.perf_counter()
                chosen[i] = stage.choose(queries[i]).choice
                route_seconds += time.perf_counter() - t0
    return chosen, route_seconds / max(n, 1)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, seed: int = 0, rounds: int = 10_000) -> tuple[float, float]:
    """95 % interval of mean(a - b) over questions resampled with replacement."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, diff.size, size=(rounds, diff.size))
    means = diff[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def summarise(records: list[dict[str, Any]], table: PriceTable, model: str) -> dict[str, float]:
    keys = ("em", "f1", "acc", "recall", "n_docs", "llm_calls", "input_tokens", "output_tokens", "seconds")
    out = {k: float(np.mean([r[k] for r in records])) for k in keys}
    out["usd_per_1k"] = 1000 * float(np.mean([price(r, table, model) for r in records]))
    return out


def musique_report(items: list[dict[str, Any]], cache: OutcomeCache, args: argparse.Namespace) -> dict[str, Any]:
    table = PriceTable.default()
    rows: dict[str, list[dict[str, Any]]] = {s: [cache.get(it["id"], s) for it in items] for s in STRATEGIES}
    # "routed": Adaptive-RAG's silver labels (simplest strategy whose answer contains the gold answer);
    # "routed-f1": the simplest strategy reaching the question's best F1. Both: MiniLM features, dataset-bias
    # fallback (single-hop -> single, multi-hop -> multi) where no strategy counts as right.
    for name, label in (("routed", "acc"), ("routed-f1", "f1")):
        picks, seconds = route_cross_validated(items, cache, args, table, label)
        rows[name] = [{**cache.get(it["id"], c), "seconds": cache.get(it["id"], c)["seconds"] + seconds}
                      for it, c in zip(items, picks)]
        if name == "routed":
            chosen, route_seconds = picks, seconds
    # "routed-probe": route after the first retrieval, on its top-1 BM25 score (RetrievalStrategyRouter(probe=True)).
    probe_picks, _ = route_probe_cross_validated(items, cache, args, table, args.seed)
    rows["routed-probe"] = [cache.get(it["id"], c) for it, c in zip(items, probe_picks)]
    # Oracle: per question the strategy with the best F1, ties to the cheaper (an upper bound, not a method).
    rows["oracle"] = [cache.get(it["id"], max(STRATEGIES, key=lambda s, it=it: (cache.get(it["id"], s)["f1"],
                                                                               -STRATEGIES.index(s))))
                      for it in items]
    report: dict[str, Any] = {"n": len(items), "route_seconds": route_seconds, "choices": {}}
    # The probe router over several fold assignments (the table's row is one of them), and paired bootstrap
    # intervals of the F1 difference to always-multi.
    multi_f1 = np.array([r["f1"] for r in rows["multi"]])
    multi_usd = np.mean([price(r, table, args.price_as) for r in rows["multi"]])
    repeats = []
    for seed in range(args.seed, args.seed + args.cv_repeats):
        picks, _ = route_probe_cross_validated(items, cache, args, table, seed)
        recs = [cache.get(it["id"], c) for it, c in zip(items, picks)]
        repeats.append((float(np.mean([r["f1"] for r in recs])),
                        float(np.mean([price(r, table, args.price_as) for r in recs])) / multi_usd,
                        float(np.mean([c == "multi" for c in picks]))))
    report["probe_repeats"] = {"f1": [r[0] for r in repeats], "cost_vs_multi": [r[1] for r in repeats],
                               "multi_share": [r[2] for r in repeats], "multi_f1": float(multi_f1.mean())}
    report["f1_diff_ci"] = {name: paired_bootstrap(np.array([r["f1"] for r in rows[name]]), multi_f1)
                            for name in ("single", "routed", "routed-probe")}
    for kind in ("all", "single-hop", "multi-hop"):
        idx = [i for i, it in enumerate(items) if kind == "all" or it["kind"] == kind]
        if not idx:
            continue
        report[kind] = {name: summarise([recs[i] for i in idx], table, args.price_as) for name, recs in rows.items()}
        report["choices"][kind] = {s: sum(1 for i in idx if chosen[i] == s) for s in STRATEGIES}
    return report


def print_musique(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n== MuSiQue: answer quality, retrieval recall and ledger cost per retrieval strategy "
          f"(n={report['n']}, SmolLM2-135M-Instruct, greedy, max {args.max_new_tokens} answer tokens) ==")
    print(f"US $ = the ledger's tokens billed at {args.price_as}'s list price (hypothetical: the local model costs "
          f"$0); seconds = ledger seconds on this machine. Routed = complexity classifier (MiniLM), {args.folds}-fold "
          "cross-validated, silver label = simplest strategy whose answer contains the gold answer (routed-f1: "
          "simplest strategy with the question's best F1), unanswered -> single-hop: single, multi-hop: multi; "
          "oracle = per question the strategy with the best F1 (upper bound, not a method).")
    header = f"{'subset':<11}{'strategy':<13}{'EM':>6}{'F1':>6}{'Acc':>6}{'recall':>8}{'docs':>6}{'LLM calls':>10}" \
             f"{'tok in':>8}{'tok out':>8}{'sec':>7}{'$/1k q':>9}"
    print(header)
    for kind in ("all", "single-hop", "multi-hop"):
        if kind not in report:
            continue
        for name, m in report[kind].items():
            print(f"{kind:<11}{name:<13}{m['em']:>6.3f}{m['f1']:>6.3f}{m['acc']:>6.3f}{m['recall']:>8.3f}"
                  f"{m['n_docs']:>6.1f}{m['llm_calls']:>10.2f}{m['input_tokens']:>8.0f}{m['output_tokens']:>8.1f}"
                  f"{m['seconds']:>7.2f}{m['usd_per_1k']:>9.4f}")
    print(f"routed choices: {report['choices']}")
    for name, (low, high) in report["f1_diff_ci"].items():
        print(f"F1 {name} - multi: 95 % paired-bootstrap interval [{low:+.4f}, {high:+.4f}]")
    rep = report["probe_repeats"]
    f1s, rel = np.array(rep["f1"]), np.array(rep["cost_vs_multi"])
    print(f"routed-probe over {len(f1s)} fold assignments: F1 {f1s.mean():.4f} ± {f1s.std():.4f} (multi "
          f"{rep['multi_f1']:.4f}; >= multi in {(f1s >= rep['multi_f1'] - 1e-12).sum()}/{len(f1s)}), cost "
          f"{100 * rel.mean():.0f} % of always-multi's, multi-step for {100 * np.mean(rep['multi_share']):.0f} % "
          "of questions")
    everything = report["all"]
    multi = everything["multi"]
    for name in ("routed", "routed-probe"):
        routed = everything[name]
        cheaper = routed["usd_per_1k"] < multi["usd_per_1k"]
        as_good = routed["f1"] >= multi["f1"]
        print(f"{name} vs always-multi: cost {routed['usd_per_1k']:.4f} vs {multi['usd_per_1k']:.4f} $/1k queries "
              f"({'cheaper' if cheaper else 'NOT cheaper'}), F1 {routed['f1']:.4f} vs {multi['f1']:.4f} "
              f"({'equal or better' if as_good else 'WORSE'})")
    if max(m["f1"] for m in everything.values()) < 0.05:
        print("note: the 135M model's F1 is near zero for every strategy; only recall and cost are informative here.")


# ---------------------------------------------------------------------------------------------------- CISI
def run_cisi(args: argparse.Namespace) -> dict[str, Any]:
    folder = args.data / "cisi"
    docs = load_corpus(folder / "corpus.jsonl")
    qrels = {q: rel for q, rel in load_qrels(folder / "qrels" / "test.tsv").items() if any(v > 0 for v in rel.values())}
    with open(folder / "queries.jsonl", encoding="utf-8") as handle:
        queries = {r["_id"]: r["text"] for r in map(json.loads, filter(str.strip, handle))}
    ids = sorted(qrels, key=lambda q: int(q) if q.isdigit() else q)
    texts = [queries[q] for q in ids]
    relevant = [qrels[q] for q in ids]
    started = time.perf_counter()
    ledger = CostLedger()
    with ledger_scope(ledger):
        # No embedding cache: the query timings (the router's cost, ties go to the faster) stay real.
        dense = DenseRetriever(name="dense").add_documents(docs)
        bm25 = BM25Retriever(name="bm25").add_documents(docs)
        retrievers = {"dense": dense, "bm25": bm25, "hybrid": HybridRetriever([dense, bm25], name="hybrid")}
        runs, seconds = {}, {}
        for name, r in retrievers.items():
            t0 = time.perf_counter()
            runs[name] = [[h.id for h in hits] for hits in r.retrieve_batch(texts, 10)]
            seconds[name] = (time.perf_counter() - t0) / len(texts)
    ndcg = {name: ndcg_at_k(run, relevant, 10) for name, run in runs.items()}
    names = list(retrievers)
    folds = np.random.default_rng(args.seed).permutation(len(ids)) % args.folds
    routed = np.zeros(len(ids))
    chosen: list[str] = [""] * len(ids)
    for fold in range(args.folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        stage = RetrieverRouter(retrievers, k=10)
        stage.fit_from_outcomes([texts[i] for i in train], {n: ndcg[n][train] for n in names},
                                {n: seconds[n] for n in names})
        for i in test:
            state = stage.invoke(texts[i])
            chosen[i] = state.choices()["retriever"]
            routed[i] = ndcg_at_k([state.document_ids], [relevant[i]], 10)[0]
    oracle = np.max(np.column_stack([ndcg[n] for n in names]), axis=1)
    result = {"n_queries": len(ids), "ndcg@10": {n: float(ndcg[n].mean()) for n in names},
              "seconds_per_query": seconds, "routed": float(routed.mean()), "oracle": float(oracle.mean()),
              "choices": {n: chosen.count(n) for n in names}, "recall@10": {
                  n: float(recall_at_k(runs[n], relevant, 10).mean()) for n in names},
              "elapsed": time.perf_counter() - started}
    return result


def print_cisi(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n== CISI: nDCG@10 over {result['n_queries']} judged queries (retriever router: direct classifier on "
          f"MiniLM query embeddings, label = best nDCG@10 retriever, {args.folds}-fold cross-validated) ==")
    print(f"{'retriever':<18}{'nDCG@10':>9}{'recall@10':>11}{'ms/query':>10}")
    for name, value in result["ndcg@10"].items():
        print(f"{name:<18}{value:>9.4f}{result['recall@10'][name]:>11.4f}"
              f"{1000 * result['seconds_per_query'][name]:>10.1f}")
    print(f"{'retriever router':<18}{result['routed']:>9.4f}{'':>11}{'':>10}   choices {result['choices']}")
    print(f"{'oracle (bound)':<18}{result['oracle']:>9.4f}")


# ---------------------------------------------------------------------------------------------------- main
def config_key(args: argparse.Namespace) -> str:
    config = {"v": CACHE_VERSION, "k": args.k, "max_steps": args.max_steps, "max_new_tokens": args.max_new_tokens,
              "thought_tokens": args.thought_tokens, "max_context_chars": args.max_context_chars}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared rag data folder")
    parser.add_argument("--limit", type=int, help="stratified sample of N MuSiQue questions")
    parser.add_argument("--k", type=int, default=4, help="passages per retrieval (default 4)")
    parser.add_argument("--max-steps", type=int, default=2, help="retrievals at most in multi-step (default 2)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer tokens (default 16)")
    parser.add_argument("--thought-tokens", type=int, default=16, help="tokens per multi-step follow-up")
    parser.add_argument("--max-context-chars", type=int, default=3500, help="context cap in characters")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--cv-repeats", type=int, default=10,
                        help="fold assignments the probe router is cross-validated over (default 10)")
    parser.add_argument("--price-as", default="gpt-4o-mini", help="hosted model whose price bills the tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "rag_routing" / "rag_bench")
    parser.add_argument("--shard", type=lambda v: tuple(int(x) for x in v.split("/")), default=(0, 1),
                        metavar="I/N", help="compute only questions i, i+N, ... (run N workers; they share the cache)")
    parser.add_argument("--report-only", action="store_true",
                        help="compute nothing: report the MuSiQue questions already cached (e.g. mid-run)")
    parser.add_argument("--skip-musique", action="store_true")
    parser.add_argument("--skip-cisi", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    if not args.skip_musique:
        items = load_musique(args.data / "musique_100", args.limit, args.seed)
        cache = OutcomeCache(args.cache_dir / f"musique_{config_key(args)}.json")
        if not args.report_only:
            run_outcomes(items, args, cache)
            cache.refresh()
        complete = [it for it in items if all(cache.get(it["id"], s) for s in STRATEGIES)]
        if len(complete) < len(items):  # other shards still running, or --report-only mid-run
            print(f"MuSiQue: reporting the {len(complete)} of {len(items)} questions whose three outcomes are cached")
        items = complete
        results["musique"] = musique_report(items, cache, args)
        print_musique(results["musique"], args)
        print(f"(MuSiQue done at {time.perf_counter() - started:.0f}s)")
    if not args.skip_cisi:
        results["cisi"] = run_cisi(args)
        print_cisi(results["cisi"], args)
    elapsed = time.perf_counter() - started
    print(f"\nelapsed: {elapsed:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
