"""Tests of the supervised routers: matrix factorisation, classifier (domain / complexity / direct), regressor.

Fast: synthetic embeddings attached to the dataset (``PrecomputedFeaturizer``) or the TF-IDF featurizer.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rag_routing.embeddings import PrecomputedFeaturizer
from rag_routing.errors import InvalidInputError, NotFittedError, UnknownCandidateError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import load_router
from rag_routing.routers.registry import get_router_class
from rag_routing.routers.supervised import (
    GENERAL,
    RIDGE_ALPHAS,
    ClassifierRouter,
    MatrixFactorizationRouter,
    QualityRegressor,
)

FEATURE_NAME = "synthetic-6"

# Small, fast settings for every router configuration under test.
CONFIGS = {
    "mf-pointwise": (MatrixFactorizationRouter, {"dim": 8, "max_epochs": 60, "lr": 1e-2}),
    "mf-pairwise": (MatrixFactorizationRouter, {"dim": 8, "objective": "pairwise", "max_epochs": 60, "lr": 1e-2}),
    "classifier-domain": (ClassifierRouter, {"label_key": "group"}),
    "classifier-complexity": (ClassifierRouter, {}),
    "classifier-direct": (ClassifierRouter, {"mode": "direct"}),
    "regressor-ridge": (QualityRegressor, {"model": "ridge"}),
    "regressor-mlp": (QualityRegressor, {"model": "mlp", "hidden": (16,), "max_epochs": 60, "lr": 1e-2}),
}


def make_router(config: str, **overrides):
    klass, params = CONFIGS[config]
    return klass(**{**params, "featurizer": PrecomputedFeaturizer(FEATURE_NAME), **overrides})


def grouped_dataset(n: int = 240, seed: int = 0, missing: float = 0.0) -> RoutingDataset:
    """Two groups split by the sign of the first feature: in group 0 only 'small' is right, in group 1 only
    'large'; 'mid' is never right. Costs: small < mid < large."""
    rng = np.random.default_rng(seed)
    E = rng.normal(size=(n, 6))
    E[:, 0] += np.where(rng.random(n) < 0.5, -2.0, 2.0)
    group = (E[:, 0] > 0).astype(int)
    Q = np.zeros((n, 3))
    Q[:, 0] = group == 0
    Q[:, 2] = group == 1
    if missing:
        Q[rng.random(Q.shape) < missing] = np.nan
    meta = [{"group": f"g{g}"} for g in group]
    ds = RoutingDataset([f"q{i}" for i in range(n)], ["small", "mid", "large"], Q, np.tile([1.0, 2.0, 3.0], (n, 1)),
                        meta, name="grouped")
    return ds.with_embeddings(E, FEATURE_NAME)


@pytest.fixture(scope="module")
def grouped() -> tuple[RoutingDataset, RoutingDataset]:
    return grouped_dataset(seed=0), grouped_dataset(n=120, seed=1)


@pytest.fixture(scope="module")
def fitted(grouped):
    train, _ = grouped
    return {name: make_router(name).fit(train) for name in CONFIGS}


def test_registry_maps_short_names():
    assert get_router_class("mf") is MatrixFactorizationRouter
    assert get_router_class("classifier") is ClassifierRouter
    assert get_router_class("regressor") is QualityRegressor


def test_importing_supervised_does_not_import_torch():
    code = "import sys, rag_routing.routers.supervised; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("config", CONFIGS)
def test_shapes_and_range(config, fitted, grouped):
    _, test = grouped
    S = fitted[config].predict_quality(test)
    assert S.shape == (len(test), 3)
    assert np.isfinite(S).all() and S.min() >= 0.0 and S.max() <= 1.0
    single = fitted[config].predict_quality(test.embeddings[0])
    np.testing.assert_allclose(single, S[:1])


@pytest.mark.parametrize("config", CONFIGS)
def test_routes_each_group_to_its_winner(config, fitted, grouped):
    _, test = grouped
    group = (test.embeddings[:, 0] > 0).astype(int)
    chosen = fitted[config].route_indices(test.embeddings, lam=0.0)
    expected = np.where(group == 0, 0, 2)
    assert (chosen == expected).mean() > 0.9, config


@pytest.mark.parametrize("config", CONFIGS)
def test_save_load_round_trip(config, fitted, grouped, tmp_path):
    _, test = grouped
    path = fitted[config].save(tmp_path / config)
    loaded = load_router(path)
    assert type(loaded) is type(fitted[config])
    assert loaded.get_params() == fitted[config].get_params()
    np.testing.assert_array_equal(loaded.predict_quality(test), fitted[config].predict_quality(test))


@pytest.mark.parametrize("config", CONFIGS)
def test_same_seed_same_model(config, grouped):
    train, test = grouped
    first = make_router(config).fit(train).predict_quality(test)
    again = make_router(config).fit(train).predict_quality(test)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("config", ["mf-pointwise", "regressor-mlp"])
def test_seed_changes_initialisation(config, grouped):
    train, test = grouped
    a = make_router(config, seed=0).fit(train).predict_quality(test)
    b = make_router(config, seed=1).fit(train).predict_quality(test)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("config", CONFIGS)
def test_unknown_outcomes_are_not_zeros(config):
    """'large' is right whenever its outcome is known but unknown on 80 % of queries; 'small' is right 30 % of
    the time. Reading NaN as 0 would rate 'large' at 0.2 and route to 'small'."""
    rng = np.random.default_rng(3)
    n = 400
    E = rng.normal(size=(n, 6))
    Q = np.column_stack([rng.random(n) < 0.3, np.ones(n)]).astype(float)
    Q[rng.random(n) < 0.8, 1] = np.nan
    meta = [{"group": "all" if i % 2 else "both"} for i in range(n)]
    ds = RoutingDataset([f"q{i}" for i in range(n)], ["small", "large"], Q, np.tile([1.0, 1.0], (n, 1)),
                        meta).with_embeddings(E, FEATURE_NAME)
    router = make_router(config).fit(ds)
    S = router.predict_quality(E)
    assert (S[:, 1] > S[:, 0]).mean() > 0.9, config
    assert (router.route_indices(E, lam=0.0) == 1).mean() > 0.9


def test_tfidf_featurizer_on_text(toy_dataset):
    for klass, params in [(MatrixFactorizationRouter, {"dim": 8}), (ClassifierRouter, {"label_key": "task"}),
                          (ClassifierRouter, {"mode": "direct"}), (QualityRegressor, {})]:
        router = klass(featurizer="tfidf", **params).fit(toy_dataset)
        S = router.predict_quality(["solve the integral of x^7 times sin(x) dx", "hello, how are you doing today"])
        assert S[0, 1] - S[0, 0] > S[1, 1] - S[1, 0], klass.__name__
        assert router.score(["solve the integral of x^3 times sin(x) dx"], strong="large").shape == (1,)


# ------------------------------------------------------------------ matrix factorisation
def test_mf_pairwise_quality_is_win_rate_against_the_field(fitted, grouped):
    _, test = grouped
    router = fitted["mf-pairwise"]
    S = router.predict_raw_quality(test)
    # mean win probability against the two others: the three rows sum to m/2 = 1.5
    np.testing.assert_allclose(S.sum(axis=1), 1.5, atol=1e-9)
    V = router.candidate_embeddings()
    assert V.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 1.0)


def test_mf_stops_early_on_validation_loss(grouped):
    train, _ = grouped
    router = make_router("mf-pointwise", max_epochs=500, patience=3).fit(train)
    assert router.n_epochs_ < 500


def test_mf_small_fit_is_unchanged_by_the_step_cap():
    """Fitted with the code before ``max_steps`` and the in-place Adam (2 steps an epoch, 200 epochs: 400 steps,
    far under the default cap of 6,000): the same epochs and parameters (to rounding: BLAS may differ)."""
    train = grouped_dataset(seed=0, missing=0.1)
    router = MatrixFactorizationRouter(dim=8, featurizer=PrecomputedFeaturizer(FEATURE_NAME)).fit(train)
    assert router.max_steps == 6000 and router.n_epochs_ == 200
    np.testing.assert_allclose(router.params_["b"], [0.09043176520016578, -4.838590229360759, -0.12082666207586257],
                               rtol=1e-9)
    np.testing.assert_allclose(router.params_["W1"][0, :3], [1.0174725774847295, -0.3070532728086105,
                                                             0.42847183339777123], rtol=1e-9)
    np.testing.assert_allclose(router.predict_raw_quality(train.embeddings[:2]),
                               [[0.9968687521153792, 0.00716669323225316, 0.00439342869676868],
                                [0.9716000500040348, 0.00580013480934971, 0.03105507935856705]], rtol=1e-9)


def count_gradient_steps(router: MatrixFactorizationRouter) -> list[int]:
    """Counts the training loss evaluations (one per gradient step; validation passes ``rng=None``)."""
    calls, loss = [0], router._loss

    def counted(params, E, Y, rows, rng):
        calls[0] += rng is not None
        return loss(params, E, Y, rows, rng)

    router._loss = counted
    return calls


def test_mf_large_fit_stops_at_the_step_cap():
    # 2,000 rows in batches of 2: 900 steps an epoch, and patience never runs out: the default cap of 6,000
    # steps ends the fit in its 7th epoch (200 epochs uncapped: 180,000 steps).
    ds = grouped_dataset(n=2000, seed=3)
    router = make_router("mf-pointwise", dim=4, batch_size=2, patience=200, max_epochs=200)
    steps = count_gradient_steps(router)
    router.fit(ds)
    assert steps[0] == 6000 and router.n_epochs_ == 7
    assert (router.route_indices(ds.embeddings, lam=0.0) != 1).mean() > 0.9  # still learns the groups
    capped = make_router("mf-pointwise", dim=4, batch_size=2, patience=200, max_epochs=3, max_steps=1000)
    steps = count_gradient_steps(capped)
    capped.fit(ds)
    assert steps[0] == 1000 and capped.n_epochs_ == 2  # cut short in its 2nd epoch
    uncapped = make_router("mf-pointwise", dim=4, batch_size=2, patience=200, max_epochs=3, max_steps=None)
    steps = count_gradient_steps(uncapped)
    uncapped.fit(ds)
    assert steps[0] == 2700 and uncapped.n_epochs_ == 3


def textbook_adam(params, loss_fn, train_rows, val_rows, *, lr, weight_decay, batch_size, max_epochs, patience, rng):
    """``train_adam`` as it was before the in-place update (no step cap): the reference for bit-equality."""
    from rag_routing.routers.early_stopping import EarlyStopping

    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    beta1, beta2, eps, step = 0.9, 0.999, 1e-8, 0
    stopper = EarlyStopping(patience, lambda: {k: a.copy() for k, a in params.items()})
    for epoch in range(1, max_epochs + 1):
        order = rng.permutation(train_rows)
        for start in range(0, len(order), batch_size):
            _, grads = loss_fn(params, order[start:start + batch_size], rng)
            step += 1
            for k, g in grads.items():
                if weight_decay and not k.startswith("b"):
                    g = g + weight_decay * params[k]
                m[k] = beta1 * m[k] + (1 - beta1) * g
                v[k] = beta2 * v[k] + (1 - beta2) * g * g
                m_hat, v_hat = m[k] / (1 - beta1**step), v[k] / (1 - beta2**step)
                params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        val_loss, _ = loss_fn(params, val_rows, None)
        if stopper.update(val_loss):
            break
    return {k: a.copy() for k, a in stopper.best_state.items()}, epoch


def test_train_adam_in_place_update_matches_the_textbook_form_to_the_bit():
    from rag_routing.routers.matrix_factorization import train_adam

    data = np.random.default_rng(0)
    X, y = data.normal(size=(300, 5)), data.normal(size=300)

    def loss_fn(p, rows, rng):  # noisy least squares; "W" decays, "b" does not
        noise = rng.normal(0.0, 0.1, (len(rows), 5)) if rng is not None else 0.0
        r = (X[rows] + noise) @ p["W"] + p["b"] - y[rows]
        return float(r @ r / len(rows)), {"W": 2 * (X[rows] + noise).T @ r / len(rows), "b": np.array([2 * r.mean()])}

    start = {"W": data.normal(size=5), "b": np.zeros(1)}
    kw = dict(lr=0.05, weight_decay=0.01, batch_size=16, max_epochs=40, patience=3)
    ref, ref_epochs = textbook_adam({k: a.copy() for k, a in start.items()}, loss_fn, np.arange(250),
                                    np.arange(250, 300), rng=np.random.default_rng(1), **kw)
    for cap in (None, 10**9):
        got, epochs = train_adam(dict(start), loss_fn, np.arange(250), np.arange(250, 300),
                                 rng=np.random.default_rng(1), max_steps=cap, **kw)
        assert epochs == ref_epochs
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k])
    np.testing.assert_array_equal(start["b"], 0.0)  # the caller's arrays are not updated in place


def test_outcomes_outside_unit_interval_are_mapped_back():
    rng = np.random.default_rng(0)
    n = 200
    E = rng.normal(size=(n, 6))
    scores = np.column_stack([np.where(E[:, 0] > 0, 9.0, 2.0), np.full(n, 5.0)])  # judge scores 1-10
    ds = RoutingDataset([f"q{i}" for i in range(n)], ["a", "b"], scores, np.ones((n, 2)))
    ds = ds.with_embeddings(E, FEATURE_NAME)
    for config in ("mf-pointwise", "regressor-ridge", "regressor-mlp"):
        S = make_router(config).fit(ds).predict_quality(E)
        assert S.min() >= 0.0 and S.max() <= 9.0
        assert np.mean((S[:, 0] > S[:, 1]) == (E[:, 0] > 0)) > 0.9, config


# ------------------------------------------------------------------ classifier
def test_entropy_fallback_on_ambiguous_queries(fitted, grouped):
    router = fitted["classifier-domain"]
    clear = np.array([[4.0, 0, 0, 0, 0, 0], [-4.0, 0, 0, 0, 0, 0]])
    ambiguous = np.zeros((1, 6))
    assert router.predict_classes(clear) == ["g1", "g0"]
    assert router.predict_classes(ambiguous) == [GENERAL]
    np.testing.assert_allclose(router.predict_raw_quality(ambiguous)[0], router.general_quality_)
    train, _ = grouped
    np.testing.assert_allclose(router.general_quality_, train.mean_quality())
    never = make_router("classifier-domain", entropy_threshold=1.0).fit(train)
    assert never.predict_classes(ambiguous) != [GENERAL]


def test_class_quality_table_and_experts(fitted):
    router = fitted["classifier-domain"]
    assert router.classes_ == ["g0", "g1"]
    experts = router.class_experts()
    assert experts["g0"] == "small" and experts["g1"] == "large" and GENERAL in experts
    P = router.predict_proba(np.array([[4.0, 0, 0, 0, 0, 0]]))
    np.testing.assert_allclose(router.predict_raw_quality(np.array([[4.0, 0, 0, 0, 0, 0]])), P @ router.class_quality_)


def test_complexity_classes_are_cheapest_right_candidate(fitted):
    router = fitted["classifier-complexity"]
    assert set(router.classes_) <= {"small", "mid", "large"}
    assert {"small", "large"} <= set(router.classes_)


def test_direct_mode_predicts_candidate_probabilities(fitted, grouped):
    _, test = grouped
    router = fitted["classifier-direct"]
    S = router.predict_quality(test)
    np.testing.assert_allclose(S.sum(axis=1), 1.0)
    assert router.classes_ == ["small", "mid", "large"]


def test_right_threshold_labels(grouped):
    train, test = grouped
    soft = RoutingDataset(train.queries, train.candidates, train.quality * 0.6, train.cost, train.metadata)
    soft = soft.with_embeddings(train.embeddings, FEATURE_NAME)
    router = make_router("classifier-direct", right_threshold=0.5).fit(soft)
    group = (test.embeddings[:, 0] > 0).astype(int)
    assert (router.predict_quality(test).argmax(axis=1) == np.where(group == 0, 0, 2)).mean() > 0.9


def test_missing_label_key_is_a_clear_error(grouped):
    train, _ = grouped
    with pytest.raises(InvalidInputError, match="label_key 'subject' is missing"):
        make_router("classifier-domain", label_key="subject").fit(train)


# ------------------------------------------------------------------ regressor
def test_ridge_alpha_auto_and_fixed(grouped):
    train, _ = grouped
    auto = make_router("regressor-ridge").fit(train)
    assert auto.alpha_ in RIDGE_ALPHAS
    fixed = make_router("regressor-ridge", alpha=3.0).fit(train)
    assert fixed.alpha_ == 3.0


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("klass, params", [
    (MatrixFactorizationRouter, {"dim": 0}),
    (MatrixFactorizationRouter, {"objective": "listwise"}),
    (MatrixFactorizationRouter, {"lr": -1.0}),
    (MatrixFactorizationRouter, {"validation_fraction": 0.9}),
    (MatrixFactorizationRouter, {"noise": float("nan")}),
    (MatrixFactorizationRouter, {"max_steps": 0}),
    (MatrixFactorizationRouter, {"max_steps": 2.5}),
    (ClassifierRouter, {"mode": "tree"}),
    (ClassifierRouter, {"C": 0.0}),
    (ClassifierRouter, {"entropy_threshold": 1.5}),
    (ClassifierRouter, {"mode": "direct", "label_key": "subject"}),
    (ClassifierRouter, {"label_key": ""}),
    (QualityRegressor, {"model": "forest"}),
    (QualityRegressor, {"alpha": 0.0}),
    (QualityRegressor, {"alpha": "best"}),
    (QualityRegressor, {"hidden": (0,)}),
    (QualityRegressor, {"max_epochs": 2.5}),
])
def test_bad_hyper_parameters(klass, params):
    with pytest.raises(InvalidInputError):
        klass(**params)


def test_unknown_candidate_and_not_fitted(fitted, grouped):
    _, test = grouped
    with pytest.raises(UnknownCandidateError):
        fitted["mf-pointwise"].score(test, strong="gpt-9")
    with pytest.raises(NotFittedError):
        QualityRegressor().predict_quality(np.zeros((1, 6)))


def test_pairwise_needs_two_candidates(grouped):
    train, _ = grouped
    single = train.select_candidates(["mid"])
    with pytest.raises(InvalidInputError, match="at least 2 candidates"):
        make_router("mf-pairwise").fit(single)


def test_all_unknown_outcomes_is_a_clear_error(grouped):
    train, _ = grouped
    blank = RoutingDataset(train.queries, train.candidates, np.full(train.quality.shape, np.nan), train.cost)
    blank = blank.with_embeddings(train.embeddings, FEATURE_NAME)
    for config in ("mf-pointwise", "regressor-ridge", "classifier-complexity"):
        with pytest.raises(InvalidInputError):
            make_router(config).fit(blank)
