"""``rag-routing label --ray``: a budget must be shared by the workers (Redis), or the command refuses to start."""

from __future__ import annotations

import json

import pytest

from rag_routing.cli import main


@pytest.fixture
def queries(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"query": "Capital of Peru?", "answers": ["Lima"]}) + "\n")
    return path


@pytest.mark.parametrize(("extra", "message"), [
    (["--ray", "--max-usd", "1"], "--budget-redis"),                    # a per-process budget the workers can't see
    (["--budget-redis", "redis://127.0.0.1:1/0"], "--max-usd"),         # a shared budget needs its limit
    (["--ray", "--ray-chunk", "0"], "--ray-chunk"),
    (["--ray", "--ray-task-cpus", "0"], "--ray-task-cpus"),
    (["--max-usd", "1", "--budget-redis", "http://x"], "redis://"),
])
def test_label_ray_arguments_are_checked_before_any_call(queries, tmp_path, capsys, extra, message):
    out = tmp_path / "d.jsonl"
    assert main(["label", str(queries), "--candidate", "a=local", "--out", str(out), "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err and not out.exists()
