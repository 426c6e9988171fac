"""`rag-routing bench` for transfer: several training files, the `fixed` baseline, savings as fractions, the
best single candidate under ties, and `auto`'s explanation in the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag_routing.cli import main
from rag_routing.evaluation.benchmark import load_split, run_benchmark
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders import write_jsonl
from rag_routing.evaluation.scorecard import Reference

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "routing"


def _task(name: str, n: int, quality: list[float], seed: int) -> RoutingDataset:
    rng = np.random.default_rng(seed)
    Q = (rng.random((n, 3)) < quality).astype(float)
    return RoutingDataset([f"{name} question {i} {rng.integers(10**6)}" for i in range(n)], ["a", "b", "c"], Q,
                          np.tile([0.001, 0.004, 0.02], (n, 1)), name=name)


def test_train_twice_is_the_union_of_the_files(tmp_path):
    first, second = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    write_jsonl(_task("one", 12, [0.5, 0.6, 0.9], 0), first)
    write_jsonl(_task("two", 8, [0.5, 0.6, 0.9], 1), second)
    train, test = load_split(train=[first, second], test=second)
    assert len(train) == 20 and len(test) == 8
    assert train.queries[:12] == load_split(train=[first], test=second)[0].queries
    out = tmp_path / "out.json"
    assert main(["bench", "--train", str(first), "--train", str(second), "--test", str(second), "--quiet",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_train"] == 20 and report["n_test"] == 8


def test_fixed_baseline_is_the_training_mean_choice_at_every_lambda():
    # On train "c" is best but dear and "a" nearly as good and cheap; on test "b" is best (a shift).
    train = RoutingDataset([f"q{i}" for i in range(4)], ["a", "b", "c"],
                           [[1, 0, 1], [1, 0, 1], [0, 0, 1], [1, 0, 1]], [[0.001, 0.004, 0.02]] * 4)
    test = RoutingDataset([f"t{i}" for i in range(4)], ["a", "b", "c"],
                          [[0, 1, 0], [0, 1, 1], [1, 1, 0], [0, 1, 0]], [[0.001, 0.004, 0.02]] * 4)
    report = run_benchmark(train, test, progress=False)
    fixed = report.result("fixed")
    assert fixed.kind == "baseline"
    # λ = 0: "c" (training mean 1.0, test 0.25); large λ: "a" (training 0.75, test 0.25). Never "b".
    assert set(np.round(fixed.curve["quality"], 6)) == {0.25}
    assert fixed.max_quality == pytest.approx(0.25)
    assert report.best_single == "b" and report.result("b").max_quality == 1.0
    assert fixed.aiq < report.result("b").aiq                         # fixed is not held to the test hull


def test_saving_is_a_fraction_and_best_single_ties_go_to_the_cheapest():
    ds = RoutingDataset(["x", "y"], ["dear", "cheap", "mid"], [[1, 1, 1], [1, 1, 0]], [[0.03, 0.01, 0.02]] * 2)
    ref = Reference.from_test(ds)
    assert ref.best_single == "cheap"                                 # dear and cheap tie at 1.0
    report = run_benchmark(ds, ds, progress=False)
    oracle = report.result("oracle")
    assert oracle.saving_vs_best_single == pytest.approx(0.0)        # the cheapest tied candidate is right
    assert 0.0 <= report.result("oracle").max_quality <= 1.0
    assert "several tied: the cheapest of them" in report.table()
    assert any("when several tie, the cheapest" in note for note in report.notes)   # stated in the JSON too


def test_auto_reports_what_it_chose_in_table_and_json(tmp_path):
    train = _task("train", 60, [0.3, 0.5, 0.9], 2)
    test = _task("test", 30, [0.3, 0.5, 0.9], 3)
    report = run_benchmark(train, test, ["auto"], embedder="tfidf", progress=False,
                           router_params={"auto": {"routers": ["knn"], "n_bootstrap": 50}})
    row = report.result("auto")
    assert row.explain is not None and row.explain["chosen"] == "fixed"
    assert "auto chose fixed" in report.table()
    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    auto = next(r for r in data["results"] if r["router"] == "auto")
    assert auto["explain"]["routers"][0]["router"] == "knn"
    assert 0.0 <= auto.get("out_of_support", 0.0) <= 1.0              # present only with a support estimate
    assert "explain" not in next(r for r in data["results"] if r["router"] == "fixed")


def test_identical_curves_are_named_with_the_reason():
    train = _task("train", 40, [0.3, 0.5, 0.9], 4)
    report = run_benchmark(train, _task("test", 20, [0.3, 0.5, 0.9], 5), ["linucb", "thompson"], embedder="tfidf",
                           progress=False)
    assert report.result("linucb").curve == report.result("thompson").curve
    (note,) = [n for n in report.notes if "linucb" in n]
    assert "posterior mean" in note and "note: identical operating points" in report.table()


class _BagOfWords:
    """A fixed-vocabulary bag of words (unit norm): queries from another vocabulary land far away."""

    name = "test-bag-of-words"

    def __init__(self, vocabulary: list[str]):
        self.vocabulary = vocabulary

    def fit(self, texts):
        return self

    def transform(self, texts):
        X = np.array([[t.split().count(w) for w in self.vocabulary] for t in texts], dtype=np.float32) + 1e-3
        return X / np.linalg.norm(X, axis=1, keepdims=True)

    def get_state(self):
        return {"type": "precomputed", "name": self.name}, {}


def test_json_has_the_out_of_support_share_of_routers_with_a_support_estimate(tmp_path):
    words = ["integral", "derivative", "matrix", "vector", "limit", "series", "sum", "proof"]
    other = ["recipe", "garden", "holiday", "football", "guitar", "poetry", "coffee", "museum"]

    def data(vocab: list[str], n: int, seed: int) -> RoutingDataset:
        r = np.random.default_rng(seed)
        queries = [" ".join(r.choice(vocab, 5)) + f" {i}" for i in range(n)]
        return RoutingDataset(queries, ["a", "b"], (r.random((n, 2)) < [0.5, 0.8]).astype(float),
                              np.tile([0.001, 0.01], (n, 1)))

    train, embedder = data(words, 200, 0), _BagOfWords(words + other)   # p-values reach below alpha = 0.01
    same = run_benchmark(train, data(words, 40, 1), ["knn"], embedder=embedder, progress=False)
    shifted = run_benchmark(train, data(other, 40, 2), ["knn"], embedder=embedder, progress=False)
    inside, outside = same.result("knn").out_of_support, shifted.result("knn").out_of_support
    assert inside is not None and outside is not None
    assert inside < 0.25 and outside > 0.9
    assert same.result("fixed").out_of_support is None               # no per-query estimate: no field
    rows = json.loads(shifted.write_json(tmp_path / "s.json").read_text())["results"]
    assert "out_of_support" in rows[0] and "out_of_support" not in rows[-1]
