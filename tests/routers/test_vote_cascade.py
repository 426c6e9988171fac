"""VoteCascade: cheap voters in turn, the strong model only when they disagree — online with fake paid APIs
(ledger, budget refused before the call, sync = async) and offline on recorded answers (chain chosen on train,
replayed costs, calibration, the registry, `bench`, save/load)."""

from __future__ import annotations

import numpy as np
import pytest
from test_judges import FakeChat

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.benchmark import run_benchmark
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.metrics import cost_to_reach
from rag_routing.ledger import Budget, ledger_scope
from rag_routing.routers.base import load_router
from rag_routing.routers.judges import AgreementJudge, LLMClient, TokenMarginJudge
from rag_routing.routers.judges.agreement import weighted_agreement
from rag_routing.routers.registry import create_router
from rag_routing.routers.vote_cascade import VoteCascade


def voter(reply: str, model: str = "gpt-4o-mini") -> FakeChat:
    fake = FakeChat(reply)
    fake.model_name = model
    return fake


def online(first: str, second: str, strong: str = "C", **options) -> tuple[VoteCascade, list[FakeChat]]:
    models = [voter(first), voter(second), voter(strong, model="gpt-4o")]
    judge = AgreementJudge(reliability={"v1": 0.7, "v2": 0.75}, mode="choice")
    return VoteCascade([("v1", models[0]), ("v2", models[1]), ("strong", models[2])], judge=judge,
                       **options), models


# ----------------------------------------------------------------------------------------------- online
def test_two_cheap_models_that_agree_answer_and_the_strong_model_never_runs():
    cascade, (v1, v2, strong) = online("B", "B) oil")
    with ledger_scope() as ledger:
        result = cascade.invoke("Which option? A) water B) oil C) air")
    assert (result.answer, result.candidate) == ("B) oil", "v2") and strong.calls == []
    assert [a.candidate for a in result.attempts] == ["v1", "v2"]
    assert result.attempts[0].score == 0.0 and result.attempts[1].score > 0.8 and result.attempts[1].accepted
    generate = [e for e in ledger.entries if e.stage == "generation"]
    assert [e.component for e in generate] == ["v1", "v2"] and {e.decision_id for e in ledger.entries} == \
        {result.decision_id}
    assert result.cost_usd == pytest.approx(ledger.totals()["cost_usd"]) and result.cost_usd > 0
    assert "logprobs" not in v1.calls[0][1]  # the agreement judge reads answers, not log-probabilities


def test_voters_that_disagree_send_the_question_to_the_strong_model():
    cascade, (v1, v2, strong) = online("A", "B")
    result = cascade.invoke("Which option?")
    assert (result.answer, result.candidate) == ("C", "strong") and len(strong.calls) == 1
    assert result.attempts[1].score < cascade.active_judge.threshold and result.attempts[2].score is None


def test_the_budget_refuses_the_strong_model_before_the_call_and_keeps_the_best_voted_answer():
    cascade, (v1, v2, strong) = online("A", "B", max_tokens=64)
    messages = [{"role": "user", "content": "Which option?"}]
    voters = sum(LLMClient(m).estimate_usd(messages, 64) for m in (v1, v2))
    assert voters * 1.2 < voters + LLMClient(strong).estimate_usd(messages, 64)
    with ledger_scope(budget=Budget(max_usd=voters * 1.2)) as ledger:
        result = cascade.invoke("Which option?")
    assert strong.calls == [] and result.stopped_by_budget and "'strong'" in result.reason
    assert result.candidate == "v2"  # 0.75 outvotes 0.7: the best-judged answer so far
    assert not ledger.budget.exceeded


async def test_sync_and_async_vote_alike():
    sync, _ = online("A", "A")
    asynchronous, _ = online("A", "A")
    a, b = sync.invoke("Which?"), await asynchronous.ainvoke("Which?")
    assert [(x.candidate, x.answer, x.score) for x in a.attempts] == [(x.candidate, x.answer, x.score)
                                                                     for x in b.attempts]


def test_settings_are_checked():
    with pytest.raises(InvalidInputError, match="AgreementJudge"):
        VoteCascade(judge=TokenMarginJudge())
    with pytest.raises(InvalidInputError, match="two voters"):
        VoteCascade([("a", voter("A")), ("b", voter("B"))])
    with pytest.raises(InvalidInputError):
        VoteCascade(max_voters=1)
    with pytest.raises(InvalidInputError):
        VoteCascade(max_voter_cost=0.0)


# ---------------------------------------------------------------------------------------------- offline
NAMES = ["tiny", "small", "mid", "big", "strong"]
COSTS = np.array([0.0005, 0.001, 0.0015, 0.018, 0.02])


def recorded(n: int = 600, seed: int = 0) -> RoutingDataset:
    """Four-option questions; cheap models err mostly independently, so their agreement tells right from wrong."""
    rng = np.random.default_rng(seed)
    p_right = np.array([0.55, 0.65, 0.7, 0.8, 0.9])
    right = rng.random((n, 5)) < p_right
    truth = rng.integers(0, 4, n)
    letters = np.where(right, truth[:, None], (truth[:, None] + rng.integers(1, 4, (n, 5))) % 4)
    responses = [["ABCD"[k] for k in row] for row in letters]
    cost = np.tile(COSTS, (n, 1)) * rng.uniform(0.8, 1.2, (n, 5))
    return RoutingDataset([f"question {i}" for i in range(n)], NAMES, right.astype(float), cost,
                          responses=responses, name="votes")


@pytest.fixture(scope="module")
def split():
    return recorded().train_test_split(test_size=0.4, seed=1)


@pytest.fixture(scope="module")
def fitted(split):
    return VoteCascade().fit(split[0])


