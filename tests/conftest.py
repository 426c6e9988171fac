"""Shared fixtures. Tests never touch the network: hub downloads are disabled."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RAG_ROUTING_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session writes its embedding cache to a temporary folder, not the user's home."""
    if "RAG_ROUTING_TEST_CACHE" not in os.environ:
        os.environ["RAG_ROUTING_TEST_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    monkeypatch.setenv("RAG_ROUTING_CACHE", os.environ["RAG_ROUTING_TEST_CACHE"])


@pytest.fixture
def shared_data() -> Path:
    """The shared benchmark data folder; tests that need it skip when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}; set RAG_ROUTING_SHARED_DATA to run this test")
    return SHARED_DATA


@pytest.fixture
def toy_dataset():
    """Two well-separated query groups: 'math' questions where only the large model is right, 'chat' where both are."""
    from rag_routing.evaluation.dataset import RoutingDataset

    math = [f"solve the integral of x^{i} times sin(x) dx" for i in range(20)]
    chat = [f"hello, how are you doing today friend number {i}" for i in range(20)]
    queries = math + chat
    quality = np.array([[0.0, 1.0]] * 20 + [[1.0, 1.0]] * 20)
    cost = np.tile([0.001, 0.02], (40, 1))
    meta = [{"task": "math"}] * 20 + [{"task": "chat"}] * 20
    return RoutingDataset(queries=queries, candidates=["small", "large"], quality=quality, cost=cost, metadata=meta,
                          name="toy")
