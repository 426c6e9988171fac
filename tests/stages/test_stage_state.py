"""RAGState and TraceStep: coercion, copies, validation, serialisation."""

from __future__ import annotations

import json

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.ledger.entry import LedgerEntry
from rag_routing.stages.state import RAGState, TraceStep


def test_coerce_accepts_str_dict_and_state():
    state = RAGState.coerce("Who?")
    assert state.query == "Who?" and state.answer is None and state.trace == []
    assert RAGState.coerce(state) is state
    assert RAGState.coerce({"question": "Why?"}).query == "Why?"
    coerced = RAGState.coerce({"input": "How?", "history": [("user", "hi")]})
    assert coerced.history == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("bad", ["", "   ", 3, None, {"context": "x"}, {"query": "q", "nope": 1}])
def test_coerce_rejects_bad_input(bad):
    with pytest.raises(InvalidInputError):
        RAGState.coerce(bad)


def test_evolve_copies_and_never_mutates():
    history = [{"role": "user", "content": "hi"}]
    state = RAGState(query="q", history=history, metadata={"a": 1})
    history.append({"role": "assistant", "content": "changed"})
    assert len(state.history) == 1
    later = state.evolve(answer="x", metadata={**state.metadata, "b": 2})
    assert state.answer is None and state.metadata == {"a": 1}
    assert later.answer == "x" and later.metadata == {"a": 1, "b": 2}
    with pytest.raises(InvalidInputError):
        state.evolve(nope=1)


def test_history_is_validated():
    with pytest.raises(InvalidInputError):
        RAGState(query="q", history=[{"role": "user"}])
    with pytest.raises(InvalidInputError):
        RAGState(query="q", history="hello")


def test_trace_step_sums_entries_and_serialises():
    entries = [LedgerEntry("generation", "a", input_tokens=10, output_tokens=2, cost_usd=0.1, seconds=0.5,
                           energy_kwh=0.001),
               LedgerEntry("retrieval", "bm25", seconds=0.25)]
    step = TraceStep.from_entries("retriever", "bm25", "fixed", entries, decision_id="d1")
    assert (step.usd, step.input_tokens, step.output_tokens, step.seconds, step.calls) == (0.1, 10, 2, 0.75, 2)
    assert step.energy_kwh == pytest.approx(0.001)
    assert step.entry_ids == tuple(e.entry_id for e in entries)
    json.dumps(step.to_dict())
    state = RAGState(query="q", trace=[step, step])
    assert state.cost()["usd"] == pytest.approx(0.2) and state.cost()["calls"] == 4
    assert "retriever" in state.trace_table()
    json.dumps(state.to_dict())
