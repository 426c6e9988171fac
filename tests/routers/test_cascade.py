"""Cascades online (fake paid APIs, the real local model) and offline (recorded answers): escalation, budgets
refused before the call, the shared rule in the multi-choice cascade, replay costs, save/load."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_judges import FakeChat

from rag_routing.candidates import Candidate, Pricing
from rag_routing.decision import select
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.ledger import Budget, ledger_scope
from rag_routing.routers.base import load_router
from rag_routing.routers.cascade import CascadeRouter, cost_quality_front
from rag_routing.routers.judges import (
    Judge,
    LLMClient,
    TokenMarginJudge,
    VerbalizedConfidenceJudge,
)
from rag_routing.routers.multi_cascade import MultiChoiceCascade
from rag_routing.routers.registry import register_router


def sure(token: str) -> list:
    return [(token, -0.01, [(token, -0.01), ("X", -6.0)])]


def unsure(token: str) -> list:
    return [(token, -0.69, [(token, -0.69), ("X", -0.72)])]


def chat(reply: str, logprobs: list, model: str = "gpt-4o-mini") -> FakeChat:
    fake = FakeChat(reply, logprobs=logprobs)
    fake.model_name = model
    return fake


class ScriptedJudge(Judge):
    """A real Judge whose scores are given per answer (the thing under test is the cascade, not the judge)."""

    name = "scripted"

    def __init__(self, scores: dict[str, float], threshold: float = 0.5):
        super().__init__(threshold=threshold)
        self.scores = scores

    def _score(self, item):
        return self.scores[item.answer]


# ----------------------------------------------------------------------------------------------- online
def test_an_unsure_cheap_answer_escalates_and_every_attempt_is_recorded():
    cheap, strong = chat("B", unsure("B")), chat("C", sure("C"), model="gpt-4o")
    cascade = CascadeRouter([("cheap", cheap), ("strong", strong)], judge=TokenMarginJudge(threshold=0.5))
    with ledger_scope() as ledger:
        result = cascade.invoke("Which option?")
    assert (result.answer, result.candidate) == ("C", "strong") and "last candidate" in result.reason
    assert [a.candidate for a in result.attempts] == ["cheap", "strong"]
    assert result.attempts[0].score < 0.5 and result.attempts[1].score is None
    assert {e.decision_id for e in ledger.entries} == {result.decision_id}
    assert [e.component for e in ledger.entries] == ["cheap", "strong"]
    assert result.cost_usd == pytest.approx(ledger.totals()["cost_usd"]) and result.cost_usd > 0
    assert cheap.calls[0][1]["logprobs"] is True  # the token-margin judge needs them; reading them is free


def test_a_sure_cheap_answer_is_accepted_and_the_strong_model_never_runs():
    cheap, strong = chat("B", sure("B")), chat("C", sure("C"), model="gpt-4o")
    result = CascadeRouter([("cheap", cheap), ("strong", strong)], judge=TokenMarginJudge()).invoke("Which?")
    assert result.candidate == "cheap" and result.attempts[0].accepted and strong.calls == []
    assert result.reason.startswith("accepted 'cheap'")


def test_the_ledger_budget_refuses_the_next_step_before_the_call():
    cheap, strong = chat("B", unsure("B")), chat("C", sure("C"), model="gpt-4o")
    cascade = CascadeRouter([("cheap", cheap), ("strong", strong)], judge=TokenMarginJudge(), max_tokens=64)
    messages = [{"role": "user", "content": "Which option?"}]
    affordable = LLMClient(cheap).estimate_usd(messages, 64) * 1.5
    assert affordable < LLMClient(strong).estimate_usd(messages, 64)
    with ledger_scope(budget=Budget(max_usd=affordable)) as ledger:
        result = cascade.invoke("Which option?")
    assert strong.calls == [] and result.stopped_by_budget and result.reason.startswith("budget:")
    assert "'strong'" in result.reason and (result.answer, result.candidate) == ("B", "cheap")
    assert not ledger.budget.exceeded and len(ledger) == 1


def test_the_per_query_budget_of_the_router_also_stops_it():
    cheap, strong = chat("B", unsure("B")), chat("C", sure("C"), model="gpt-4o")
    cascade = CascadeRouter([("cheap", cheap), ("strong", strong)], judge=TokenMarginJudge(), budget=1e-5)
    result = cascade.invoke("Which option?")
    assert strong.calls == [] and result.stopped_by_budget and "per-query budget" in result.reason


def test_a_judge_refused_by_the_budget_keeps_the_answer_and_says_why():
    cheap = chat("B", unsure("B"))
    judge = VerbalizedConfidenceJudge(FakeChat("Confidence: 10"), max_tokens=2000)  # an expensive judge call
    cascade = CascadeRouter([("cheap", cheap), ("strong", chat("C", sure("C"), model="gpt-4o"))], judge=judge,
                            max_tokens=16)
    with ledger_scope(budget=Budget(max_usd=1e-4)):
        result = cascade.invoke("Which option?")
    assert result.stopped_by_budget and "the judge of 'cheap'" in result.reason
    assert result.answer == "B" and result.attempts[0].score is None


async def test_sync_and_async_give_the_same_cascade():
    def build() -> CascadeRouter:
        return CascadeRouter([Candidate(name="cheap", target=chat("B", unsure("B"))),
                              Candidate(name="strong", target=chat("C", sure("C"), model="gpt-4o"))],
                             judge=TokenMarginJudge())

    sync, asynchronous = build().invoke("Which?"), await build().ainvoke("Which?")
    assert [(a.candidate, a.answer, a.score) for a in sync.attempts] == \
        [(a.candidate, a.answer, a.score) for a in asynchronous.attempts]
    assert sync.cost_usd == pytest.approx(asynchronous.cost_usd)


def test_online_inputs_are_checked():
    with pytest.raises(InvalidInputError, match="live candidates"):
        CascadeRouter(judge=TokenMarginJudge()).invoke("q")
    with pytest.raises(InvalidInputError, match="judge"):
        CascadeRouter([("a", chat("x", sure("x")))]).invoke("q")
    with pytest.raises(InvalidInputError):
        CascadeRouter([("a",)])


def test_multi_choice_picks_each_step_by_the_shared_rule():
    priced = lambda text, usd: Candidate(name=text, target=lambda prompt, t=text: t,  # noqa: E731
                                         pricing=Pricing(input_per_mtok=0.0, output_per_mtok=0.0, per_call=usd))
    candidates = [priced("small", 0.001), priced("mid", 0.004), priced("large", 0.02)]
    quality = {"small": 0.6, "mid": 0.75, "large": 0.9}
    judge = ScriptedJudge({"small": 0.2, "mid": 0.8, "large": 0.95})
    # λ = 0: the best quality first, then nothing beats its answer
    result = MultiChoiceCascade(candidates, judge=judge, quality=quality, lam=0.0).invoke("q")
    assert [a.candidate for a in result.attempts] == ["large"] and result.reason.startswith("stop:")
    # λ = 60: small first (0.6 - 0.06 beats 0.75 - 0.24 and 0.9 - 1.2); after its 0.2 the rule compares
    # stopping (0.2) with mid and large, exactly as select() does
    cascade = MultiChoiceCascade(candidates, judge=judge, quality=quality, lam=60.0)
    result = cascade.invoke("q")
    C = np.array([[0.0, 0.001, 0.004, 0.02]])
    first = int(select(np.array([[-1e9, 0.6, 0.75, 0.9]]), C, 60.0)[0])
    second = int(select(np.array([[0.2, -1e9, 0.75, 0.9]]), C * [1, 0, 1, 1], 60.0)[0])
    names = ["stop", "small", "mid", "large"]
    assert [a.candidate for a in result.attempts] == [names[first], names[second]] == ["small", "mid"]
    assert result.reason.startswith("stop:")
    assert result.candidate == "mid"  # the best-judged answer is returned
    # a budget that only pays for the small call
    capped = MultiChoiceCascade(candidates, judge=judge, quality=quality, lam=60.0, budget=0.002).invoke("q")
    assert [a.candidate for a in capped.attempts] == ["small"] and capped.stopped_by_budget


# ---------------------------------------------------------------------------------------------- offline
TOPICS = ["physics", "history", "cooking", "football", "poetry", "chemistry", "music", "law"]


def recorded(n: int = 360, seed: int = 0) -> RoutingDataset:
    """Three models answering 4-option questions; the small ones err together on hard questions."""
    rng = np.random.default_rng(seed)
    names, costs = ["small", "mid", "large"], np.array([0.001, 0.003, 0.02])
    hard = rng.random(n) < 0.4
    p_right = np.where(hard[:, None], [0.3, 0.45, 0.8], [0.85, 0.92, 0.97])
    right = rng.random((n, 3)) < p_right
    truth = rng.integers(0, 4, n)
    wrong = (truth[:, None] + 1 + (rng.random((n, 3)) < 0.3)) % 4
    letters = np.where(right, truth[:, None], wrong)
    responses = [["ABCD"[k] for k in row] for row in letters]
    queries = [f"{'tricky ' if h else ''}question on {TOPICS[i % 8]} and {TOPICS[(5 * i) % 7]}"
               for i, h in enumerate(hard)]
    cost = np.tile(costs, (n, 1)) * rng.uniform(0.8, 1.2, (n, 3))
    return RoutingDataset(queries, names, right.astype(float), cost, responses=responses, name="recorded")


@pytest.fixture
def split():
    return recorded().train_test_split(test_size=0.4, seed=1)


@pytest.fixture
def registered():
    register_router("cascade", CascadeRouter)
    register_router("multi_cascade", MultiChoiceCascade)  # what the lead adds to the built-in registry


def test_offline_cascade_replays_the_costs_of_every_call(split):
    train, test = split
    cascade = CascadeRouter(featurizer="tfidf").fit(train)
    assert cascade.order_[-1] == "large" and set(cascade.order_) <= {"small", "mid", "large"}
    points = cascade.operating_points(test)
    chain = [test.candidate_index(c) for c in cascade.order_]
    assert points.lams[0] == 0.0 and points.lams[-1] > 1.0
    assert points.cost[0] == pytest.approx(test.cost[:, chain[0]].mean())       # everyone accepts the first
    assert points.cost[-1] == pytest.approx(test.cost[:, chain].sum(axis=1).mean())  # nobody accepts early
    assert points.quality[-1] == pytest.approx(test.quality[:, chain[-1]].mean())
    costs, qualities = cascade.cost_quality_points(test)
    np.testing.assert_allclose(costs, points.cost) and np.testing.assert_allclose(qualities, points.quality)
    # trusting the judge pays: some threshold beats the large model's quality per dollar
    large = test.candidate_index("large")
    cheaper = points.cost < test.cost[:, large].mean()
    assert (points.quality[cheaper] >= test.quality[:, large].mean() - 0.05).any()


def test_calibrating_the_cascade_threshold_to_a_budget_or_an_escalation_rate(split):
    train, test = split
    cascade = CascadeRouter(featurizer="tfidf", order=["small", "mid", "large"]).fit(train)
    budget = 0.5 * test.cost[:, test.candidate_index("large")].mean()
    t = cascade.calibrate(test, budget=budget)
    points = cascade.operating_points(test, thresholds=np.array([t]))
    assert cascade.threshold == t and points.cost[0] <= budget
    cascade.calibrate(test, target_escalation=0.3)
    points = cascade.operating_points(test, thresholds=np.array([cascade.threshold]))
    assert (points.choices[0] != test.candidate_index("small")).mean() == pytest.approx(0.3, abs=0.05)
    with pytest.raises(InvalidInputError):
        cascade.calibrate(test, budget=1e-9)


def test_the_cascade_is_not_lambda_sweepable_and_says_so(split):
    train, test = split
    cascade = CascadeRouter(featurizer="tfidf", order=["small", "large"]).fit(train)
    with pytest.raises(InvalidInputError, match="operating_points"):
        cascade.route_indices(test)
    scores = cascade.score(test.select_candidates(["small", "large"]), strong="large", weak="small")
    assert scores.shape == (len(test),) and ((0 <= scores) & (scores <= 1)).all()
    with pytest.raises(InvalidInputError, match="responses"):
        CascadeRouter(featurizer="tfidf").fit(RoutingDataset(["a", "b"], ["x"], [[1.0], [0.0]], [[1.0], [1.0]]))


def test_a_fitted_cascade_round_trips(split, registered, tmp_path):
    train, test = split
    cascade = CascadeRouter(featurizer="tfidf", order=["small", "mid", "large"]).fit(train)
    path = cascade.save(tmp_path / "cascade")
    loaded = load_router(path)
    assert isinstance(loaded, CascadeRouter) and loaded.order_ == cascade.order_
    a, b = cascade.operating_points(test), loaded.operating_points(test)
    np.testing.assert_allclose(a.cost, b.cost) and np.testing.assert_allclose(a.quality, b.quality)


def test_cost_quality_front_keeps_the_efficient_candidates():
    ds = RoutingDataset(["a", "b"], ["cheap", "dominated", "strong"], [[1, 0, 1], [0, 0, 1]],
                        [[1, 2, 9], [1, 2, 9]])
    assert cost_quality_front(ds) == [0, 2]


def test_offline_multi_choice_sweeps_lambda(split):
    train, test = split
    multi = MultiChoiceCascade(featurizer="tfidf", prior=None).fit(train)
    assert multi.order_[-1] == "large" and multi.table_.shape == (len(multi.order_), 4, len(multi.order_))
    points = multi.operating_points(test)
    large = test.candidate_index("large")
    assert points.lams[0] == 0.0
    # λ = 0: every query starts with the best model (and asks another only when its answer looks worse)
    assert points.cost[0] >= test.cost[:, large].mean() - 1e-12
    returned, paid = multi.replay(test, 0.0)
    assert (paid >= test.cost[:, large] - 1e-12).all()
    first = test.candidate_index(multi.order_[0])
    assert points.cost[-1] == pytest.approx(test.cost[:, first].mean())  # huge λ: the cheapest, and stop
    with_prior = MultiChoiceCascade(featurizer="tfidf", prior="cluster").fit(train)
    assert with_prior.prior_router_ is not None and len(with_prior.operating_points(test).cost) == multi.n_lambdas + 1


# --------------------------------------------------------------------------------------- real components
@pytest.mark.slow
def test_an_online_cascade_of_local_models():
    pytest.importorskip("transformers")
    from rag_routing.llms import LocalLLM

    candidates = [("smol-short", LocalLLM(max_new_tokens=6)), ("smol-long", LocalLLM(max_new_tokens=16))]
    cascade = CascadeRouter(candidates, judge=TokenMarginJudge(threshold=0.99), max_tokens=12)
    with ledger_scope() as ledger:
        result = cascade.invoke("What is the capital of France? Answer with one word.")
    assert result.answer and result.attempts[0].score is not None and 0 <= result.attempts[0].score <= 1
    generate = [e for e in ledger.entries if e.stage == "generation"]
    assert {e.decision_id for e in generate} == {result.decision_id} and all(e.cost_usd == 0 for e in generate)
    assert len(generate) == len(result.attempts)


@pytest.mark.slow
def test_routerbench_cascade_beats_every_single_model(shared_data):
    from dataclasses import replace

    from rag_routing.evaluation.loaders.files import read_csv
    from rag_routing.evaluation.loaders.routerbench import load_routerbench, prompt_text
    from rag_routing.evaluation.metrics import aiq
    from rag_routing.evaluation.scorecard import Reference

    def load(path):
        ds = load_routerbench(path)
        header, rows = read_csv(path)
        at = [header.index(f"{c}|model_response") for c in ds.candidates]
        return replace(ds, responses=[[prompt_text(r[j]) if r[j].strip() else None for j in at] for r in rows])

    folder = shared_data / "routerbench"
    train, test = load(folder / "arc_challenge_train.csv"), load(folder / "arc_challenge_test.csv")
    cascade = CascadeRouter(featurizer="tfidf").fit(train)
    points = cascade.operating_points(test)
    ref = Reference.from_test(test)
    singles = [aiq([c], [q], ref.cost_range) for c, q in zip(ref.single_cost, ref.single_quality)]
    assert aiq(points.cost, points.quality, ref.cost_range) > max(singles)
    assert math.isfinite(points.cost.max()) and cascade.order_[-1] == "gpt-4-1106-preview"
