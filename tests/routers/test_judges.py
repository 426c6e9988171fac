"""Judges and the LLM client: fakes only for paid chat APIs (a duck-typed stand-in with OpenAI-format logprobs,
and langchain-core's GenericFakeChatModel); calibration and the trained scorer on real numbers."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from rag_routing.candidates import Pricing
from rag_routing.errors import (
    BudgetExceededError,
    CorruptStateError,
    InvalidInputError,
    NotFittedError,
    UnknownPriceError,
)
from rag_routing.ledger import Budget, CostLedger, ledger_scope
from rag_routing.routers.judges import (
    AnswerScorerJudge,
    Completion,
    ConsistencyJudge,
    LLMClient,
    SelfVerificationJudge,
    SequenceProbabilityJudge,
    TokenMarginJudge,
    VerbalizedConfidenceJudge,
    as_completion,
    escalation_rate,
    threshold_for_budget,
    threshold_for_escalation,
)
from rag_routing.routers.judges.llm_client import decision_scope
from rag_routing.routers.judges.verbalized import parse_confidence


class FakeMessage:
    def __init__(self, content: str, response_metadata: dict, usage_metadata: dict):
        self.content, self.response_metadata, self.usage_metadata = content, response_metadata, usage_metadata


class FakeChat:
    """Stands in for a paid chat API: duck-typed like a LangChain chat model, priced as gpt-4o-mini."""

    model_name = "gpt-4o-mini"

    def __init__(self, replies, logprobs=None, input_tokens: int = 20):
        self.replies = list(replies) if not isinstance(replies, str) else [replies]
        self.logprobs, self.input_tokens, self.calls = logprobs, input_tokens, []

    def invoke(self, messages, **options):
        self.calls.append((messages, options))
        text = self.replies[min(len(self.calls) - 1, len(self.replies) - 1)]
        metadata = {"model_name": self.model_name}
        if self.logprobs is not None and options.get("logprobs"):
            metadata["logprobs"] = {"content": [{"token": t, "logprob": lp,
                                                 "top_logprobs": [{"token": a, "logprob": b} for a, b in top]}
                                                for t, lp, top in self.logprobs]}
        return FakeMessage(text, metadata, {"input_tokens": self.input_tokens, "output_tokens": len(text.split()),
                                            "total_tokens": self.input_tokens + len(text.split())})

    async def ainvoke(self, messages, **options):
        await asyncio.sleep(0)
        return self.invoke(messages, **options)


# "The answer is B": the model hesitated between B and C at the answer token.
HESITANT = [("The", -0.05, [("The", -0.05), ("B", -3.2)]), (" answer", -0.02, [(" answer", -0.02)]),
            (" is", -0.01, [(" is", -0.01)]),
            (" B", -0.51, [(" B", -0.51), (" C", -0.92), ("B", -4.0)])]


# ----------------------------------------------------------------------------------------------- client
def test_client_records_langchain_usage_with_stage_component_and_decision_id():
    chat = FakeChat("Paris")
    client = LLMClient(chat, stage="judge", component="probe")
    with ledger_scope() as ledger:
        done = client.complete("Capital of France?", max_tokens=8, temperature=0.0, decision_id="d1")
    entry = ledger.entries[0]
    assert done.text == "Paris" and done.input_tokens == 20 and done.output_tokens == 1
    assert (entry.stage, entry.component, entry.model, entry.decision_id) == ("judge", "probe", "gpt-4o-mini", "d1")
    assert entry.input_tokens == 20 and not entry.estimated and done.cost_usd == entry.cost_usd > 0
    assert chat.calls[0][1] == {"max_tokens": 8, "temperature": 0.0}


def test_client_refuses_before_the_call_when_the_budget_cannot_pay():
    chat = FakeChat("x" * 10)
    with ledger_scope(budget=Budget(max_usd=1e-9)) as ledger:
        with pytest.raises(BudgetExceededError, match="judge/gpt-4o-mini"):
            LLMClient(chat).complete("a question " * 50, max_tokens=500)
    assert chat.calls == [] and len(ledger) == 0 and ledger.budget.reserved().usd == 0.0


def test_rewrapping_a_client_keeps_its_model_and_prices():
    answer = lambda prompt: "ok"  # noqa: E731
    priced = LLMClient(answer, model="house-model", pricing=Pricing(input_per_mtok=1.0, output_per_mtok=2.0))
    again = LLMClient(priced, stage="label_judge")
    assert (again.model, again.pricing, again.stage) == ("house-model", priced.pricing, "label_judge")
    with ledger_scope() as ledger:
        again.complete("hello there", max_tokens=4)
    assert ledger.entries[0].model == "house-model" and ledger.entries[0].cost_usd > 0
    renamed = LLMClient(priced, model="gpt-4o")  # another model name: its own list price, not the old pricing
    assert renamed.model == "gpt-4o" and renamed.pricing is None


def test_unknown_price_is_an_error_before_the_call_unless_declared():
    calls = []
    model = lambda prompt: calls.append(prompt) or "ok"  # noqa: E731
    with pytest.raises(UnknownPriceError):
        LLMClient(model, model="mystery-model").complete("hi")
    assert calls == []
    with ledger_scope() as ledger:
        LLMClient(model, model="mystery-model", allow_unpriced=True).complete("hi")
    assert ledger.entries[0].priced is False and ledger.entries[0].cost_usd == 0.0


def test_decision_scope_tags_calls_and_the_langchain_fake_model_is_read():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    message = AIMessage(content="B", response_metadata={"logprobs": {"content": [
        {"token": "B", "logprob": -0.1, "top_logprobs": [{"token": "B", "logprob": -0.1},
                                                         {"token": "C", "logprob": -2.5}]}]}},
        usage_metadata={"input_tokens": 10, "output_tokens": 1, "total_tokens": 11})
    client = LLMClient(GenericFakeChatModel(messages=iter([message])), model="gpt-4o-mini")
    with ledger_scope() as ledger, decision_scope("cascade-7"):
        done = client.complete("Which?", logprobs=True, top_logprobs=2)
    assert done.tokens == ("B",) and done.top_logprobs[0][1] == ("C", -2.5)
    assert ledger.entries[0].decision_id == "cascade-7" and ledger.entries[0].input_tokens == 10


def test_a_model_that_records_itself_is_not_recorded_twice():
    class SelfRecording(FakeChat):
        def invoke(self, messages, **options):
            message = super().invoke(messages, **options)
            from rag_routing.ledger import current_ledger

            entry = current_ledger().record("generation", "self", "gpt-4o-mini", cost_usd=0.5)
            message.response_metadata["ledger_entry_id"] = entry.entry_id
            return message

    with ledger_scope(budget=Budget(max_usd=10.0)) as ledger:
        done = LLMClient(SelfRecording("hi")).complete("q")
    assert len(ledger) == 1 and done.cost_usd == 0.5 and ledger.budget.reserved().usd == 0.0


async def test_async_callable_and_as_completion_of_an_openai_dict():
    async def model(prompt: str) -> dict:
        return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 7, "completion_tokens": 2},
                "choices": [{"message": {"content": "Hi there"}, "logprobs": {"content": [
                    {"token": "Hi", "logprob": -0.2, "top_logprobs": []}]}}]}

    with ledger_scope() as ledger:
        done = await LLMClient(model, model="gpt-4o-mini").acomplete("hello")
    assert done.text == "Hi there" and done.tokens == ("Hi",) and ledger.entries[0].input_tokens == 7
    with pytest.raises(InvalidInputError, match="async"):
        LLMClient(lambda prompt: asyncio.sleep(0), model="gpt-4o-mini").complete("hello")
    with pytest.raises(InvalidInputError):
        as_completion(42)


# ----------------------------------------------------------------------------------- token probabilities
def test_token_margin_reads_the_generation_for_free_and_skips_filler():
    chat = FakeChat("The answer is B", logprobs=HESITANT)
    with ledger_scope() as ledger:
        reply = LLMClient(chat).complete("Which?", logprobs=True, top_logprobs=3)
        before = len(ledger)
        margin = TokenMarginJudge().score("Which?", "B", generation=reply)
        first = TokenMarginJudge(position="first").score("Which?", "B", generation=reply)
    assert len(ledger) == before  # no new call, nothing recorded
    p_b, p_c = math.exp(-0.51) + math.exp(-4.0), math.exp(-0.92)  # " B" and "B" merge
    assert margin == pytest.approx(p_b - p_c)
    assert first == pytest.approx(math.exp(-0.05) - math.exp(-3.2))
    pattern = TokenMarginJudge(answer_pattern=r"\bB\b").score("Which?", "B", generation=reply)
    assert pattern == pytest.approx(margin)


def test_token_margin_without_alternatives_uses_the_lower_bound_and_needs_logprobs():
    reply = Completion("Paris", tokens=("Paris",), token_logprobs=(math.log(0.9),))
    assert TokenMarginJudge().score("Capital?", "Paris", generation=reply) == pytest.approx(0.8)
    with pytest.raises(InvalidInputError, match="no log-probabilities"):
        TokenMarginJudge().score("Capital?", "Paris", generation=Completion("Paris"))
    with pytest.raises(InvalidInputError, match="generation="):
        TokenMarginJudge().score("Capital?", "Paris")


def test_token_margin_probes_with_its_own_model_and_records_the_call():
    chat = FakeChat("B", logprobs=[("B", -0.1, [("B", -0.1), ("C", -2.5)])])
    judge = TokenMarginJudge(llm=chat)
    with ledger_scope() as ledger:
        score = judge.score("Which?", "B")
    assert score == pytest.approx(math.exp(-0.1) - math.exp(-2.5))
    assert ledger.entries[0].stage == "judge" and ledger.entries[0].component == "token_margin"
    system = chat.calls[0][0][0]
    assert chat.calls[0][1]["logprobs"] is True and system[0] == "system" and "only the answer" in system[1]


def test_sequence_probability_is_the_length_normalised_probability():
    reply = Completion("a b", tokens=("a", " b"), token_logprobs=(-0.2, -0.4))
    assert SequenceProbabilityJudge().score("q", "a b", generation=reply) == pytest.approx(math.exp(-0.3))


# ------------------------------------------------------------------------------------------- LLM judges
@pytest.mark.parametrize("text, value", [("Confidence: 85", 0.85), ("I'd say 40%", 0.40), ("0.7", 0.7),
                                         ("Confidence: 100", 1.0), ("no idea", None), ("Confidence: 250", None)])
def test_parse_confidence(text, value):
    assert parse_confidence(text) == (None if value is None else pytest.approx(value))


def test_verbalized_confidence_records_its_call_and_distrusts_unreadable_replies():
    judge = VerbalizedConfidenceJudge(FakeChat(["Confidence: 90", "hmm"]))
    with ledger_scope() as ledger:
        assert judge.score("Capital of France?", "Paris", context="France's capital is Paris.") == 0.9
        assert judge.score("Capital of France?", "Lyon") == 0.0
    assert judge.unparsable_ == 1 and [e.component for e in ledger.entries] == ["verbalized_confidence"] * 2
    assert all(e.cost_usd > 0 for e in ledger.entries)


def test_self_verification_samples_k_verdicts_with_seeds():
    chat = FakeChat(["Correct.", "Incorrect, 1903 was Physics", "correct", "Unsure"])
    judge = SelfVerificationJudge(chat, k=4, seed=10, temperature=0.9)
    with ledger_scope() as ledger:
        assert judge.score("Year of Curie's Chemistry prize?", "1911") == 0.5
    assert judge.last_verdicts_ == [True, False, True, None] and judge.unparsable_ == 1
    assert [c[1]["seed"] for c in chat.calls] == [10, 11, 12, 13] and len(ledger) == 4
    assert "AI Generated Answer: 1911" in chat.calls[0][0][0][1]


async def test_consistency_agreement_sync_and_async():
    judge = ConsistencyJudge(FakeChat(["Paris.", "paris", "Lyon", "The Paris", "Nice"]), k=5)
    assert judge.score("Capital of France?", "Paris") == pytest.approx(0.6)
    choice = ConsistencyJudge(FakeChat(["B)", "B", "C"]), k=3, mode="choice")
    assert await choice.ascore("Which?", "B") == pytest.approx(2 / 3)
    majority = ConsistencyJudge(FakeChat(["C", "C", "C"]), k=3, mode="choice", reference="majority")
    assert majority.score("Which?", "B") == pytest.approx(0.75)


# ------------------------------------------------------------------------------------------ calibration
def test_calibration_hits_the_target_escalation_rate():
    scores = np.random.default_rng(0).random(2000)
    for target in (0.05, 0.2, 0.5, 0.9):
        assert escalation_rate(scores, threshold_for_escalation(scores, target)) == pytest.approx(target, abs=1e-3)
    judge = TokenMarginJudge()
    t = judge.calibrate(scores, target_escalation=0.3)
    assert judge.threshold == t and escalation_rate(scores, t) == pytest.approx(0.3, abs=1e-3)


def test_calibration_to_a_budget_keeps_the_mean_cost_under_it():
    rng = np.random.default_rng(1)
    scores, extra = rng.random(500), rng.uniform(0.5, 1.5, 500)
    t = threshold_for_budget(scores, budget=0.6, accept_cost=0.1, escalate_cost=extra)
    cost = 0.1 + np.mean((scores < t) * extra)
    assert cost <= 0.6 and 0.1 + np.mean((scores < np.nextafter(t, 2)) * extra) > 0.6 - 1e-2
    with pytest.raises(InvalidInputError, match="budget"):
        threshold_for_budget(scores, budget=0.05, accept_cost=0.1)
    with pytest.raises(InvalidInputError):
        TokenMarginJudge().calibrate(scores)


# ------------------------------------------------------------------------------------ the trained scorer
TOPICS = ["physics", "history", "cooking", "football", "poetry", "chemistry", "music"]


def _agreement_rows(n: int = 600, seed: int = 0):
    """A weak model right 60 % of the time; when it agrees with the earlier model it is right 90 %."""
    rng = np.random.default_rng(seed)
    queries, answers, labels, previous = [], [], [], []
    for i in range(n):
        truth = "ABCD"[i % 4]
        agree = rng.random() < 0.5
        right = rng.random() < (0.9 if agree else 0.3)
        answer = truth if right else "ABCD"[(i + 1) % 4]
        earlier = answer if agree else "ABCD"[(i + 2) % 4]
        queries.append(f"a question about {TOPICS[i % 7]} and {TOPICS[(3 * i) % 5]}")
        answers.append(answer)
        labels.append(float(right))
        previous.append([("cheap", earlier)])
    return queries, answers, labels, previous


def test_answer_scorer_learns_agreement_and_round_trips(tmp_path):
    q, a, y, prev = _agreement_rows()
    judge = AnswerScorerJudge(min_rows=20).fit(q[:400], a[:400], y[:400], candidates=["weak"] * 400,
                                               previous=prev[:400])
    assert judge.mode_ == "choice"
    scores = judge.score_batch(q[400:], a[400:], candidates=["weak"] * 200, previous=prev[400:])
    agree = np.array([p[0][1] == ans for p, ans in zip(prev[400:], a[400:])])
    assert scores[agree].mean() > 0.75 > 0.45 > scores[~agree].mean()
    path = judge.save(tmp_path / "scorer")
    loaded = AnswerScorerJudge.load(path)
    again = loaded.score_batch(q[400:], a[400:], candidates=["weak"] * 200, previous=prev[400:])
    np.testing.assert_allclose(again, scores, rtol=1e-6)
    assert loaded.score(q[400], a[400], candidate="weak", previous=prev[400]) == pytest.approx(scores[0])


def test_answer_scorer_errors_and_records_its_compute():
    with pytest.raises(NotFittedError):
        AnswerScorerJudge().score("q", "a")
    with pytest.raises(InvalidInputError, match="both classes"):
        AnswerScorerJudge().fit(["a", "b"], ["x", "y"], [1.0, 1.0])
    q, a, y, prev = _agreement_rows(200)
    judge = AnswerScorerJudge(featurizer="none").fit(q, a, y, previous=prev)
    with ledger_scope() as ledger:
        judge.score(q[0], a[0], previous=prev[0])
    assert ledger.entries[0].stage == "judge" and ledger.entries[0].cost_usd == 0.0


def test_answer_scorer_rejects_a_corrupt_file(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CorruptStateError):
        AnswerScorerJudge.load(bad)


def test_judge_validates_inputs_and_scores():
    with pytest.raises(InvalidInputError, match="query"):
        TokenMarginJudge().score("  ", "x", generation=Completion("x", tokens=("x",), token_logprobs=(-0.1,)))
    judge = VerbalizedConfidenceJudge(lambda p: "Confidence: 50", model="m", pricing=Pricing(input_per_mtok=0,
                                                                                             output_per_mtok=0))
    with ledger_scope(CostLedger()):
        assert judge.score_batch(["a?", "b?"], ["1", "2"]).tolist() == [0.5, 0.5]
    with pytest.raises(InvalidInputError, match="answers"):
        judge.score_batch(["a?"], ["1", "2"])
