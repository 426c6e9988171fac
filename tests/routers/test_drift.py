"""DriftMonitor: an unseen task raises the label-free alarm and moves decisions to the fallback; in-distribution
traffic does not. The slow test does it on RouterBench (Winogrande -> ARC-Challenge) with MiniLM features."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.routers.drift import DriftMonitor, binomial_tail
from rag_routing.routers.registry import create_router
from rag_routing.routers.support import GuardSettings
from tests.routers.guard_data import CANDIDATES, COST, featurizer, task


@pytest.fixture(scope="module")
def fitted():
    train = task(400, axis=0, seed=0)
    return train, create_router("cluster", featurizer=featurizer()).fit(train)


def prior(train, lam):
    return CANDIDATES[int(np.argmax(np.nanmean(train.quality, axis=0) - lam * COST))]


def stream(ds, size=20):
    for start in range(0, len(ds), size):
        yield ds.subset(range(start, min(start + size, len(ds))))


def test_in_distribution_traffic_raises_no_alarm(fitted):
    train, router = fitted
    monitor = DriftMonitor(router, window=100, switch_to_fallback=True)
    for batch in stream(task(400, axis=0, seed=11)):
        monitor.route(batch, lam=0.0)
    assert not monitor.alarmed and monitor.share_out_of_support <= 0.05
    assert len({d.candidate for d in router.route(task(50, axis=0, seed=12), lam=0.0)}) >= 2


def test_unseen_task_raises_the_alarm_and_switches_to_the_fallback(fitted, caplog):
    train, router = fitted
    seen: list = []
    monitor = DriftMonitor(router, window=100, switch_to_fallback=True, on_alarm=[seen.append])
    try:
        for batch in stream(task(60, axis=0, seed=13)):  # normal traffic first
            monitor.route(batch)
        assert not monitor.alarmed
        with caplog.at_level(logging.WARNING, logger="rag_routing.routers.drift"):
            for batch in stream(task(200, axis=8, seed=14)):  # then a task it never saw; no labels anywhere
                monitor.route(batch)
        assert monitor.alarmed and len(seen) == 1 and seen[0].kind == "support"
        assert seen[0].switched_to_fallback and seen[0].share_out_of_support >= 0.2
        assert "drift alarm" in caplog.text
        # After the alarm even in-distribution queries go to the best fixed candidate, and say why.
        for lam in (0.0, 20.0):
            decisions = router.route(task(30, axis=0, seed=15), lam=lam)
            assert {d.candidate for d in decisions} == {prior(train, lam)}
            assert all(d.metadata["prior_forced"] for d in decisions)
        assert monitor.summary()["fallback_forced"]
    finally:
        monitor.reset()
    assert not monitor.alarmed
    assert len({d.candidate for d in router.route(task(50, axis=0, seed=16), lam=0.0)}) >= 2


def test_alarm_without_switching_keeps_routing(fitted):
    train, router = fitted
    monitor = DriftMonitor(router, window=50)
    monitor.observe_p_values(router.support(task(60, axis=8, seed=17)))
    assert monitor.alarmed and not monitor.alarms[0].switched_to_fallback
    assert not router.guards_.forced


def test_quality_alarm_from_feedback(fitted):
    _, router = fitted
    monitor = DriftMonitor(router, window=200, min_feedback=20, max_shortfall=0.1)
    decisions = monitor.route(task(40, axis=0, seed=18))
    assert not monitor.alarmed  # in support: no support alarm
    for d in decisions:  # answers much worse than predicted
        monitor.feedback(d.decision_id, 0.0)
    assert [a.kind for a in monitor.alarms] == ["quality"]
    assert monitor.alarms[0].details["mean_shortfall"] > 0.1
    assert monitor.feedback("unknown-id", 1.0) is None


def test_binomial_tail():
    assert binomial_tail(0, 10, 0.1) == 1.0 and binomial_tail(11, 10, 0.1) == 0.0
    assert abs(binomial_tail(10, 10, 0.5) - 0.5 ** 10) < 1e-12
    assert abs(binomial_tail(1, 10, 0.1) - (1 - 0.9 ** 10)) < 1e-12


def test_bad_monitor_inputs(fitted):
    _, router = fitted
    with pytest.raises(NotFittedError):
        DriftMonitor(create_router("knn"))
    unguarded = create_router("knn", featurizer=featurizer())
    unguarded.guard_settings = GuardSettings.off()
    with pytest.raises(InvalidInputError):
        DriftMonitor(unguarded.fit(task(50, axis=0, seed=1)))
    with pytest.raises(InvalidInputError):
        DriftMonitor(router, window=1)


@pytest.mark.slow
def test_routerbench_unseen_task_drives_alarm_and_fallback(shared_data):
    """kNN on MiniLM features trained on 300 Winogrande questions: 100 Winogrande test questions raise nothing,
    100 ARC-Challenge questions (a task it never saw) raise the alarm and go to the best fixed candidate."""
    from rag_routing.evaluation.loaders import load_dataset

    folder = shared_data / "routerbench"
    train = load_dataset(folder / "winograde_train.csv").subset(range(300))
    same = load_dataset(folder / "winograde_test.csv").subset(range(100))
    other = load_dataset(folder / "arc_challenge_test.csv").subset(range(100))
    router = create_router("knn", k=20).fit(train)
    assert router.out_of_support(same).mean() <= 0.05
    assert router.out_of_support(other).mean() >= 0.5
    monitor = DriftMonitor(router, window=100, switch_to_fallback=True)
    for batch in stream(same, 25):
        monitor.route(batch)
    assert not monitor.alarmed
    decisions = []
    for batch in stream(other, 25):
        decisions += monitor.route(batch)
    assert monitor.alarmed and monitor.alarms[0].kind == "support"
    best = train.candidates[int(np.argmax(np.nan_to_num(train.mean_quality())))]
    out = [d for d in decisions if d.metadata["out_of_support"]]
    assert out and all(d.candidate == best for d in out)
    assert {d.candidate for d in router.route(same.subset(range(20)))} == {best}  # forced after the alarm
