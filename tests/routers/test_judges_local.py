"""Judges on the real offline model (SmolLM2-135M-Instruct): log-probabilities from a real generation, through
our LocalLLM and through the LangChain chat model; repeated calls for consistency. Slow: loads the model once."""

from __future__ import annotations

import math

import pytest

from rag_routing.ledger import ledger_scope
from rag_routing.routers.judges import (
    ConsistencyJudge,
    LLMClient,
    SequenceProbabilityJudge,
    TokenMarginJudge,
    as_completion,
)
from rag_routing.routers.judges.token_probability import FILLER_TOKENS

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def local_llm():
    pytest.importorskip("transformers")
    from rag_routing.llms import LocalLLM

    try:
        return LocalLLM(max_new_tokens=12).load()
    except Exception as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"the local model cannot be loaded here: {exc}")


def test_token_margin_and_sequence_probability_on_a_real_generation(local_llm):
    with ledger_scope() as ledger:
        generation = local_llm.generate(QUESTION, max_new_tokens=12, logprobs=True, top_logprobs=5)
        calls = len(ledger)
        margin = TokenMarginJudge().score(QUESTION, generation.text, generation=generation)
        first = TokenMarginJudge(position="first").score(QUESTION, generation.text, generation=generation)
        sequence = SequenceProbabilityJudge().score(QUESTION, generation.text, generation=generation)
    assert len(ledger) == calls  # reading the generation costs nothing
    assert 0.0 <= margin <= 1.0 and 0.0 <= first <= 1.0
    assert sequence == pytest.approx(math.exp(sum(generation.token_logprobs) / len(generation.token_logprobs)))
    reply = as_completion(generation)
    scored = TokenMarginJudge().answer_token(reply)
    assert all(t.strip().lower() in FILLER_TOKENS for t in reply.tokens[:scored])
    if reply.tokens[0].strip().lower() in FILLER_TOKENS:  # "The capital ...": the answer span starts later
        assert scored > 0


def test_the_same_judges_read_logprobs_from_the_langchain_chat_model(local_llm):
    pytest.importorskip("langchain_core")
    from rag_routing.integrations.langchain.chat_model import LocalChatModel

    chat = LocalChatModel(max_tokens=8, logprobs=True, top_logprobs=5, record_to_ledger=False)
    client = LLMClient(chat, component="local-chat")
    with ledger_scope() as ledger:
        reply = client.complete("Answer with one word. " + QUESTION, max_tokens=8, logprobs=True, top_logprobs=5)
    assert reply.has_logprobs and len(reply.tokens) == len(reply.token_logprobs)
    assert ledger.entries[0].cost_usd == 0.0 and ledger.entries[0].output_tokens > 0
    assert 0.0 <= TokenMarginJudge().score(QUESTION, reply.text, generation=reply) <= 1.0
    assert 0.0 < SequenceProbabilityJudge().score(QUESTION, reply.text, generation=reply) <= 1.0


def test_token_margin_probes_the_local_model_for_the_bare_answer(local_llm):
    judge = TokenMarginJudge(llm=local_llm, probe_max_tokens=4)
    with ledger_scope() as ledger:
        score = judge.score(QUESTION, "Paris")
    assert 0.0 <= score <= 1.0
    entry = ledger.entries[0]
    assert (entry.stage, entry.component, entry.cost_usd) == ("judge", "token_margin", 0.0)


def test_consistency_samples_the_local_model_k_times(local_llm):
    judge = ConsistencyJudge(local_llm, k=3, temperature=0.9, seed=1, max_tokens=8)
    with ledger_scope() as ledger:
        score = judge.score(QUESTION, "Paris")
    assert score in (0.0, 1 / 3, 2 / 3, 1.0) and len(judge.last_samples_) == 3
    assert [e.component for e in ledger.entries] == ["consistency"] * 3
    assert all(e.cost_usd == 0.0 and e.output_tokens > 0 for e in ledger.entries)
    again = ConsistencyJudge(local_llm, k=3, temperature=0.9, seed=1, max_tokens=8)
    assert again.score(QUESTION, "Paris") == score  # seeded samples are reproducible
