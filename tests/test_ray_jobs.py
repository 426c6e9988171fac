"""Batch work on Ray (a real local Ray): the same features and the same routing table as one process, and the
workers' LLM calls share one budget in a real redis-server (refused before they run, never overspent); and
``bench --ray`` writes the same JSON as one process and reports a failing router the same way."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from redis_fixture import redis_server_fixture  # noqa: F401

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.answer_scorers import TokenF1Scorer
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.labeling import LABEL_GENERATION_STAGE, RoutingDataBuilder
from rag_routing.ledger import Budget, CostLedger, ledger_scope
from rag_routing.routers.base import Router

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'rag-routing[ray]')")
ray_jobs = pytest.importorskip("rag_routing.ray_jobs")

pytestmark = pytest.mark.slow  # a local Ray takes 10-20 s to start on two cores

PRICE = Pricing(input_per_mtok=1000.0, output_per_mtok=1000.0)  # about a cent a call: budgets bite fast
QUERIES = [f"What is the capital of country number {i}?" for i in range(24)]
REFERENCES = [[f"City {i}"] for i in range(24)]


class FileCountingModel:
    """A deterministic candidate that appends one line to a file per call (counts calls across processes)."""

    def __init__(self, path: Path, answer: str):
        self.path, self.answer = str(path), answer

    def __call__(self, prompt: str) -> str:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("call\n")
        number = prompt.rsplit("number ", 1)[-1].rstrip("?")
        return self.answer.format(number=number)


def calls(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def local_ray():
    # Workers cannot import this test module: send its classes (the counting candidate) by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray_jobs.connect(num_cpus=2)
    yield ray
    ray.shutdown()


def builder(tmp_path: Path, tag: str, executor=None) -> RoutingDataBuilder:
    candidates = {"small": FileCountingModel(tmp_path / f"{tag}-small", "I think City {number}"),
                  "large": FileCountingModel(tmp_path / f"{tag}-large", "City {number}")}
    return RoutingDataBuilder(QUERIES, candidates, TokenF1Scorer(), references=REFERENCES,
                              pricing={"small": PRICE, "large": PRICE}, path=tmp_path / f"{tag}.jsonl",
                              max_tokens=6, executor=executor)


def test_featurize_on_ray_is_identical_to_one_process(local_ray) -> None:
    from rag_routing.embeddings import TfidfFeaturizer

    texts = [f"question {i} about topic {i % 13} and detail {i % 7}" for i in range(5000)]
    tfidf = TfidfFeaturizer(n_components=16).fit(texts[:500])
    on_ray = ray_jobs.featurize_on_ray(texts, tfidf, n_workers=2, chunk_size=700)
    assert on_ray.shape == (5000, 16) and np.array_equal(on_ray, tfidf.transform(texts))
    with pytest.raises(InvalidInputError):
        ray_jobs.featurize_on_ray("not a list", tfidf)
    with pytest.raises(InvalidInputError):
        ray_jobs.featurize_on_ray(texts, object())


def test_labelling_on_ray_gives_the_same_table_and_ledger(local_ray, tmp_path: Path) -> None:
    with ledger_scope() as here:
        local = builder(tmp_path, "local").run(batch_size=10)
    with ledger_scope() as there:
        remote_builder = builder(tmp_path, "ray", ray_jobs.RayCellExecutor(chunk_size=3))
        remote = remote_builder.run(batch_size=10)
    a, b = builder(tmp_path, "local").dataset, remote_builder.dataset  # the local one reloaded from its JSONL
    assert local.labelled == remote.labelled == 48 and remote.stopped == "done"
    assert np.array_equal(a.quality, b.quality) and np.array_equal(a.cost, b.cost)
    assert a.responses == b.responses
    assert len(here) == len(there) == 48
    assert here.totals()["cost_usd"] == pytest.approx(there.totals()["cost_usd"], rel=1e-12)
    assert {e.stage for e in there.entries} == {LABEL_GENERATION_STAGE}


def test_workers_share_one_budget_in_redis_and_refused_calls_never_run(local_ray, tmp_path: Path,
                                                                        redis_server) -> None:
    one_call = builder(tmp_path, "probe").labeler
    with ledger_scope() as probe:
        one_call.generate(QUERIES[0], "large")
    per_call = probe.totals()["cost_usd"]
    limit = 10.5 * per_call  # room for about ten calls (each reserves its estimate first), whichever workers
    factory = ray_jobs.SharedRedisBudget(redis_server.url, key="labels", max_usd=limit)
    labeling = builder(tmp_path, "budget", ray_jobs.RayCellExecutor(chunk_size=2, budget_factory=factory))
    with ledger_scope() as ledger:
        run = labeling.run(batch_size=16)
    spent = factory().spent().usd
    made = calls(tmp_path / "budget-small") + calls(tmp_path / "budget-large")
    assert run.stopped == "budget"
    assert spent <= limit + 1e-12 and 8 <= made <= 10  # refused calls never ran
    assert made == len(ledger)  # every call that ran is in the ledger
    assert ledger.totals()["cost_usd"] == pytest.approx(spent, rel=1e-9)
    with pytest.raises(InvalidInputError, match="budget_factory"):
        with ledger_scope(CostLedger(budget=Budget(max_usd=1.0))):
            builder(tmp_path, "driver-budget", ray_jobs.RayCellExecutor()).run()
    assert "redis://" not in repr(factory)


# -- bench --ray ---------------------------------------------------------------------------------------------------
class BrokenRouter(Router):
    """A router whose fit fails (on whichever process fits it)."""

    name = "broken"

    def _fit(self, features, dataset):
        raise ValueError("the training set has no signal for this router")

    def _predict_quality(self, features, X):  # pragma: no cover - never fitted
        raise AssertionError


def routing_log(tmp_path: Path, n: int = 240) -> Path:
    """A small routing log on disk: three candidates, each best on its own topic, at three prices."""
    from rag_routing.evaluation import write_jsonl

    rng = np.random.default_rng(7)
    topics = ["integral calculus proof", "refund invoice shipping", "poem about the sea"]
    queries = [f"{topics[i % 3]} question {i} detail {rng.integers(1000)}" for i in range(n)]
    skill = np.array([[0.9, 0.3, 0.2], [0.4, 0.8, 0.5], [0.2, 0.6, 0.9]])  # topic x candidate
    quality = (rng.random((n, 3)) < skill[np.arange(n) % 3]).astype(float)
    quality[rng.random((n, 3)) < 0.05] = np.nan  # some unknown outcomes
    cost = np.tile([0.001, 0.004, 0.02], (n, 1)) * rng.uniform(0.8, 1.2, (n, 1))
    ds = RoutingDataset(queries, ["small", "medium", "large"], quality, cost, name="ray-log")
    return write_jsonl(ds, tmp_path / "log.jsonl")


def without_timings(report: dict) -> dict:
    report = dict(report, seconds=None)
    report["results"] = [dict(row, fit_seconds=None, eval_seconds=None) for row in report["results"]]
    return report


def test_bench_on_ray_writes_the_same_json_as_one_process(local_ray, tmp_path: Path, capsys) -> None:
    from rag_routing.cli import main

    data = routing_log(tmp_path)
    common = ["bench", str(data), "--routers", "knn,mf,cluster,tfidf_lr", "--embedder", "tfidf",
              "--lambdas", "40", "--seed", "3", "--quiet"]
    assert main(common + ["--json", str(tmp_path / "one.json")]) == 0
    assert main(common + ["--json", str(tmp_path / "ray.json"), "--plot", str(tmp_path / "ray.png"), "--ray"]) == 0
    one, there = (json.loads((tmp_path / f"{tag}.json").read_text()) for tag in ("one", "ray"))
    assert [r["router"] for r in there["results"]][:5] == ["knn", "mf", "cluster", "tfidf_lr", "oracle"]
    assert without_timings(there) == without_timings(one)  # every number, curve and note; timings aside
    assert there["results"][0]["curve"]["quality"] and there["embedder"] == one["embedder"]
    assert (tmp_path / "ray.png").stat().st_size > 0
    tables = [block for block in capsys.readouterr().out.split("wrote") if "best single" in block]
    assert len(tables) == 2


def test_a_router_failing_on_a_worker_is_reported_as_in_one_process(local_ray, tmp_path: Path) -> None:
    from rag_routing.evaluation.benchmark import load_split, run_benchmark

    train, test = load_split(routing_log(tmp_path, 60), seed=0)
    errors = []
    for run in (run_benchmark, ray_jobs.run_benchmark_on_ray):
        with pytest.raises(ValueError) as caught:
            run(train, test, ["mf", BrokenRouter()], embedder="tfidf", n_lambdas=5, progress=False)
        errors.append(caught.value)
    here, there = errors
    assert type(here) is type(there) is ValueError and str(here) == str(there)
    assert here.__notes__ == there.__notes__ == ["while fitting router 'broken'"]


def test_bench_on_ray_with_the_default_minilm_embedder(local_ray, tmp_path: Path) -> None:
    """A loaded MiniLM does not pickle (it holds locks): it travels as its state and is rebuilt on the workers."""
    from rag_routing.evaluation.benchmark import load_split, run_benchmark
    from rag_routing.evaluation.report import _finite

    train, test = load_split(routing_log(tmp_path, 90), seed=0)
    here, there = (_finite(run(train, test, ["knn", "mf"], embedder="minilm", n_lambdas=20, progress=False)
                           .to_dict()) for run in (run_benchmark, ray_jobs.run_benchmark_on_ray))
    assert there["embedder"] == here["embedder"] and here["embedder"]
    assert without_timings(there) == without_timings(here)