def test_fit_chooses_cheap_voters_cheapest_first_and_ends_at_the_best_model(fitted):
    assert fitted.order_[-1] == "strong" and 2 <= len(fitted.order_) - 1 <= 4
    voters = fitted.order_[:-1]
    assert set(voters) <= {"tiny", "small", "mid"} and voters == sorted(voters, key=NAMES.index)  # "big" costs too much
    assert fitted.judge_.mode_ == "choice" and fitted.judge_.reliability_["mid"] > fitted.judge_.reliability_["tiny"]


def test_the_replay_pays_every_call_and_the_vote_reaches_the_strong_quality_for_less(fitted, split):
    test = split[1]
    points = fitted.operating_points(test)
    chain = [test.candidate_index(c) for c in fitted.order_]
    assert points.cost[0] == pytest.approx(test.cost[:, chain[0]].mean())  # threshold 0 keeps the first answer
    assert points.cost[-1] == pytest.approx(test.cost[:, chain].sum(axis=1).mean())
    assert points.quality[-1] == pytest.approx(test.quality[:, chain[-1]].mean())
    strong = test.candidate_index("strong")
    reach = cost_to_reach(points.cost, points.quality, test.quality[:, strong].mean())
    assert reach is not None and reach < 0.8 * test.cost[:, strong].mean()


def test_the_replayed_scores_are_the_judges_own(fitted, split):
    test = split[1]
    scores = fitted.step_scores(test)
    judge = fitted.judge_
    keys = np.array([[judge.key(a) for a in row] for row in test.responses], dtype=str)
    w = judge.weights(test.candidates)
    chain = [test.candidate_index(c) for c in fitted.order_]
    for k, j in enumerate(chain[:-1]):
        expected = weighted_agreement(keys[:, j], np.full(len(test), w[j]), keys[:, chain[:k]],
                                      np.tile(w[chain[:k]], (len(test), 1)))
        np.testing.assert_allclose(scores[:, k], expected)


def test_the_threshold_calibrates_to_a_budget(fitted, split):
    train, test = split
    cascade = VoteCascade().fit(train)
    budget = 0.4 * train.cost[:, train.candidate_index("strong")].mean()
    threshold = cascade.calibrate(train, budget=budget)
    assert cascade.operating_points(test, thresholds=np.array([threshold])).cost[0] <= 1.2 * budget
    assert cascade.active_judge is cascade.judge_ and cascade.threshold == threshold


def test_fit_refuses_data_it_cannot_vote_on(split):
    train = split[0]
    with pytest.raises(InvalidInputError, match="max_voter_cost"):
        VoteCascade(max_voter_cost=0.03).fit(train)  # only "tiny" costs <= 3 % of "strong"
    with pytest.raises(InvalidInputError, match="responses"):
        VoteCascade().fit(RoutingDataset(["a", "b"], ["x", "y", "z"], np.ones((2, 3)), np.ones((2, 3))))
    fixed = VoteCascade(order=["small", "mid", "strong"]).fit(train)
    assert fixed.order_ == ["small", "mid", "strong"]


def test_registry_bench_and_save_load(fitted, split, tmp_path):
    train, test = split
    assert isinstance(create_router("vote_cascade"), VoteCascade)
    report = run_benchmark(train, test, ["vote_cascade"], progress=False)
    row = next(r for r in report.results if r.router == "vote_cascade")
    np.testing.assert_allclose(row.curve["cost"], fitted.operating_points(test).cost)
    loaded = load_router(fitted.save(tmp_path / "vote"))
    assert isinstance(loaded, VoteCascade) and loaded.order_ == fitted.order_
    assert loaded.judge_.reliability_ == fitted.judge_.reliability_
    a, b = fitted.operating_points(test), loaded.operating_points(test)
    np.testing.assert_allclose(a.cost, b.cost) and np.testing.assert_allclose(a.quality, b.quality)


def test_a_cascade_fitted_offline_votes_online_in_its_fitted_order(split):
    free = Pricing(input_per_mtok=0.0, output_per_mtok=0.0)
    models = {name: voter("B") for name in NAMES}
    live = VoteCascade([(name, models[name], free) for name in NAMES]).fit(split[0])
    result = live.invoke("Which option?")
    called = [a.candidate for a in result.attempts]
    assert called == live.order_[:len(called)] and result.attempts[-1].accepted and models["strong"].calls == []
    threshold = live.judge_.threshold
    assert all(a.score < threshold for a in result.attempts[:-1]) and result.attempts[-1].score >= threshold


# --------------------------------------------------------------------------------------- real components
@pytest.mark.slow
def test_routerbench_arc_votes_tell_right_from_wrong_and_beat_every_single_model(shared_data):
    from sklearn.metrics import roc_auc_score

    from rag_routing.evaluation.loaders.routerbench import load_routerbench
    from rag_routing.evaluation.metrics import aiq
    from rag_routing.evaluation.scorecard import Reference

    folder = shared_data / "routerbench"
    train = load_routerbench(folder / "arc_challenge_train.csv")
    test = load_routerbench(folder / "arc_challenge_test.csv")
    cascade = VoteCascade().fit(train)
    assert cascade.order_[-1] == "gpt-4-1106-preview"
    scores = cascade.step_scores(test)
    third = test.candidate_index(cascade.order_[2])
    known = ~np.isnan(test.quality[:, third])
    assert roc_auc_score(test.quality[known, third], scores[known, 2]) > 0.75
    points, ref = cascade.operating_points(test), Reference.from_test(test)
    singles = [aiq([c], [q], ref.cost_range) for c, q in zip(ref.single_cost, ref.single_quality)]
    assert aiq(points.cost, points.quality, ref.cost_range) > max(singles)
