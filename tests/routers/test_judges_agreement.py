"""AgreementJudge: a reliability-weighted vote of the earlier answers of a cascade (Yue et al. 2024, vote variant;
Nitzan and Paroush 1982 weights), learned reliabilities, answer keys, batch scoring, cost, persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.ledger import ledger_scope
from rag_routing.routers.judges import AgreementJudge
from rag_routing.routers.judges.agreement import vote_weight, weighted_agreement


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


RELIABLE = {"small": 0.6, "mid": 0.7, "large": 0.9}


def test_the_score_is_the_weighted_vote_of_the_earlier_answers():
    judge = AgreementJudge(reliability=RELIABLE, mode="choice")
    agree = judge.score("Which?", "B", candidate="mid", previous=[("small", "B"), ("large", "B")])
    assert agree == pytest.approx(sigmoid(logit(0.7) + logit(0.6) + logit(0.9)))
    split = judge.score("Which?", "B", candidate="mid", previous=[("small", "B"), ("large", "C")])
    assert split == pytest.approx(sigmoid(logit(0.7) + logit(0.6) - logit(0.9)))
    assert split < 0.5 < agree  # the reliable model outvotes the two weaker ones


def test_without_a_second_answer_there_is_no_evidence_and_the_cascade_asks_on():
    judge = AgreementJudge(reliability=RELIABLE, mode="choice")
    assert judge.score("Which?", "B", candidate="large") == 0.0
    # an earlier answer without an option letter abstains: still no second opinion
    assert judge.score("Which?", "B", candidate="large", previous=[("small", "I do not know")]) == 0.0
    # an answer without an option letter is never trusted
    assert judge.score("Which?", "I do not know", candidate="large", previous=[("small", "B")]) == 0.0
    lone = AgreementJudge(reliability=RELIABLE, mode="choice", min_answers=1)
    assert lone.score("Which?", "B", candidate="large") == pytest.approx(0.9)


def test_a_coin_flipping_voter_weighs_nothing_and_unknown_models_get_the_default():
    judge = AgreementJudge(reliability={"coin": 0.4}, default_reliability=0.8, mode="choice")
    assert vote_weight(0.4) == 0.0 and vote_weight(0.5) == 0.0 and vote_weight(1.0) == pytest.approx(math.log(99))
    with_coin = judge.score("q", "A", candidate="new", previous=[("coin", "B"), ("other", "A")])
    assert with_coin == pytest.approx(sigmoid(2 * logit(0.8)))
    np.testing.assert_allclose(judge.weights(["coin", "new", None]), [0.0, logit(0.8), logit(0.8)])


def test_answers_are_compared_by_key_in_choice_text_and_pattern_modes():
    choice = AgreementJudge(mode="choice")
    assert choice.key("(B) oil") == choice.key("B\n") == "B" and choice.key("I do not know") == ""
    text = AgreementJudge(mode="text")
    assert text.score("Tallest tower in Paris?", "The Eiffel Tower.", previous=[("m", "eiffel tower")]) > 0.8
    assert text.score("Tallest tower in Paris?", "The Eiffel Tower.", previous=[("m", "Montparnasse")]) == 0.5
    numbers = AgreementJudge(answer_pattern=r"####\s*(-?\d+)")
    assert numbers.score("2+40?", "so #### 42", previous=[("m", "It is 42.\n#### 42")]) > 0.8
    auto = AgreementJudge()  # unfitted: bare letters are options, anything else is text
    assert auto.score("Which?", "B)", previous=[("m", "B")]) > 0.8
    assert auto.score("Which?", "A grape", previous=[("m", "A cantaloupe")]) == 0.5


def test_fit_learns_smoothed_reliabilities_and_the_answer_mode():
    names = ["a"] * 10 + ["b"] * 10 + ["c"]
    correct = [1.0] * 9 + [0.0] + [1.0] * 5 + [0.0] * 5 + [np.nan]
    judge = AgreementJudge(default_reliability=0.75, prior_strength=4.0).fit(names, correct, ["A"] * 21)
    assert judge.reliability_["a"] == pytest.approx((9 + 3) / 14)
    assert judge.reliability_["b"] == pytest.approx((5 + 3) / 14)
    assert "c" not in judge.reliability_ and judge.mode_ == "choice"
    given = AgreementJudge(reliability={"z": 0.95}).fit(["a", "a"], [1.0, 0.0])
    assert given.reliability_["z"] == 0.95 and given.mode_ is None  # no answers: the mode stays per item


@pytest.mark.parametrize("bad", [
    dict(names=["a", "b"], correct=[1.0]),
    dict(names=["a"], correct=[0.5]),
    dict(names=["a"], correct=[np.nan]),
])
def test_fit_rejects_misaligned_or_non_binary_labels(bad):
    with pytest.raises(InvalidInputError):
        AgreementJudge().fit(bad["names"], bad["correct"])


@pytest.mark.parametrize("kwargs", [dict(mode="letters"), dict(min_answers=0), dict(default_reliability=1.5),
                                    dict(reliability={"a": -0.1}), dict(reliability=[("a", 0.5)]),
                                    dict(prior_strength=-1.0), dict(threshold=float("nan"))])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(InvalidInputError):
        AgreementJudge(**kwargs)


def test_batch_scores_match_one_at_a_time_and_the_vectorised_core():
    rng = np.random.default_rng(0)
    judge = AgreementJudge(reliability=RELIABLE, mode="choice")
    names = ["small", "mid", "large"]
    letters = rng.choice(list("ABC?"), size=(50, 3))
    answers = [["I do" if x == "?" else x for x in row] for row in letters]
    previous = [[(names[j], row[j]) for j in range(k)] for k, row in zip(rng.integers(0, 3, 50), answers)]
    own = [row[len(p)] for row, p in zip(answers, previous)]
    who = [names[len(p)] for p in previous]
    batch = judge.score_batch(["q"] * 50, own, candidates=who, previous=previous)
    single = [judge.score("q", a, candidate=c, previous=p) for a, c, p in zip(own, who, previous)]
    np.testing.assert_allclose(batch, single)
    keys = np.where(letters == "?", "", letters)
    w = judge.weights(names)
    k = np.array([len(p) for p in previous])
    core = [weighted_agreement(keys[i:i + 1, k[i]], w[k[i]:k[i] + 1], keys[i:i + 1, :k[i]], w[None, :k[i]])[0]
            for i in range(50)]
    np.testing.assert_allclose(batch, core)


def test_the_judge_is_free_and_records_its_compute_in_the_ledger():
    judge = AgreementJudge(mode="choice")
    with ledger_scope() as ledger:
        judge.score("q", "A", previous=[("m", "A")])
    (entry,) = ledger.entries
    assert (entry.stage, entry.component, entry.cost_usd) == ("judge", "agreement", 0.0)


def test_the_threshold_calibrates_to_an_escalation_rate():
    judge = AgreementJudge(mode="choice")
    scores = judge.score_batch(["q"] * 4, ["A", "A", "A", "A"],
                               previous=[[], [("m", "B")], [("m", "A")], [("m", "A"), ("n", "A")]])
    judge.calibrate(scores, target_escalation=0.5)
    assert [judge.accepts(s) for s in scores] == [False, False, True, True]


def test_a_fitted_judge_round_trips_and_a_damaged_file_is_refused(tmp_path):
    judge = AgreementJudge(reliability={"given": 0.66}, threshold=0.7).fit(["a", "a", "b"], [1, 0, 1], ["A", "B", "C"])
    loaded = AgreementJudge.load(judge.save(tmp_path / "judge"))
    assert loaded.reliability_ == judge.reliability_ and loaded.reliability == {"given": 0.66}
    assert (loaded.mode_, loaded.threshold, loaded.min_answers) == ("choice", 0.7, 2)
    previous = [("a", "A"), ("given", "B")]
    assert loaded.score("q", "A", candidate="b", previous=previous) == judge.score("q", "A", candidate="b",
                                                                                   previous=previous)
    meta, arrays = judge.get_state()
    with pytest.raises(CorruptStateError):
        AgreementJudge.from_state({**meta, "kind": "judge:answer_scorer"}, arrays)
    with pytest.raises(CorruptStateError):
        AgreementJudge.from_state(meta, {**arrays, "reliability": arrays["reliability"][:1]})
    with pytest.raises(CorruptStateError):
        AgreementJudge.from_state({**meta, "mode_fitted": "letters"}, arrays)
