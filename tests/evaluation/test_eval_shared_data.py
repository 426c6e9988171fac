"""Checks on the real shared data (skipped, with a message, when ../shared/data is missing).

RouteLLM MMLU after decontamination: 14,037 rows, Mixtral 68.09 %, GPT-4 80.59 %, a perfect router 85.87 %;
the oracle's CPT(50 %) is 6.25 % and a random router's APGR is 0.50 +- 0.03.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rag_routing.evaluation.benchmark import load_split, run_benchmark
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders import load_dataset
from rag_routing.evaluation.scorecard import Reference, evaluate_router
from rag_routing.routers.baselines import OracleRouter, RandomRouter

pytestmark = pytest.mark.slow

SHARED = Path(os.environ.get("RAG_ROUTING_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found at {path}; set RAG_ROUTING_SHARED_DATA to run this test")
    return path


@pytest.fixture(scope="module")
def mmlu() -> RoutingDataset:
    return load_dataset(shared("routellm", "mmlu", "responses"))


def test_mmlu_is_decontaminated_with_routellm_accuracies(mmlu):
    assert len(mmlu) == 14_037
    assert mmlu.candidates == [WEAK, STRONG]
    assert 100 * mmlu.mean_quality() == pytest.approx([68.09, 80.59], abs=0.005)
    assert 100 * np.nanmax(mmlu.quality, axis=1).mean() == pytest.approx(85.87, abs=0.005)
    assert "price table" in mmlu.cost_source


def test_oracle_cpt50_is_6_25_percent(mmlu):
    ref = Reference.from_test(mmlu)
    result = evaluate_router(OracleRouter().fit(mmlu), mmlu, ref, kind="baseline")
    assert 100 * result.cpt["50"] == pytest.approx(6.25, abs=0.01)


def test_random_router_apgr_is_one_half(mmlu):
    ref = Reference.from_test(mmlu)
    values = [evaluate_router(RandomRouter(seed=s).fit(mmlu), mmlu, ref).apgr for s in range(5)]
    assert all(v == pytest.approx(0.5, abs=0.03) for v in values), values
    cpt50 = [evaluate_router(RandomRouter(seed=s).fit(mmlu), mmlu, ref).cpt["50"] for s in range(2)]
    assert all(v == pytest.approx(0.5, abs=0.06) for v in cpt50)


def test_mt_bench_has_72_questions_after_decontamination():
    ds = load_dataset(shared("routellm", "mt_bench"))
    assert len(ds) == 72 and sorted(ds.candidates) == sorted([WEAK, STRONG])
    assert np.isfinite(ds.quality).all() and (ds.quality <= 1).all()
    assert ds.responses is not None and all(all(r) for r in ds.responses)


@pytest.mark.parametrize("task, n_train, n_test", [("arc_challenge", 1039, 445), ("winograde", None, 380)])
def test_routerbench_train_test(task, n_train, n_test):
    train, test = load_split(train=shared("routerbench", f"{task}_train.csv"),
                             test=shared("routerbench", f"{task}_test.csv"))
    assert len(test) == n_test and train.n_candidates == 11 and train.cost_source.startswith("file")
    if n_train is not None:
        assert len(train) == n_train
    assert len(set(test.queries)) == len(test)                     # the shared few-shot prefix is cut
    assert all(len(q) < len(m["prompt"]) for q, m in zip(test.queries, test.metadata))
    report = run_benchmark(train, test, progress=False)
    oracle, best = report.result("oracle"), report.result("best")
    assert oracle.aiq > report.zero_router_aiq and oracle.saving_vs_best_single > 0.5
    assert best.max_quality == pytest.approx(report.result(report.best_single).max_quality, abs=0.05)


@pytest.mark.parametrize("task", ["mmlu", "cmmlu", "arc_challenge", "arc_easy", "humaneval"])
def test_routerdc7_loads_and_benchmarks(task):
    train, test = load_split(train=shared("routerdc7", f"{task}_train.json"),
                             test=shared("routerdc7", f"{task}_test.json"))
    assert train.n_candidates == 7 and np.isfinite(train.cost).all()
    report = run_benchmark(train, test, progress=False, n_lambdas=20)
    assert report.result("oracle").max_quality >= report.result(report.best_single).max_quality
