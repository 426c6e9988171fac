"""Cascades under shift: judge drift against calibration (offline and online) falls back to the best fixed
candidate; a cascade never pays past the priciest path for a worse answer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_cascade import ScriptedJudge, chat, recorded, sure, unsure

from rag_routing.routers.base import load_router
from rag_routing.routers.cascade import CascadeRouter
from rag_routing.routers.cascade_guard import (
    JudgeCalibration,
    fixed_candidate,
    keep_strongest,
    path_cap,
    shape_test,
)
from rag_routing.routers.multi_cascade import MultiChoiceCascade
from rag_routing.routers.registry import register_router


@pytest.fixture(scope="module")
def data():
    train, test = recorded(600, seed=0).train_test_split(test_size=0.4, seed=1)
    return train, test


def unseen_task(ds):
    """The same recorded answers to questions of a task the cascade never saw (its judge reads the query)."""
    return replace(ds, queries=[f"translate sentence number {i} into german please" for i in range(len(ds))])


def test_judge_calibration_flags_shift_not_noise():
    rng = np.random.default_rng(0)
    cal = JudgeCalibration(rng.beta(5, 2, 600), threshold=0.5)
    assert not cal.check(rng.beta(5, 2, 300)).drifted
    assert not cal.check(rng.beta(2, 5, 10)).drifted  # too few live scores to say
    drift = cal.check(rng.beta(2, 5, 300))
    assert drift.drifted and drift.acceptance_live < 0.5 < drift.acceptance_calibration and "judge" in drift.reason
    confident = JudgeCalibration(rng.beta(5, 2, 600), 0.5, in_sample=np.clip(rng.beta(5, 2, 600) + 0.2, 0, 1))
    assert confident.shape_gap > cal.shape_gap  # a judge confident on its own training rows is not drift
    again = JudgeCalibration.from_state(*confident.get_state())
    assert again.shape_gap == confident.shape_gap and np.array_equal(again.scores, confident.scores)
    assert shape_test(np.full(50, 0.97), np.full(50, 0.99)) == (0.0, 1.0)  # same bin: nothing moved


def test_keep_strongest_and_caps():
    prior = np.array([0.5, 0.9, 0.7])
    called = np.array([[True, True, False], [True, False, True], [True, False, False]])
    assert keep_strongest(called, np.array([0, 2, 0]), prior).tolist() == [1, 2, 0]
    assert path_cap(np.array([0.001, 0.02]), 0.25) == pytest.approx(0.025)
    assert fixed_candidate(prior, np.array([0.001, 0.02, 0.004]), lam=0.0) == 1
    assert fixed_candidate(prior, np.array([0.001, 0.02, 0.004]), lam=100.0) == 0


def test_offline_cascade_falls_back_when_its_judge_drifts(data):
    train, test = data
    cascade = CascadeRouter(featurizer="tfidf").fit(train)
    assert set(cascade.judge_calibration_) == {cascade.order_[0]}
    assert not cascade.judge_drift(test).drifted
    normal = cascade.operating_points(test)
    assert len(normal.lams) > 3 and not cascade.last_judge_drift_.drifted
    shifted = unseen_task(test)
    points = cascade.operating_points(shifted)
    assert cascade.last_judge_drift_.drifted
    prior = np.nanmean(train.quality, axis=0)
    # The fixed policy: one candidate for every query at each λ, starting with the best training-mean one.
    assert (points.choices == points.choices[:, :1]).all()
    assert points.choices[0, 0] == int(np.argmax(prior))
    assert points.cost.max() <= np.nanmax(shifted.cost.mean(axis=0)) + 1e-12


def test_multi_cascade_never_pays_for_a_worse_answer(data):
    train, test = data
    multi = MultiChoiceCascade(featurizer="tfidf", prior=None).fit(train)
    pool = [test.candidate_index(c) for c in multi.order_]
    cap = path_cap(multi.mean_cost_[[multi.candidates_.index(c) for c in multi.order_]], multi.path_slack)
    strongest = pool[int(np.argmax(multi.prior_[[multi.candidates_.index(c) for c in multi.order_]]))]
    for lam in (0.0, 5.0):
        returned, paid = multi.replay(test, lam)
        assert (paid <= cap + np.nanmax(test.cost) * 0.3).all()  # estimates are mean costs; real ones vary ±20 %
        # Whenever the strongest model was paid for, its answer is the one returned.
        paid_strongest = paid >= test.cost[:, strongest] - 1e-12
        assert (returned[paid_strongest & (paid > test.cost[:, strongest] + 1e-12)] == strongest).all()


def test_multi_cascade_judge_drift_and_persistence(data, tmp_path):
    register_router("multi_cascade", MultiChoiceCascade)
    train, test = data
    multi = MultiChoiceCascade(featurizer="tfidf", prior=None).fit(train)
    assert set(multi.judge_calibration_) == set(multi.order_)
    shifted = unseen_task(test)
    multi.operating_points(shifted)
    assert multi.last_judge_drift_.drifted
    loaded = load_router(multi.save(tmp_path / "m.npz"))
    assert set(loaded.judge_calibration_) == set(multi.judge_calibration_)
    assert loaded.judge_drift(shifted).drifted and not loaded.judge_drift(test).drifted


def test_online_cascade_switches_to_the_fixed_candidate_after_judge_drift():
    judge = ScriptedJudge({"B": 0.1, "C": 0.9})
    cheap, strong = chat("B", unsure("B")), chat("C", sure("C"), model="gpt-4o")
    cascade = CascadeRouter([("cheap", cheap), ("strong", strong)], judge=judge)
    # At calibration the judge accepted most cheap answers; live it rejects them all.
    cascade.judge_calibration_ = {"cheap": JudgeCalibration(np.random.default_rng(0).beta(6, 2, 400), 0.5)}
    results = [cascade.invoke(f"question {i}") for i in range(40)]
    assert [a.candidate for a in results[0].attempts] == ["cheap", "strong"]
    assert cascade.live_judge_.drifted
    after = cascade.invoke("one more question")
    assert [a.candidate for a in after.attempts] == ["strong"] and after.answer == "C"
    assert after.reason.startswith("judge drift") and after.attempts[0].score is None


@pytest.mark.slow
def test_routerbench_multi_cascade_judge_drift_across_tasks(shared_data):
    """Trained on Winogrande, the multi-choice cascade's judge drifts on ARC-Challenge (acceptance 54 % against
    94 % at calibration): it falls back to the fixed policy there, and keeps cascading on Winogrande's test."""
    from rag_routing.evaluation.loaders.files import read_csv
    from rag_routing.evaluation.loaders.routerbench import load_routerbench, prompt_text
    from rag_routing.evaluation.metrics import aiq

    def load(path):
        ds = load_routerbench(path)
        header, rows = read_csv(path)
        at = [header.index(f"{c}|model_response") for c in ds.candidates]
        return replace(ds, responses=[[prompt_text(r[j]) if r[j].strip() else None for j in at] for r in rows])

    folder = shared_data / "routerbench"
    train, same, other = (load(folder / f) for f in ("winograde_train.csv", "winograde_test.csv",
                                                        "arc_challenge_test.csv"))
    multi = MultiChoiceCascade(featurizer="tfidf", prior=None).fit(train)
    in_points = multi.operating_points(same)
    assert not multi.last_judge_drift_.drifted
    assert not (in_points.choices == in_points.choices[:, :1]).all()  # per-query choices at some λ
    out_points = multi.operating_points(other)
    assert multi.last_judge_drift_.drifted
    assert (out_points.choices == out_points.choices[:, :1]).all()  # one fixed candidate per λ
    cost_range = (float(np.nanmin(train.mean_cost())), float(np.nanmax(train.mean_cost())))
    best = int(np.argmax(np.nan_to_num(train.mean_quality())))
    assert aiq(out_points.cost, out_points.quality, cost_range) >= 0.9  # the fixed policy on ARC: 0.9107
    assert out_points.quality[0] == pytest.approx(np.nanmean(other.quality[:, best]))
