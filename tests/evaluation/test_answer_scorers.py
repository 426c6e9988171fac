"""Answer scorers: SQuAD metrics on known cases, MiniLM similarity (slow), the LLM judge through a fake paid chat
model with its cost in the ledger, and unreadable judge replies (typed error or the declared fallback)."""

from __future__ import annotations

import pytest

from rag_routing.candidates import Pricing
from rag_routing.errors import BudgetExceededError, InvalidInputError, JudgeReplyError
from rag_routing.evaluation.answer_scorers import (
    LABEL_JUDGE_STAGE,
    ContainsAnswerScorer,
    ExactMatchScorer,
    LLMJudgeScorer,
    SemanticSimilarityScorer,
    TokenF1Scorer,
    make_scorer,
    parse_grade,
)
from rag_routing.ledger import Budget, ledger_scope


def _fake_chat(*replies: str, input_tokens: int = 40, output_tokens: int = 3):
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    messages = [AIMessage(content=r, usage_metadata={"input_tokens": input_tokens, "output_tokens": output_tokens,
                                                      "total_tokens": input_tokens + output_tokens}) for r in replies]
    return GenericFakeChatModel(messages=iter(messages))


@pytest.mark.parametrize("scorer, answer, refs, expected", [
    (ExactMatchScorer(), "The Beatles!", ["Beatles"], 1.0),
    (ExactMatchScorer(), "Lima, Peru", ["Lima"], 0.0),
    (TokenF1Scorer(), "Johann Goethe", ["Goethe"], 2 / 3),
    (TokenF1Scorer(), "Berlin", ["Lima", "Berlin"], 1.0),
    (ContainsAnswerScorer(), "The capital is Lima.", ["Lima"], 1.0),
    (ContainsAnswerScorer(), "Limassol", ["Lima"], 0.0),
])
def test_squad_scorers_on_known_cases(scorer, answer, refs, expected):
    assert scorer.score("question?", answer, refs) == pytest.approx(expected)


