"""The ONNX MiniLM embedder: export cache keyed by the weights' hash, equivalence with torch, the default."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from rag_routing.embeddings import (  # noqa: E402
    DEFAULT_EMBEDDING_MODEL,
    EmbeddingCache,
    SentenceTransformerEmbedder,
    featurizer_from_state,
    make_featurizer,
)
from rag_routing.errors import InvalidInputError  # noqa: E402
from rag_routing.onnx_embedding import OnnxMiniLMEmbedder, export  # noqa: E402
from tests.onnx_tiny_model import build_tiny_model, torch_mean_pooled  # noqa: E402

TEXTS = ["What is the capital of France?", "integrate x squared from 0 to 1", "hi",
         "Which of these is a prime number: 4, 6, 7 or 9?"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_export_is_cached_and_rebuilt_when_the_weights_change(tmp_path, monkeypatch):
    model = build_tiny_model(tmp_path / "model", seed=0)
    calls = []
    real_export = export.export_fp32
    monkeypatch.setattr(export, "export_fp32", lambda *a: (calls.append(a), real_export(*a))[1])
    first = export.ensure_onnx_model(model, tmp_path / "onnx", "fp32")
    assert first.is_file() and export.weights_sha256(model)[:20] in first.name
    assert export.ensure_onnx_model(model, tmp_path / "onnx", "fp32") == first and len(calls) == 1
    build_tiny_model(tmp_path / "model", seed=1)  # new weights: new hash, new file
    second = export.ensure_onnx_model(model, tmp_path / "onnx", "fp32")
    assert second != first and second.is_file() and len(calls) == 2
    assert not list((tmp_path / "onnx").glob(".build-*"))  # no half-written leftovers


def test_concurrent_builders_export_once(tmp_path, tiny, monkeypatch):
    calls = []
    real_export = export.export_fp32
    monkeypatch.setattr(export, "export_fp32", lambda *a: (calls.append(a), real_export(*a))[1])
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(export.ensure_onnx_model(tiny, tmp_path, "fp32")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 1 and len(calls) == 1


def test_onnx_matches_torch_on_the_same_weights(tiny, tmp_path):
    onnx = OnnxMiniLMEmbedder(str(tiny), quantize="fp32", model_dir=tmp_path)
    got = onnx.transform(TEXTS)
    want = torch_mean_pooled(tiny, TEXTS)
    assert got.shape == (4, 16) and got.dtype == np.float32
    assert np.allclose((got * want).sum(1), 1.0, atol=1e-5)
    # one text at a time (no padding) gives the same vectors as a padded, length-sorted batch
    assert np.allclose(np.vstack([onnx.transform([t]) for t in TEXTS]), got, atol=1e-5)
    int8 = OnnxMiniLMEmbedder(str(tiny), quantize="int8", model_dir=tmp_path).transform(TEXTS)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)


def test_chunks_pad_little_and_cover_every_text_once():
    from rag_routing.onnx_embedding.embedder import padding_aware_chunks

    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = np.sort(rng.integers(1, 257, int(rng.integers(1, 120))))
        size = int(rng.integers(1, 40))
        chunks = padding_aware_chunks(lengths, size)
        assert [i for c in chunks for i in range(c.start, c.stop)] == list(range(len(lengths)))
        for c in chunks:
            part = lengths[c]
            assert 1 <= len(part) <= size
            assert len(part) == 1 or len(part) * part.max() <= 1.25 * part.sum()
    assert padding_aware_chunks(np.array([], dtype=np.int64), 8) == []


def test_a_mixed_length_batch_is_cut_into_chunks_and_matches_one_by_one(tiny, tmp_path, monkeypatch):
    onnx = OnnxMiniLMEmbedder(str(tiny), quantize="fp32", model_dir=tmp_path, batch_size=32)
    texts = ["hi", "a cat", "what is two plus two", " ".join(["long"] * 120), "ok", " ".join(["word"] * 60)]
    session, _ = onnx._load()
    widths = []
    real_run = session.run

    class Recording:
        def run(self, names, feed):
            widths.append(feed["input_ids"].shape)
            return real_run(names, feed)

    monkeypatch.setattr(onnx, "_session", Recording())
    got = onnx.transform(texts)
    assert len(widths) >= 3 and sum(rows for rows, _ in widths) == len(texts)  # short, medium and long apart
    assert sum(rows * width for rows, width in widths) < len(texts) * max(width for _, width in widths) / 2
    assert np.allclose(np.vstack([onnx.transform([t]) for t in texts]), got, atol=1e-5)


def test_cache_key_names_the_backend_and_weights(tiny, tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    emb = OnnxMiniLMEmbedder(str(tiny), quantize="fp32", cache=cache)
    assert emb.model_dir == tmp_path / "onnx"  # the model lives next to the embedding cache
    vectors = emb.transform(TEXTS[:2])
    key = emb.cache_name
    assert "#onnx-fp32-" in key and export.weights_sha256(tiny)[:12] in key
    assert np.array_equal(cache.get_many(key, TEXTS[:1])[0], vectors[0])
    assert cache.get_many(str(tiny), TEXTS[:1]) == [None]  # never mixed with torch vectors of the same name


def test_default_featurizer_and_the_torch_choice(monkeypatch):
    assert isinstance(make_featurizer(None), OnnxMiniLMEmbedder)
    assert isinstance(make_featurizer("minilm"), OnnxMiniLMEmbedder)
    assert make_featurizer(None).quantize == "fp32"  # int8 flips some cost-aware decisions: opt in
    assert make_featurizer("minilm-onnx-int8").quantize == "int8"
    assert make_featurizer(None, quantize="int8").quantize == "int8"
    torch_path = make_featurizer("minilm-torch")
    assert isinstance(torch_path, SentenceTransformerEmbedder) and torch_path.name == DEFAULT_EMBEDDING_MODEL
    # the ONNX embedder keeps the model's name: a dataset's precomputed MiniLM vectors stay usable
    assert make_featurizer(None).name == DEFAULT_EMBEDDING_MODEL
    import rag_routing.onnx_embedding.embedder as embedder

    monkeypatch.setattr(embedder, "onnxruntime_available", lambda: False)
    assert isinstance(make_featurizer(None), SentenceTransformerEmbedder)


def test_saved_featurizers_load_with_the_embedding_cache():
    onnx = featurizer_from_state(*OnnxMiniLMEmbedder(batch_size=8).get_state())
    assert isinstance(onnx, OnnxMiniLMEmbedder) and onnx.batch_size == 8 and onnx._cache is not None
    torch_state = featurizer_from_state({"type": "sentence_transformer", "model": DEFAULT_EMBEDDING_MODEL}, {})
    assert torch_state._cache is not None


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(InvalidInputError):
        OnnxMiniLMEmbedder(quantize="int4")
    with pytest.raises(InvalidInputError):
        OnnxMiniLMEmbedder(batch_size=0)
    with pytest.raises(InvalidInputError, match="local model folder"):
        OnnxMiniLMEmbedder("some/hub-name").transform(["x"])
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"0")
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    with pytest.raises(InvalidInputError, match="mean pooling"):
        export.ensure_onnx_model(tmp_path, tmp_path / "onnx")


@pytest.mark.slow
def test_packaged_minilm_onnx_matches_sentence_transformers():
    pytest.importorskip("sentence_transformers")
    torch_vectors = SentenceTransformerEmbedder().transform(TEXTS)
    fp32 = OnnxMiniLMEmbedder(quantize="fp32").transform(TEXTS)
    int8 = OnnxMiniLMEmbedder(quantize="int8").transform(TEXTS)
    assert (fp32 * torch_vectors).sum(1).min() > 0.9999
    cos = (int8 * torch_vectors).sum(1)  # 0.994 on average over real prompts (benchmarks/embedding_speed.py);
    assert cos.mean() >= 0.985 and cos.min() > 0.97  # a bare "hi" is the worst case here (0.979)


def test_module_examples_run():
    import doctest

    import rag_routing.feature_prefetch as prefetch
    import rag_routing.onnx_embedding as package

    for module in (export, package, prefetch):
        assert doctest.testmod(module).failed == 0
