"""The main-job demo: a routed RAG chatbot over the bundled corpus, its decision traces, ledger and bill.

:func:`run_demo` answers a greeting (needs no retrieval), a single-hop and a 2-hop question with a
:class:`~rag_routing.stages.pipeline.RoutedRAG` whose stages route, prints each answer's decision trace and
the cost ledger, then answers the same questions with an *always-biggest* pipeline (always multi-step
retrieval, full documents, chain-of-thought, the biggest generator) and compares the two bills.

What is real and what is priced hypothetically (also printed):

* real: retrieval (MiniLM + FAISS, BM25, RRF), the local SmolLM2-135M-Instruct that writes every answer,
  every token count and second in the ledger;
* hypothetical: only one local model ships, so the "big" generator is *the same local model billed at
  gpt-4o's list price* (:class:`~rag_routing.stages.generator.PricedLLM`); the "small" one is billed at $0
  as what it is, a local model. Dollar figures therefore show what the routing decisions would cost if "big"
  were gpt-4o; answer quality does not change with the label.

Example (loads MiniLM and the local model; about a minute or two on 2 CPU cores):
    >>> result = run_demo()  # doctest: +SKIP
    >>> result["bill"]["saving_usd"] > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.answer_metrics import score_answer
from rag_routing.ledger.ledger import CostLedger
from rag_routing.stages.context import ContextRouter
from rag_routing.stages.defaults import DefaultComponents, build_components
from rag_routing.stages.examples import COMPLEXITY_EXAMPLES, DEMO_QUESTIONS
from rag_routing.stages.generator import GeneratorRouter, PricedLLM
from rag_routing.stages.pipeline import RoutedRAG
from rag_routing.stages.prompt import PromptStrategyRouter
from rag_routing.stages.state import RAGState

#: The hosted model whose list price the "big" generator is billed at.
BIG_PRICE_AS = "gpt-4o"
HONESTY_NOTE = (
    "Real: retrieval (MiniLM+FAISS, BM25, RRF), every answer (local SmolLM2-135M-Instruct), all tokens and "
    f"seconds. Hypothetical: the 'big' generator is the SAME local model billed at {BIG_PRICE_AS}'s list price "
    "(only one local model ships); 'small' is billed at $0 as a local model.")


def _corpus(data_dir: str | os.PathLike[str] | None) -> Path | None:
    if data_dir is None:
        return None
    path = Path(data_dir)
    for candidate in (path, path / "demo_corpus.jsonl", path / "corpus.jsonl"):
        if candidate.is_file():
            return candidate
    raise InvalidInputError(f"no corpus at {path} (expected a JSONL file, or a folder with demo_corpus.jsonl "
                            "or corpus.jsonl); pass data_dir=None for the bundled corpus")


def _generator_labels() -> list[str]:
    # The big model is worth its price only where the query needs a chain of facts.
    return ["big" if label == "multi" else "small" for _, label in COMPLEXITY_EXAMPLES]


def build_pipelines(parts: DefaultComponents) -> tuple[RoutedRAG, RoutedRAG]:
    """(routed, always-biggest) pipelines over the same indexes and the same local model."""
    big = PricedLLM(parts.llm, BIG_PRICE_AS, name=f"big: SmolLM2-135M priced as {BIG_PRICE_AS}")
    generator = GeneratorRouter({"small": parts.llm, "big": big}, default="small", max_new_tokens=24)
    queries = [q for q, _ in COMPLEXITY_EXAMPLES]
    generator.fit_from_labels(queries, _generator_labels(), costs={"small": 0.0, "big": 1.0},
                              router=parts.classifier())
    routed = RoutedRAG(retrieval_strategy=parts.strategy_stage(), context=parts.context_stage(),
                       prompt=PromptStrategyRouter(), generator=generator)
    biggest = RoutedRAG(
        retrieval_strategy=parts.strategy_stage(trained=False, default="multi"),
        context=ContextRouter(parents=parts.context_stage().options["full"].parents,  # type: ignore[union-attr]
                              max_chunks=parts.k, default="full", self_route=False),
        prompt=PromptStrategyRouter(default="cot"),
        generator=GeneratorRouter({"big": big}))
    return routed, biggest


def _answer_all(rag: RoutedRAG, questions: Sequence[tuple[str, str | None]], ledger: CostLedger) -> list[RAGState]:
    rag.ledger = ledger
    return [rag.invoke(q) for q, _ in questions]


def _row(state: RAGState, expected: str | None) -> dict[str, Any]:
    scores = score_answer(state.answer, [expected]) if expected else None
    return {"question": state.query, "answer": state.answer, "expected": expected,
            "correct": None if scores is None else bool(scores["acc"]),
            "f1": None if scores is None else scores["f1"], "choices": state.choices(),
            "cost": state.cost(), "trace": [s.to_dict() for s in state.trace]}


def _bill(routed: CostLedger, biggest: CostLedger) -> dict[str, Any]:
    r, b = routed.totals(), biggest.totals()
    return {"routed_usd": r["cost_usd"], "always_biggest_usd": b["cost_usd"],
            "saving_usd": b["cost_usd"] - r["cost_usd"],
            "saving_share": (1 - r["cost_usd"] / b["cost_usd"]) if b["cost_usd"] > 0 else None,
            "routed_tokens": r["tokens"], "always_biggest_tokens": b["tokens"],
            "routed_seconds": r["seconds"], "always_biggest_seconds": b["seconds"]}


def _print_bill(bill: dict[str, Any], rows: list[dict[str, Any]], big_rows: list[dict[str, Any]],
                say: Callable[[str], None]) -> None:
    right = sum(1 for r in rows if r["correct"])
    big_right = sum(1 for r in big_rows if r["correct"])
    graded = sum(1 for r in rows if r["correct"] is not None)
    say("\n== The bill: routed vs always-biggest (always multi-step, full documents, chain-of-thought, big) ==")
    say(f"{'pipeline':<16}{'US $':>12}{'tokens':>10}{'seconds':>10}{'right*':>8}")
    say(f"{'routed':<16}{bill['routed_usd']:>12.6f}{bill['routed_tokens']:>10}{bill['routed_seconds']:>10.1f}"
        f"{f'{right}/{graded}':>8}")
    say(f"{'always-biggest':<16}{bill['always_biggest_usd']:>12.6f}{bill['always_biggest_tokens']:>10}"
        f"{bill['always_biggest_seconds']:>10.1f}{f'{big_right}/{graded}':>8}")
    say("* right = the answer contains the expected answer (Adaptive-RAG's accuracy), greeting excluded")
    if bill["saving_share"] is not None:
        say(f"routing saves ${bill['saving_usd']:.6f} ({100 * bill['saving_share']:.0f}% of the always-biggest bill)")
    say(f"note: {HONESTY_NOTE}")


def run_demo(data_dir: str | os.PathLike[str] | None = None, *,
             questions: Sequence[tuple[str, str | None]] = DEMO_QUESTIONS, llm: Any = None,
             say: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the routed chatbot demo; print traces, the ledger and the bill; return everything as a dict.

    Args:
        data_dir: a corpus JSONL (or a folder holding ``demo_corpus.jsonl`` / ``corpus.jsonl``); ``None``:
            the bundled corpus.
        questions: ``(question, expected answer or None)`` pairs.
        llm: the local model (default: SmolLM2-135M-Instruct).
        say: where lines go (``None``: silent).

    Returns:
        ``{"questions": [...], "always_biggest": [...], "ledger": {...}, "bill": {...}, "note": str,
        "seconds": float}``.
    """
    emit = say or (lambda _line: None)
    started = time.perf_counter()
    parts = build_components(_corpus(data_dir), llm=llm)
    routed, biggest = build_pipelines(parts)
    emit(f"Routed RAG demo over {len(parts.documents)} passages (indexes built in "
         f"{time.perf_counter() - started:.1f}s). {HONESTY_NOTE}")
    routed_ledger, big_ledger = CostLedger(), CostLedger()
    states = _answer_all(routed, questions, routed_ledger)
    rows = [_row(s, expected) for s, (_, expected) in zip(states, questions)]
    for state, row in zip(states, rows):
        verdict = "" if row["correct"] is None else (
            f"  [contains the expected {row['expected']!r}; F1 {row['f1']:.2f}]" if row["correct"] else
            f"  [does not contain the expected {row['expected']!r}]")
        emit(f"\nQ: {state.query}\nA: {state.answer}{verdict}")
        emit(state.trace_table())
    emit("\n== Ledger of the routed pipeline (by stage) ==")
    emit(routed_ledger.report("stage"))
    big_rows = [_row(s, expected) for s, (_, expected) in
                zip(_answer_all(biggest, questions, big_ledger), questions)]
    bill = _bill(routed_ledger, big_ledger)
    _print_bill(bill, rows, big_rows, emit)
    seconds = time.perf_counter() - started
    emit(f"demo finished in {seconds:.1f}s")
    return {"questions": rows, "always_biggest": big_rows, "ledger": routed_ledger.totals(),
            "ledger_by_stage": routed_ledger.breakdown("stage"), "bill": bill, "note": HONESTY_NOTE,
            "seconds": seconds}


__all__ = ["run_demo", "build_pipelines", "BIG_PRICE_AS", "HONESTY_NOTE"]


if __name__ == "__main__":  # pragma: no cover - `python -m rag_routing.stages.demo [CORPUS]`
    import sys

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    run_demo(sys.argv[1] if len(sys.argv) > 1 else None)
