"""The runner, sweep, scorecard, report and plot on small in-memory and fixture data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.benchmark import BASELINES, load_split, resolve_routers, run_benchmark
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.demo import run_demo, saving_summary
from rag_routing.evaluation.scorecard import Reference, evaluate_router
from rag_routing.evaluation.sweep import fixed_choice, lambda_grid, realised, sweep_router
from rag_routing.routers import registry
from rag_routing.routers.base import Router
from rag_routing.routers.baselines import BestSingleRouter, OracleRouter, RandomRouter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "routing"


class NearestRouter(Router):
    """Test router: the outcomes of the most similar training query (records what ``fit`` received)."""

    name = "test_nearest"
    fits: list[dict] = []

    def _fit(self, features, dataset):
        NearestRouter.fits.append({"model": dataset.embedding_model, "reused": features is dataset.embeddings,
                                   "featurizer": self.featurizer_})
        self.X_, self.Q_ = features, np.nan_to_num(dataset.quality, nan=0.0)

    def _predict_quality(self, features, X):
        return self.Q_[np.argmax(features @ self.X_.T, axis=1)]


@pytest.fixture
def nearest(monkeypatch):
    monkeypatch.setitem(registry._REGISTERED, "test_nearest", NearestRouter)
    NearestRouter.fits = []
    return NearestRouter


# ------------------------------------------------------------------ sweep
def test_lambda_grid_runs_from_quality_only_to_cheapest_only():
    S = np.array([[0.9, 0.5, 0.1], [0.2, 0.8, 0.3]])
    C = np.array([[1.0, 0.1, 0.01], [1.0, 0.1, 0.01]])
    grid = lambda_grid(S, C, n=50)
    assert grid[0] == 0.0 and np.all(np.diff(grid) > 0)
    from rag_routing.decision import select

    assert select(S, C, grid[0]).tolist() == [0, 1]
    assert select(S, C, grid[-1]).tolist() == [2, 2]
    assert lambda_grid(S, np.ones_like(C)).tolist() == [0.0]        # equal costs: λ changes nothing


def test_realised_leaves_unknown_outcomes_out():
    ds = RoutingDataset(["a", "b"], ["x", "y"], np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([[1.0, 2.0]] * 2))
    cost, quality = realised(ds, np.array([[0, 0], [1, 1]]))
    assert quality.tolist() == [0.0, 1.0] and cost.tolist() == [1.0, 2.0]
    assert fixed_choice(ds, 1).quality.tolist() == [1.0]


def test_sweep_respects_routers_that_override_route_indices(toy_dataset):
    best = BestSingleRouter().fit(toy_dataset)
    points = sweep_router(best, toy_dataset)
    assert (points.choices == 1).all()                              # "large" at every λ
    oracle = sweep_router(OracleRouter().fit(toy_dataset), toy_dataset)
    assert oracle.quality[0] == 1.0 and oracle.cost[0] == pytest.approx((20 * 0.02 + 20 * 0.001) / 40)
    assert oracle.cost[-1] == pytest.approx(0.001)                  # large λ: the cheapest only


# ------------------------------------------------------------------ scorecard
def test_reference_picks_best_single_strong_and_weak():
    ds = RoutingDataset(["a", "b"], ["cheap", "dear"], np.array([[1.0, 1.0], [0.0, 0.0]]),
                        np.array([[1.0, 5.0], [1.0, 5.0]]))
    ref = Reference.from_test(ds)
    assert ref.best_single == "cheap"                               # tie on quality: the cheaper
    assert (ref.strong, ref.weak) == ("dear", "cheap")
    assert ref.cost_range == (1.0, 5.0)


def test_oracle_and_random_on_the_toy_set(toy_dataset):
    ref = Reference.from_test(toy_dataset)
    oracle = evaluate_router(OracleRouter().fit(toy_dataset), toy_dataset, ref, kind="baseline")
    assert oracle.max_quality == 1.0
    # Best single = "large" (quality 1, cost 0.02); the oracle reaches 1.0 at the mean of 0.02 and 0.001.
    assert oracle.cost_at_best_single_quality == pytest.approx(0.0105)
    assert oracle.saving_vs_best_single == pytest.approx(1 - 0.0105 / 0.02)      # a fraction, not %
    # Weak = 0.5, strong = 1.0, oracle curve: 50 % strong calls already give 1.0.
    assert oracle.apgr == pytest.approx(0.75, abs=0.06)
    assert oracle.cpt["50"] == pytest.approx(0.25, abs=0.05)
    best = evaluate_router(BestSingleRouter().fit(toy_dataset), toy_dataset, ref)
    assert best.apgr is None and best.cpt is None                   # a fixed choice has no threshold curve
    assert best.saving_vs_best_single == pytest.approx(0.0)
    rnd = evaluate_router(RandomRouter(seed=1).fit(toy_dataset), toy_dataset, ref)
    assert 0.0 < rnd.apgr < 1.0 and set(rnd.cpt) == {"20", "50", "80"}


# ------------------------------------------------------------------ runner
def test_baselines_and_single_candidates_always_in_the_table(toy_dataset):
    train, test = toy_dataset.train_test_split(0.5, seed=0)
    report = run_benchmark(train, test, progress=False)
    assert [r.router for r in report.results] == [*BASELINES, "small", "large"]
    assert [r.kind for r in report.results] == ["baseline"] * len(BASELINES) + ["single"] * 2
    assert report.embedder is None and "featurize" not in report.seconds   # baselines need no features
    assert (report.strong, report.weak, report.best_single) == ("large", "small", "large")
    table = report.table()
    assert "oracle" in table and "= small" in table and "APGR" in table


def test_features_are_computed_once_and_reused(toy_dataset, nearest):
    train, test = toy_dataset.train_test_split(0.5, seed=0)
    report = run_benchmark(train, test, ["test_nearest"], embedder="tfidf", progress=False)
    assert report.results[0].router == "test_nearest" and report.results[0].kind == "router"
    (fit,) = nearest.fits
    assert fit["reused"] and fit["model"] == report.embedder and report.embedder.startswith("tfidf")
    assert fit["featurizer"].components_ is not None                 # the shared, fitted featurizer
    row = report.result("test_nearest")
    assert row.max_quality == 1.0                                     # the groups are trivially separable
    assert row.apgr == pytest.approx(report.result("oracle").apgr)


def test_router_objects_can_be_passed(toy_dataset):
    train, test = toy_dataset.train_test_split(0.5, seed=0)
    report = run_benchmark(train, test, [RandomRouter(seed=3)], progress=False)
    assert [r.router for r in report.results][:2] == ["random", "oracle"]
    assert report.results[0].kind == "router"


def test_unknown_or_unimportable_router_fails_before_any_work(toy_dataset, monkeypatch):
    with pytest.raises(InvalidInputError, match="unknown router 'nope'"):
        resolve_routers(["nope"])
    monkeypatch.setitem(registry._BUILTIN, "ghost", "rag_routing.routers.no_such_module:Ghost")
    with pytest.raises(InvalidInputError, match="cannot be imported"):
        run_benchmark(toy_dataset, toy_dataset, ["ghost"], progress=False)
    assert resolve_routers(["random", " ", "random"]) == ["random", "oracle", "best", "fixed", "cheapest"]


def test_all_expands_to_every_registered_router(monkeypatch):
    monkeypatch.setattr(registry, "_BUILTIN", {b: registry._BUILTIN[b] for b in BASELINES})
    monkeypatch.setattr(registry, "_REGISTERED", {"test_nearest": NearestRouter})
    assert resolve_routers(["all"]) == ["test_nearest", *BASELINES]


def test_load_split_variants():
    train, test = load_split(FIXTURES / "routerbench_train.csv", test_size=0.25, seed=1)
    assert (len(train), len(test)) == (9, 3)
    train, test = load_split(train=FIXTURES / "routerbench_train.csv", test=FIXTURES / "routerbench_test.csv")
    assert (len(train), len(test)) == (12, 8) and train.candidates == test.candidates
    with pytest.raises(InvalidInputError, match="either DATA"):
        load_split(FIXTURES / "routerbench_train.csv", train=FIXTURES / "routerbench_train.csv")
    with pytest.raises(InvalidInputError, match="no data"):
        load_split()


def test_report_json_and_plots(tmp_path, nearest):
    train, test = load_split(train=FIXTURES / "routerbench_train.csv", test=FIXTURES / "routerbench_test.csv")
    report = run_benchmark(train, test, ["test_nearest"], embedder="tfidf", progress=False)
    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert {"dataset", "candidates", "n_train", "n_test", "results", "cost_source"} <= set(data)
    row = data["results"][0]
    assert {"router", "aiq", "max_quality", "cost_at_best_single_quality", "saving_vs_best_single"} <= set(row)
    assert row["apgr"] is None and row["cpt"] is None              # three candidates: no RouteLLM metrics
    assert len(data["results"]) == 1 + len(BASELINES) + 3
    pytest.importorskip("matplotlib")
    from rag_routing.evaluation.plots import plot_report

    assert plot_report(report, tmp_path / "r.png").stat().st_size > 1000
    two = run_benchmark(*load_split(FIXTURES / "routellm" / "responses", test_size=0.5), progress=False)
    assert plot_report(two, tmp_path / "two.png").stat().st_size > 1000


def test_demo_needs_the_shared_data(tmp_path, toy_dataset):
    with pytest.raises(InvalidInputError, match="--data"):
        run_demo(tmp_path)
    report = run_benchmark(toy_dataset, toy_dataset, progress=False)
    text = saving_summary(report)
    assert "oracle: large's quality at" in text and "no learned router" in text


@pytest.mark.slow
def test_minilm_embeddings_are_cached_on_disk(toy_dataset, nearest):
    pytest.importorskip("sentence_transformers")
    from rag_routing.embeddings import DEFAULT_EMBEDDING_MODEL, EmbeddingCache, make_featurizer

    train, test = toy_dataset.train_test_split(0.5, seed=0)
    report = run_benchmark(train, test, ["test_nearest"], embedder="minilm", progress=False)
    assert report.embedder == DEFAULT_EMBEDDING_MODEL
    # Under the key of the embedder "minilm" makes (ONNX Runtime's vectors apart from torch's).
    featurizer = make_featurizer("minilm")
    key = getattr(featurizer, "cache_name", DEFAULT_EMBEDDING_MODEL)
    cached = EmbeddingCache().get_many(key, toy_dataset.queries)
    assert all(v is not None for v in cached)