def test_scorers_refuse_missing_references_and_bad_input():
    with pytest.raises(InvalidInputError, match="reference"):
        TokenF1Scorer().score("q?", "Lima", [])
    with pytest.raises(InvalidInputError, match="answer must be a string"):
        ExactMatchScorer().score("q?", None, ["Lima"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="query"):
        ExactMatchScorer().score(" ", "Lima", ["Lima"])
    with pytest.raises(InvalidInputError, match="unknown scorer"):
        make_scorer("bleu")
    assert ExactMatchScorer().score("q?", "Lima", "Lima") == 1.0  # one reference as a string


@pytest.mark.parametrize("reply, grade", [
    ("Score: 7", 0.7), ("score = 10", 1.0), ("Score: 6/10", 0.6), ('{"score": 3}', 0.3),
    ('```json\n{"score": 0}\n```', 0.0), ("9", 0.9), ("Score: 8\nBecause it matches.", 0.8),
    ("The answer is correct, 10 points", None), ("Score: 11", None), ("Score: 4/5", None),
    ('{"score": true}', None), ("", None), ("I cannot grade this.", None), ("-3", None), ("**Score:** 8", 0.8),
])
def test_parse_grade_reads_only_grades(reply, grade):
    assert parse_grade(reply, 10) == (None if grade is None else pytest.approx(grade))


def test_llm_judge_through_a_paid_chat_model_bills_the_ledger():
    judge = LLMJudgeScorer(_fake_chat("Score: 7"), model="gpt-4o-mini")
    with ledger_scope() as ledger:
        assert judge.score("Capital of Peru?", "It is Lima.", ["Lima"]) == pytest.approx(0.7)
    (entry,) = ledger.entries
    assert (entry.stage, entry.component, entry.model) == (LABEL_JUDGE_STAGE, "llm_judge", "gpt-4o-mini")
    assert (entry.input_tokens, entry.output_tokens) == (40, 3)  # the provider's usage wins
    assert entry.cost_usd == pytest.approx((40 * 0.15 + 3 * 0.6) / 1e6)


def test_llm_judge_keeps_the_prices_of_a_given_llm_client():
    from rag_routing.routers.judges.llm_client import LLMClient

    client = LLMClient(lambda prompt: "Score: 4", model="in-house-grader",
                       pricing=Pricing(input_per_mtok=2.0, output_per_mtok=8.0))
    with ledger_scope() as ledger:
        assert LLMJudgeScorer(client).score("Capital of Peru?", "Lima", ["Lima"]) == 0.4
    assert ledger.entries[0].model == "in-house-grader" and ledger.entries[0].cost_usd > 0
    assert ledger.entries[0].stage == LABEL_JUDGE_STAGE
    with pytest.raises(InvalidInputError, match="LLMClient"):
        LLMJudgeScorer(client, model="other")


def test_llm_judge_prompt_holds_the_references_and_the_answer():
    seen = []
    judge = LLMJudgeScorer(lambda prompt: seen.append(prompt) or "Score: 10", model="grader",
                           pricing=Pricing(input_per_mtok=0.0, output_per_mtok=0.0))
    judge.score("Capital of Peru?", "Lima", ["Lima", "Ciudad de los Reyes"])
    assert "Ciudad de los Reyes" in seen[0] and "Candidate answer: Lima" in seen[0]
    free = LLMJudgeScorer(lambda prompt: "Score: 5", model="grader", require_references=False,
                          pricing=Pricing(input_per_mtok=0.0, output_per_mtok=0.0))
    assert free.score("Tell a joke", "Why did the chicken...") == 0.5


def test_unreadable_judge_reply_is_a_typed_error_or_the_declared_fallback():
    strict = LLMJudgeScorer(_fake_chat("Looks right to me!"), model="gpt-4o-mini")
    with ledger_scope() as ledger, pytest.raises(JudgeReplyError, match="Looks right"):
        strict.score("Capital of Peru?", "Lima", ["Lima"])
    assert len(ledger) == 1 and ledger.entries[0].cost_usd > 0  # the call ran and is paid for
    lenient = LLMJudgeScorer(_fake_chat("Score: 15", "Score: 9"), model="gpt-4o-mini", on_unparsable=0.0)
    assert lenient.score("Capital of Peru?", "Lima", ["Lima"]) == 0.0  # out of range is not a grade
    assert lenient.score("Capital of Peru?", "Lima", ["Lima"]) == 0.9
    assert lenient.unparsable_ == 1
    with pytest.raises(InvalidInputError, match="on_unparsable"):
        LLMJudgeScorer(_fake_chat("x"), model="gpt-4o-mini", on_unparsable=2.0)


def test_llm_judge_is_refused_by_the_budget_before_the_call():
    calls = []
    judge = LLMJudgeScorer(lambda prompt: calls.append(prompt) or "Score: 1", model="gpt-4o")
    with ledger_scope(budget=Budget(max_usd=1e-9)), pytest.raises(BudgetExceededError):
        judge.score("Capital of Peru?", "Lima", ["Lima"])
    assert calls == []


@pytest.mark.slow
def test_semantic_similarity_with_the_real_minilm_is_recorded_at_zero_cost():
    scorer = SemanticSimilarityScorer()
    with ledger_scope() as ledger:
        same = scorer.score("Capital of France?", "Paris is the capital of France.",
                            ["The capital of France is Paris."])
        other = scorer.score("Capital of France?", "I like green bananas.", ["The capital of France is Paris."])
        exact = scorer.score("Capital of France?", "Paris", ["Berlin", "Paris"])
    assert same > 0.8 > 0.3 > other >= 0.0
    assert exact == pytest.approx(1.0, abs=1e-5)
    assert scorer.score("Capital of France?", "", ["Paris"]) == 0.0
    assert len(ledger) == 3 and {e.stage for e in ledger.entries} == {LABEL_JUDGE_STAGE}
    assert all(e.cost_usd == 0.0 and e.component == "semantic_similarity" for e in ledger.entries)
