"""The ``rag-routing`` command, run in-process through ``main([...])``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag_routing.cli import main
from rag_routing.routers import registry
from rag_routing.routers.base import Router

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "routing"


class _Nearest(Router):
    name = "cli_nearest"

    def _fit(self, features, dataset):
        self.X_, self.Q_ = features, np.nan_to_num(dataset.quality, nan=0.0)

    def _predict_quality(self, features, X):
        return self.Q_[np.argmax(features @ self.X_.T, axis=1)]


@pytest.fixture
def nearest(monkeypatch):
    monkeypatch.setitem(registry._REGISTERED, "cli_nearest", _Nearest)


def test_bench_train_test_writes_json_and_plot(tmp_path, capsys, nearest):
    pytest.importorskip("matplotlib")
    out, plot = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["bench", "--train", str(FIXTURES / "routerbench_train.csv"), "--test",
                 str(FIXTURES / "routerbench_test.csv"), "--routers", "cli_nearest", "--embedder", "tfidf",
                 "--json", str(out), "--plot", str(plot), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "cli_nearest" in printed and "oracle" in printed and "AIQ" in printed
    data = json.loads(out.read_text())
    assert {"dataset", "candidates", "n_train", "n_test", "results"} <= set(data)
    assert (data["n_train"], data["n_test"]) == (12, 8) and len(data["candidates"]) == 3
    names = [r["router"] for r in data["results"]]
    assert names[:6] == ["cli_nearest", "oracle", "random", "best", "fixed", "cheapest"]
    for row in data["results"]:
        assert {"router", "aiq", "max_quality", "cost_at_best_single_quality", "saving_vs_best_single"} <= set(row)
    assert plot.stat().st_size > 1000


def test_bench_two_candidates_reports_apgr_and_cpt(tmp_path, nearest):
    out = tmp_path / "two.json"
    code = main(["bench", str(FIXTURES / "routellm" / "responses"), "--test-size", "0.5", "--seed", "1",
                 "--routers", "cli_nearest", "--embedder", "tfidf", "--json", str(out), "--quiet"])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["n_train"] + data["n_test"] == 7
    oracle = next(r for r in data["results"] if r["router"] == "oracle")
    assert set(oracle["cpt"]) == {"20", "50", "80"} and all(0 <= v <= 1 for v in oracle["cpt"].values())
    assert isinstance(oracle["apgr"], float)
    assert "price table" in data["cost_source"]


def test_bench_errors_exit_2_with_a_message(capsys):
    assert main(["bench", str(FIXTURES / "generic.jsonl"), "--routers", "no_such_router", "--quiet"]) == 2
    assert "unknown router 'no_such_router'" in capsys.readouterr().err
    assert main(["bench", "--quiet"]) == 2
    assert "no data" in capsys.readouterr().err
    assert main(["bench", str(FIXTURES / "unknown.txt"), "--quiet"]) == 2
    assert "--format" in capsys.readouterr().err
    assert main(["bench", str(FIXTURES / "routerdc.json"), "--prices", str(FIXTURES / "missing.json"),
                 "--quiet"]) == 2
    assert "price table" in capsys.readouterr().err


def test_bench_with_a_price_override(tmp_path, capsys):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"zephyr-7b-beta": {"input": 5.0, "output": 5.0}}}))
    out = tmp_path / "dc.json"
    assert main(["bench", str(FIXTURES / "routerdc.json"), "--prices", str(prices), "--json", str(out),
                 "--test-size", "3", "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["cost_range"][1] > 10 * data["cost_range"][0]      # zephyr is now the expensive one


def test_demo_without_data_exits_2(tmp_path, capsys):
    assert main(["bench-demo", "--data", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "--data" in capsys.readouterr().err


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2


def test_bench_passes_candidate_descriptions_to_routers_that_read_them(tmp_path, capsys):
    from rag_routing.cli import _description_params

    good = tmp_path / "descriptions.json"
    good.write_text(json.dumps({"gpt-4-1106-preview": "OpenAI's largest model, strong at reasoning",
                                "mistralai/mistral-7b-chat": "a small open 7B chat model",
                                "claude-instant-v1": "Anthropic's fast, cheap model"}))
    params = _description_params(["graph", "knn"], str(good))
    assert set(params) == {"graph"} and params["graph"]["descriptions"]["claude-instant-v1"].startswith("Anthropic")
    assert _description_params(["knn"], None) is None
    out = tmp_path / "graph.json"
    code = main(["bench", "--train", str(FIXTURES / "routerbench_train.csv"), "--test",
                 str(FIXTURES / "routerbench_test.csv"), "--routers", "graph", "--embedder", "tfidf",
                 "--descriptions", str(good), "--json", str(out), "--quiet"])
    assert code == 0 and json.loads(out.read_text())["results"][0]["router"] == "graph"
    for bad in ('["not", "a", "mapping"]', '{"m": ""}', "not json"):
        path = tmp_path / "bad.json"
        path.write_text(bad)
        assert main(["bench", "--train", str(FIXTURES / "routerbench_train.csv"), "--test",
                     str(FIXTURES / "routerbench_test.csv"), "--routers", "graph", "--embedder", "tfidf",
                     "--descriptions", str(path), "--quiet"]) == 2
        assert "--descriptions" in capsys.readouterr().err
