"""The real offline default generator (SmolLM2-135M-Instruct GGUF): loaded once for the module."""

from __future__ import annotations

import asyncio
import math

import pytest

from rag_routing.ledger import ledger_scope
from rag_routing.llms import LocalLLM

pytestmark = pytest.mark.slow

# A 135M model is sensitive to phrasing; this one is answered correctly (greedy) by SmolLM2-135M-Instruct.
QA = [
    {"role": "system", "content": "Use this context to answer: The capital of Freedonia is Zorbatown."},
    {"role": "user", "content": "What is the capital of Freedonia?"},
]


@pytest.fixture(scope="module")
def llm() -> LocalLLM:
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    return LocalLLM(max_new_tokens=12).load()


@pytest.fixture(scope="module")
def answer(llm):
    return llm.generate(QA)


def test_answers_from_the_context(answer):
    assert "Zorbatown" in answer.text
    assert answer.model == "SmolLM2-135M-Instruct"
    assert answer.input_tokens > 20 and answer.output_tokens >= len(answer.tokens) > 0


def test_logprobs_are_finite_probabilities_aligned_with_tokens(answer):
    assert len(answer.tokens) == len(answer.token_logprobs) == len(answer.top_logprobs) == len(answer.token_ids)
    assert all(math.isfinite(lp) and lp <= 0 for lp in answer.token_logprobs)
    assert "".join(answer.tokens) == answer.text


def test_top_logprobs_sorted_and_greedy_token_first(answer):
    for token, logprob, row in zip(answer.tokens, answer.token_logprobs, answer.top_logprobs):
        assert len(row) == 5
        values = [lp for _, lp in row]
        assert values == sorted(values, reverse=True) and all(math.isfinite(v) and v <= 0 for v in values)
        assert row[0] == (token, pytest.approx(logprob))  # greedy picks the most likely token


def test_greedy_is_deterministic_and_streaming_matches(llm, answer):
    assert llm.generate(QA).token_ids == answer.token_ids
    chunks = list(llm.stream_chunks(QA))
    assert "".join(c.text for c in chunks) == answer.text
    assert sum((c.token_logprobs for c in chunks), []) == pytest.approx(answer.token_logprobs)


def test_seeded_sampling_is_reproducible(llm):
    kwargs = dict(temperature=1.0, seed=11, max_new_tokens=8)
    assert llm.generate("Write a word.", **kwargs).text == llm.generate("Write a word.", **kwargs).text


def test_stop_sequence(llm, answer):
    word = answer.text.split()[1]  # e.g. "capital"
    cut = llm.generate(QA, stop=[word])
    assert cut.text == answer.text[: answer.text.index(word)] and cut.finish_reason == "stop"


def test_recorded_in_the_ledger_for_free_also_from_async(llm):
    async def call():
        return await llm.agenerate("Say hi.", max_new_tokens=4)

    with ledger_scope() as ledger:
        generation = asyncio.run(call())
    (entry,) = ledger.entries
    assert entry.stage == "generation" and entry.component == "local_llm"
    assert entry.model == "SmolLM2-135M-Instruct" and entry.cost_usd == 0.0
    assert (entry.input_tokens, entry.output_tokens) == (generation.input_tokens, generation.output_tokens)
    assert entry.seconds > 0 and entry.energy_kwh > 0


def test_counts_tokens_with_its_own_tokenizer(llm):
    assert llm.count_tokens("Zorbatown") == 4 and llm.params_billion == pytest.approx(0.1345, abs=1e-3)


def test_docstring_example_runs(llm):
    import doctest

    import rag_routing.llms.local as local

    result = doctest.testmod(local)
    assert result.attempted > 0 and result.failed == 0
