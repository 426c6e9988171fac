"""``bench --ray`` fails fast with a typed error when Ray is missing or its cluster cannot be joined (no real Ray
is started: the ``ray`` module is replaced, so these run with or without the ray extra)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from rag_routing.cli import main
from rag_routing.errors import InvalidInputError, MissingDependencyError, RagRoutingError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.ray_jobs import RayUnavailableError, connect, run_benchmark_on_ray


@pytest.fixture
def log(tmp_path):
    from rag_routing.evaluation import write_jsonl

    rng = np.random.default_rng(0)
    ds = RoutingDataset([f"q {i}" for i in range(20)], ["a", "b"], (rng.random((20, 2)) < 0.5).astype(float),
                        np.tile([0.001, 0.01], (20, 1)))
    return str(write_jsonl(ds, tmp_path / "log.jsonl"))


def unreachable_ray(calls: list) -> types.ModuleType:
    """A stand-in ``ray`` whose ``init`` fails the way Ray does when no cluster answers at the address."""
    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False

    def init(address=None, **kwargs):
        calls.append(address)
        raise ConnectionError(f"Could not find any running Ray instance at {address}")

    fake.init = init
    return fake


def test_bench_ray_without_ray_installed_says_which_extra(monkeypatch, capsys, log) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["bench", log, "--routers", "knn", "--embedder", "tfidf", "--quiet", "--ray"]) == 2
    assert "pip install 'rag-routing[ray]'" in capsys.readouterr().err
    with pytest.raises(MissingDependencyError):
        connect()


def test_bench_ray_with_a_bad_address_is_a_typed_error_before_any_work(monkeypatch, capsys, log) -> None:
    calls: list = []
    monkeypatch.setitem(sys.modules, "ray", unreachable_ray(calls))
    assert main(["bench", log, "--routers", "knn", "--embedder", "tfidf", "--quiet", "--ray",
                 "10.255.0.1:6379"]) == 2
    err = capsys.readouterr().err
    assert "could not start or join the Ray cluster at '10.255.0.1:6379'" in err and "ConnectionError" in err
    assert calls == ["10.255.0.1:6379"]
    with pytest.raises(RayUnavailableError) as caught:
        run_benchmark_on_ray(None, None, address="auto")
    assert isinstance(caught.value, (RagRoutingError, ConnectionError))
    assert isinstance(caught.value.__cause__, ConnectionError)
    with pytest.raises(InvalidInputError, match="task_cpus"):
        run_benchmark_on_ray(None, None, task_cpus=0)
    with pytest.raises(InvalidInputError, match="Ray address"):
        connect("")
