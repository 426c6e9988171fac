"""The classes of non-library exceptions a fuzz of the public API found (issue 16, "The public API"), one
regression each: every one is now a rag_routing error, or works."""

from __future__ import annotations

import numpy as np
import pytest

from rag_routing import RoutingDataset
from rag_routing.cli import build_parser, main
from rag_routing.embeddings import TfidfFeaturizer
from rag_routing.errors import InvalidInputError
from rag_routing.ledger.tokens import count_tokens, count_tokens_batch
from rag_routing.routers.registry import create_router


def _one_word_dataset() -> RoutingDataset:
    return RoutingDataset(["refund", "refund"], ["small", "large"], np.array([[1.0, 0.0], [0.0, 1.0]]),
                          np.array([[0.001, 0.01], [0.001, 0.01]]))


@pytest.mark.parametrize("name", ["knn", "cluster", "elo", "mf", "sw_ranking", "semantic", "regressor"])
def test_the_tfidf_featurizer_fits_queries_that_share_one_word(name):
    router = create_router(name, featurizer="tfidf").fit(_one_word_dataset())
    assert [d.candidate for d in router.route(["refund", "something else"])][0] in ("small", "large")


def test_tfidf_without_any_word_is_a_typed_error():
    with pytest.raises(InvalidInputError, match="no words"):
        TfidfFeaturizer().fit(["?", "!"])
    assert TfidfFeaturizer().fit(["refund", "refund"]).transform(["refund", "other"]).shape == (2, 1)


def test_the_sparse_tfidf_router_routes_an_empty_batch():
    queries = [f"integrate x^{i} dx" for i in range(6)] + [f"say hello to friend {i}" for i in range(6)]
    train = RoutingDataset(queries, ["small", "large"], np.array([[0.0, 1.0]] * 6 + [[1.0, 1.0]] * 6),
                           np.tile([1e-4, 1e-2], (12, 1)))
    router = create_router("tfidf_lr", min_df=1).fit(train)
    assert router.route([]) == []
    assert router.predict_quality([]).shape == (0, 2)


def test_route_with_lam_as_text_is_a_typed_error():
    router = create_router("knn", featurizer="tfidf").fit(_one_word_dataset())
    with pytest.raises(InvalidInputError, match="lam"):
        router.route(["refund"], lam="10")


@pytest.mark.parametrize("kwargs", [
    {"queries": None}, {"candidates": None}, {"candidates": "ab"}, {"queries": [1, 2]},
    {"quality": [[1.0, 0.0], [1.0]]}, {"quality": None}, {"quality": [["a", "b"], ["c", "d"]]},
    {"cost": [[1j, 1], [1, 1]]}, {"metadata": 5}, {"metadata": [1, 2]}, {"embeddings": [[1.0], [1.0, 2.0]]},
    {"responses": 3}, {"responses": [[1, 2], [3, 4]]},
])
def test_malformed_dataset_arguments_are_typed_errors(kwargs):
    args = {"queries": ["a", "b"], "candidates": ["x", "y"], "quality": [[1.0, 0.0], [0.0, 1.0]],
            "cost": [[1.0, 2.0], [1.0, 2.0]], **kwargs}
    with pytest.raises(InvalidInputError):
        RoutingDataset(**args)


@pytest.mark.parametrize("test_size", [1.5, float("nan"), "half", None, 0, -1, True])
def test_a_split_size_that_makes_no_sense_is_a_typed_error(test_size):
    data = RoutingDataset(["a", "b", "c"], ["x"], [[1.0], [0.0], [1.0]], [[1.0], [1.0], [1.0]])
    with pytest.raises(InvalidInputError):
        data.train_test_split(test_size=test_size)


@pytest.mark.parametrize("model", [123, ["gpt-4o"], b"gpt-4o", 1.5])
def test_a_model_that_is_not_a_name_is_a_typed_error_when_counting_tokens(model):
    with pytest.raises(InvalidInputError, match="model"):
        count_tokens("hello", model=model)
    with pytest.raises(InvalidInputError, match="model"):
        count_tokens_batch(["hello"], model=model)


@pytest.mark.parametrize("argv", [["--test-size", "1.5"], ["--test-size", "nan"], ["--test-size", "-0.2"],
                                  ["--lambdas", "0"], ["--seed", "-3"], ["--output-tokens", "0"]])
def test_the_cli_refuses_out_of_range_numbers_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["bench", "data.csv", *argv])
    assert stop.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.mark.slow
def test_the_cli_reports_an_unknown_embedder_in_one_line(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    status = main(["bench", "tests/fixtures/routing/routerbench_train.csv", "--routers", "knn", "--embedder",
                   "nosuchmodel", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert err.startswith("error: cannot load the embedding model 'nosuchmodel'")
