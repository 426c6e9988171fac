"""Off-policy estimators on synthetic logs with a known true value: accuracy, variance, errors."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import rag_routing.evaluation.off_policy as off_policy_module
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.off_policy import LoggedFeedback, RidgeRewardModel, evaluate_policy, target_probabilities


def synthetic(n: int = 3000, d: int = 5, m: int = 3, seed: int = 0):
    """Linear mean rewards, a softmax logging policy; returns logs, target actions and the true value."""
    rng = np.random.default_rng(seed)
    beta = np.random.default_rng(99).standard_normal((m, d))  # the same problem for every seed
    X = rng.standard_normal((n, d))
    mean = X @ beta.T
    logits = X @ np.random.default_rng(98).standard_normal((d, m)) * 0.7
    mu = np.exp(logits - logits.max(axis=1, keepdims=True))
    mu /= mu.sum(axis=1, keepdims=True)
    actions = (mu.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    rewards = mean[np.arange(n), actions] + 0.5 * rng.standard_normal(n)
    logs = LoggedFeedback(X, actions, rewards, mu[np.arange(n), actions], n_actions=m)
    target = mean.argmax(axis=1)
    return logs, target, float(mean[np.arange(n), target].mean())


def test_estimates_match_the_true_value():
    logs, target, truth = synthetic()
    report = evaluate_policy(logs, target)
    for est in (report.ips, report.snips, report.dr, report.dm):
        assert abs(est.value - truth) < max(4 * est.std_error, 0.05), (est, truth)
    assert report.dr.std_error < report.ips.std_error
    assert 0 < report.effective_sample_size < len(logs) and 0 < report.match_rate <= 1
    lo, hi = report.dr.ci95
    assert lo < truth < hi
    assert set(report.to_dict()) >= {"ips", "snips", "dm", "dr", "effective_sample_size"}


def test_doubly_robust_has_lower_variance_than_ips_across_seeds():
    ips, dr = [], []
    for seed in range(20):
        logs, target, truth = synthetic(n=800, seed=seed)
        report = evaluate_policy(logs, target)
        ips.append(report.ips.value - truth)
        dr.append(report.dr.value - truth)
    assert np.var(dr) < 0.5 * np.var(ips)
    assert abs(np.mean(dr)) < 0.05 and abs(np.mean(ips)) < 0.1


def test_policy_forms_agree_and_clipping_and_cross_fitting():
    logs, target, _ = synthetic(n=500)
    onehot = np.eye(3)[target]
    a = evaluate_policy(logs, target)
    b = evaluate_policy(logs, onehot)
    c = evaluate_policy(logs, lambda X: target)
    assert a.dr.value == b.dr.value == c.dr.value
    clipped = evaluate_policy(logs, target, max_weight=2.0)
    assert clipped.max_weight <= 2.0
    crossed = evaluate_policy(logs, target, folds=3, seed=0)
    assert abs(crossed.dr.value - a.dr.value) < 0.2
    np.testing.assert_allclose(target_probabilities(onehot, logs), onehot)


def test_context_free_logs_use_a_mean_reward_model():
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, 4000)
    rewards = np.where(actions == 1, 1.0, 0.2) + 0.1 * rng.standard_normal(4000)
    logs = LoggedFeedback(None, actions, rewards, np.full(4000, 0.5), n_actions=2)
    report = evaluate_policy(logs, np.ones(4000, dtype=int))
    assert report.dm.value == pytest.approx(1.0, abs=0.02) and report.dr.value == pytest.approx(1.0, abs=0.02)
    model = RidgeRewardModel().fit(None, actions, rewards, 3)  # an arm never logged: the overall mean
    assert model.predict(None, 1)[0, 2] == pytest.approx(rewards.mean())


def test_invalid_logs_and_policies():
    X = np.zeros((3, 2))
    with pytest.raises(InvalidInputError, match="propensities"):
        LoggedFeedback(X, [0, 1, 0], [1.0, 0.0, 1.0], [0.5, 0.0, 0.5], n_actions=2)
    with pytest.raises(InvalidInputError, match="indices"):
        LoggedFeedback(X, [0, 2, 0], [1.0, 0.0, 1.0], [0.5, 0.5, 0.5], n_actions=2)
    with pytest.raises(InvalidInputError, match="finite"):
        LoggedFeedback(X, [0, 1, 0], [1.0, np.nan, 1.0], [0.5, 0.5, 0.5], n_actions=2)
    with pytest.raises(InvalidInputError, match="as many"):
        LoggedFeedback(X, [0, 1], [1.0, 0.0, 1.0], [0.5, 0.5, 0.5], n_actions=2)
    logs = LoggedFeedback(X, [0, 1, 0], [1.0, 0.0, 1.0], [0.5, 0.5, 0.5], n_actions=2)
    with pytest.raises(InvalidInputError, match="summing to 1"):
        evaluate_policy(logs, np.ones((3, 2)))
    with pytest.raises(InvalidInputError):
        evaluate_policy(logs, np.array([0, 5, 0]))
    with pytest.raises(InvalidInputError):
        evaluate_policy(logs, np.array([0, 1, 0]), max_weight=0.0)


def test_docstring_example():
    result = doctest.testmod(off_policy_module)
    assert result.failed == 0 and result.attempted > 0
