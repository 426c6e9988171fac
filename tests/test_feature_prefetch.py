"""A batch embeds once: RouterRunnable.batch / abatch and a stage's batch / abatch call the model one time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from rag_routing.evaluation.dataset import RoutingDataset  # noqa: E402
from rag_routing.feature_prefetch import prefetched_features  # noqa: E402
from rag_routing.onnx_embedding import OnnxMiniLMEmbedder  # noqa: E402
from rag_routing.routers.similarity import KNNRouter  # noqa: E402
from rag_routing.stages.base import StageRouter  # noqa: E402
from rag_routing.stages.state import RAGState  # noqa: E402
from tests.onnx_tiny_model import build_tiny_model  # noqa: E402

MATH = [f"integrate x^{i} sin x dx" for i in range(10)]
CHAT = [f"hello friend, how are you doing today {i}" for i in range(10)]
NEW = ["integrate x^42 cos x dx", "hello friend number 99", "solve the integral of x^3", "good morning to you",
       "integrate e^x dx", "how are you my friend"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def counted(tiny, tmp_path, monkeypatch):
    """A kNN router on the tiny ONNX embedder (no embedding cache), and the list of its model calls."""
    embedder = OnnxMiniLMEmbedder(str(tiny), quantize="fp32", model_dir=tmp_path)
    ds = RoutingDataset(MATH + CHAT, ["small", "large"], np.array([[0.0, 1.0]] * 10 + [[1.0, 1.0]] * 10),
                        np.tile([0.001, 0.02], (20, 1)))
    router = KNNRouter(k=5, featurizer=embedder, lam=10.0).fit(ds)
    calls: list[list[str]] = []
    real = embedder._encode
    monkeypatch.setattr(embedder, "_encode", lambda texts: (calls.append(list(texts)), real(texts))[1])
    return router, calls


def test_prefetch_context_answers_single_calls_from_one_encode(counted):
    router, calls = counted
    alone = [router.route_one(q).candidate for q in NEW]
    calls.clear()
    with prefetched_features(router, NEW):
        batched = [router.route_one(q).candidate for q in NEW]
    assert batched == alone and len(calls) == 1 and sorted(calls[0]) == sorted(NEW)
    router.route_one(NEW[0])  # outside the block: the memo is gone
    assert len(calls) == 2


def test_router_runnable_batch_and_abatch_embed_once(counted):
    pytest.importorskip("langchain_core")
    from rag_routing.integrations.langchain import RouterRunnable

    router, calls = counted
    node = RouterRunnable(router)
    want = [router.route_one(q).candidate for q in NEW]
    calls.clear()
    assert [d.candidate for d in node.batch(NEW)] == want and len(calls) == 1
    calls.clear()
    assert [d.candidate for d in asyncio.run(node.abatch(NEW))] == want and len(calls) == 1
    calls.clear()
    assert [d.candidate for d in node.batch(NEW, config={"max_concurrency": 3})] == want and len(calls) == 1


def test_stage_batch_and_abatch_embed_once(counted):
    router, calls = counted
    stage = StageRouter({"small": lambda s: s.evolve(answer="small"), "large": lambda s: s.evolve(answer="large")},
                        router=router, name="toy")
    want = [stage.invoke(q).answer for q in NEW]
    calls.clear()
    assert [s.answer for s in stage.batch([RAGState(query=q) for q in NEW], max_concurrency=2)] == want
    assert len(calls) == 1
    calls.clear()
    assert [s.answer for s in asyncio.run(stage.abatch(NEW))] == want and len(calls) == 1


def test_bad_items_are_left_to_their_own_call(counted):
    router, calls = counted
    with prefetched_features(router, [NEW[0], "", None, NEW[1]]):
        router.route_one(NEW[1])
    assert len(calls) == 1 and sorted(calls[0]) == sorted(NEW[:2])
