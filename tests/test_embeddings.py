from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from rag_routing.embeddings import (
    EmbeddingCache,
    SentenceTransformerEmbedder,
    TfidfFeaturizer,
    featurizer_from_state,
    make_featurizer,
)
from rag_routing.errors import CorruptStateError, InvalidInputError, NotFittedError

TEXTS = ["what is the capital of France", "integrate x squared", "capital city of Germany",
         "derivative of sine", "who painted the Mona Lisa", "solve a quadratic equation"]


def test_tfidf_featurizer_is_normalised_and_semantic_enough():
    f = TfidfFeaturizer(n_components=4).fit(TEXTS)
    X = f.transform(["capital of Italy", "integrate x cubed"])
    assert X.shape == (2, 4) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    train = f.transform(TEXTS)
    assert np.argmax(train @ X[0]) in (0, 2)  # nearest training query is about capitals


def test_tfidf_state_round_trip():
    f = TfidfFeaturizer(n_components=3).fit(TEXTS)
    config, arrays = f.get_state()
    g = featurizer_from_state(config, arrays)
    assert np.allclose(f.transform(TEXTS), g.transform(TEXTS), atol=1e-6)


def test_tfidf_errors():
    with pytest.raises(NotFittedError):
        TfidfFeaturizer().transform(["x"])
    with pytest.raises(InvalidInputError):
        TfidfFeaturizer().fit(["only one"])
    with pytest.raises(InvalidInputError):
        TfidfFeaturizer().fit("not a list")
    with pytest.raises(CorruptStateError):
        featurizer_from_state({"type": "pickle"}, {})


def test_embedding_cache_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    vecs = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put_many("m", ["a", "b"], vecs)
    got = cache.get_many("m", ["b", "zzz", "a"])
    assert np.array_equal(got[0], vecs[1]) and got[1] is None and np.array_equal(got[2], vecs[0])
    assert cache.get_many("other-model", ["a"]) == [None]


def test_embedding_cache_commits_without_an_fsync_per_put(tmp_path):
    # A cache may lose its last commits in a power cut, never consistency: WAL + synchronous=NORMAL (1).
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    assert cache._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert cache._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_locked_cache_skips_the_write_but_still_returns_the_vectors(tmp_path, caplog):
    from rag_routing.embedding_cache import _cached_transform

    path = tmp_path / "e.sqlite"
    cache = EmbeddingCache(path, timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)  # another process holding the write lock
    other.execute("BEGIN IMMEDIATE")
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.ones((len(texts), 3), dtype=np.float32)

    with caplog.at_level("WARNING", logger="rag_routing.embedding_cache"):
        out = _cached_transform(cache, "m", ["a", "b"], encode)
    assert out.shape == (2, 3) and calls == [["a", "b"]]
    assert cache.skipped_writes == 1 and "not cached" in caplog.text
    other.execute("ROLLBACK")
    assert cache.get_many("m", ["a"]) == [None]  # nothing half-written
    _cached_transform(cache, "m", ["a"], encode)  # the lock is gone: cached now
    assert cache.get_many("m", ["a"])[0].tolist() == [1.0, 1.0, 1.0] and cache.skipped_writes == 1


def test_corrupt_cache_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptStateError, match="delete it"):
        EmbeddingCache(path)


def test_make_featurizer_specs():
    assert isinstance(make_featurizer("tfidf"), TfidfFeaturizer)
    default = make_featurizer(None)
    assert default.name == "all-MiniLM-L6-v2"  # ONNX when onnxruntime is installed, else torch: same name
    assert isinstance(make_featurizer("minilm-torch"), SentenceTransformerEmbedder)


@pytest.mark.slow
def test_offline_minilm_embeds_and_caches(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    embedder = SentenceTransformerEmbedder(cache=cache)
    X = embedder.transform(TEXTS)
    assert X.shape == (6, 384)
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-4)
    sims = X @ X.T
    assert sims[0, 2] > sims[0, 1]  # capitals are closer to each other than to calculus
    rows = sqlite3.connect(tmp_path / "e.sqlite").execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    assert rows == 6
    again = SentenceTransformerEmbedder(cache=cache)
    assert np.allclose(again.transform(TEXTS[:2]), X[:2])
    assert again._model is None  # served from the cache, the model was never loaded
