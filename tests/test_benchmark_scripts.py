"""Smoke tests of the benchmark scripts' measuring functions on tiny inputs (their figures are in the README;
these keep the scripts runnable and their comparisons honest)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaling_cell_and_index_quality_on_small_data():
    pytest.importorskip("faiss")
    scaling = _script("scaling")
    cell = scaling.run_cell("knn", 2_000, 3, 100, guards="off")
    assert cell["fit_s"] >= 0 and cell["route_s"] >= 0 and cell["peak_mb"] > 0
    small = scaling.index_cell("knn", 2_000, 3, 200)  # below the IVF threshold: both indexes exact
    assert small["ivf_exact_index"] == 1.0 and small["same_decisions"] == 1.0
    assert small["ivf_accuracy"] == small["exact_accuracy"] <= small["oracle_accuracy"]
    large = scaling.index_cell("knn", 21_000, 3, 300)  # past it: IVF against exact, on the same rows
    assert large["ivf_exact_index"] == 0.0 and 0.9 <= large["same_decisions"] <= 1.0
    data, truth = scaling.synthetic_with_truth(50, 4, seed=0)
    assert truth.shape == (50, 4) and np.all((truth > 0) & (truth < 1)) and len(data) == 50


def test_serve_featurisation_floor_measures_alone_and_batched(tmp_path):
    serve = _script("serve")
    from rag_routing.evaluation.dataset import RoutingDataset
    from rag_routing.routers.registry import create_router

    queries = [f"solve the integral of x^{i} dx" for i in range(20)] + [f"hello friend number {i}" for i in range(20)]
    data = RoutingDataset(queries, ["small", "large"], np.array([[0.0, 1.0]] * 20 + [[1.0, 1.0]] * 20),
                          np.tile([0.001, 0.02], (40, 1)))
    path = create_router("knn", k=3, featurizer="tfidf").fit(data).save(tmp_path / "router.npz")
    alone, batched = serve.featurisation_floor(str(path), [f"new question {i}" for i in range(40)], 8)
    assert alone >= 0 and batched >= 0
    fixed = create_router("fixed").fit(data).save(tmp_path / "fixed.npz")
    assert serve.featurisation_floor(str(fixed), ["q"] * 4, 2) is None  # no features, no floor
