"""Batch work on Ray (a real local Ray): the same features and the same routing table as one process, and the
workers' LLM calls share one budget in a real redis-server (refused before they run, never overspent)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from redis_fixture import redis_server_fixture  # noqa: F401

from rag_routing.candidates import Pricing
from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.answer_scorers import TokenF1Scorer
from rag_routing.evaluation.labeling import LABEL_GENERATION_STAGE, RoutingDataBuilder
from rag_routing.ledger import Budget, CostLedger, ledger_scope

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
