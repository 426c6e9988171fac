"""Build the ONNX copy of a sentence-transformers MiniLM model once, offline, and cache it on disk.

The transformer, mean pooling and L2 normalisation are exported together with ``torch.onnx.export`` from the
packaged weights, then (``quantize="int8"``) quantized with ONNX Runtime's dynamic quantization. The file name
carries the SHA-256 of the weights file, so new weights build a new file; it is written atomically (temporary
file, then ``os.replace``) under an inter-process lock, so concurrent builders never see a half-written model.

Quantization ``"int8"``: per-channel int8 weights of every linear layer; the attention's activation x
activation products (Q·K^T, attention·V) stay float32. Plain per-tensor dynamic quantization of every MatMul
gives a mean cosine of only ~0.95 to the sentence-transformers vectors; this recipe ~0.994, at twice the fp32
ONNX speed, but flips 1.5-3 % of cost-aware routing decisions on the shared sets (keeping the feed-forward output
projections in float32 too gave ~0.997 at 1.5x and still flipped 1.1 %), so float32 is the default; see
``benchmarks/embedding_speed.py``.

Example:
    >>> from rag_routing.onnx_embedding.export import weights_file
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()); (folder / "model.safetensors").write_bytes(b"w")
    1
    >>> weights_file(folder).name
    'model.safetensors'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from rag_routing.errors import InvalidInputError, require
from rag_routing.validation import check_choice

#: Bumped when the export or quantization recipe changes, so old cached files are not reused.
EXPORT_VERSION = 2
QUANTIZATIONS = ("int8", "fp32")

_hash_memo: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()
_build_lock = threading.Lock()


def weights_file(model_dir: str | os.PathLike[str]) -> Path:
    """The weights file of a sentence-transformers / transformers folder (safetensors preferred)."""
    folder = Path(model_dir)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return folder / name
    raise InvalidInputError(f"no model.safetensors or pytorch_model.bin in {folder}; pass a sentence-transformers "
                            "model folder")


def weights_sha256(model_dir: str | os.PathLike[str]) -> str:
    """SHA-256 of the weights file (memoised per path, size and modification time)."""
    path = weights_file(model_dir)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key in _hash_memo:
            return _hash_memo[key]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    with _hash_lock:
        _hash_memo[key] = digest.hexdigest()
    return _hash_memo[key]


def onnx_file_name(model_dir: str | os.PathLike[str], quantize: str) -> str:
    """Cache file name: the weights' hash, the quantization and the export recipe version."""
    check_choice("quantize", quantize, QUANTIZATIONS)
    return f"minilm-{weights_sha256(model_dir)[:20]}-{quantize}-v{EXPORT_VERSION}.onnx"


def check_mean_pooling(model_dir: str | os.PathLike[str]) -> None:
    """The export implements mean pooling only; a model configured otherwise is refused, not misread."""
    pooling = Path(model_dir) / "1_Pooling" / "config.json"
    if pooling.is_file():
        config = json.loads(pooling.read_text())
        if not config.get("pooling_mode_mean_tokens", False):
            raise InvalidInputError(f"{model_dir} does not use mean pooling; use the torch embedder "
                                    "(embedder='minilm-torch' or SentenceTransformerEmbedder) for it")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Inter-process (fcntl) and in-process lock around one build."""
    with _build_lock, open(lock_path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: atomic replace alone keeps readers safe
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_onnx_model(model_dir: str | os.PathLike[str], cache_dir: str | os.PathLike[str],
                      quantize: str = "fp32") -> Path:
    """Path of the cached ONNX model for ``model_dir``, exporting (and quantizing) it first when missing."""
    check_mean_pooling(model_dir)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / onnx_file_name(model_dir, quantize)
    if target.is_file():
        return target
    with _exclusive(cache / (target.name + ".lock")):
        if target.is_file():  # another process built it while we waited
            return target
        with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
            fp32 = Path(tmp) / "model.onnx"
            export_fp32(model_dir, fp32)
            built = fp32
            if quantize == "int8":
                built = Path(tmp) / "model.int8.onnx"
                quantize_int8(fp32, built)
            os.replace(built, target)
    return target


def export_fp32(model_dir: str | os.PathLike[str], out: Path) -> None:
    """Export transformer + mean pooling + L2 normalisation as one float32 ONNX graph."""
    torch = require("torch", "embeddings")
    transformers = require("transformers", "embeddings")
    encoder = transformers.AutoModel.from_pretrained(str(model_dir)).eval()

    class Pooled(torch.nn.Module):
        def __init__(self, inner: object):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    dummy = torch.ones((2, 8), dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids")}
    dynamic["embedding"] = {0: "batch"}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks of the HF model
        torch.onnx.export(Pooled(encoder), (dummy, dummy, torch.zeros_like(dummy)), str(out),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["embedding"], dynamic_axes=dynamic, opset_version=17, dynamo=False)


def quantize_int8(fp32: Path, out: Path) -> None:
    """Dynamic int8 quantization of the weight MatMuls (see the module docstring for what stays float32)."""
    onnx = require("onnx", "onnx")
    quantization = require("onnxruntime.quantization", "onnx")
    graph = onnx.load(str(fp32)).graph
    constants = {init.name for init in graph.initializer}
    constants |= {o for node in graph.node if node.op_type == "Constant" for o in node.output}
    keep_float = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        if not any(name in constants for name in node.input):  # activation x activation: no weight to quantize
            keep_float.append(node.name)
    import logging

    root = logging.getLogger()
    was_disabled, root.disabled = root.disabled, True  # ORT logs a "consider pre-processing" hint at WARNING
    try:
        quantization.quantize_dynamic(str(fp32), str(out), weight_type=quantization.QuantType.QInt8,
                                      per_channel=True, op_types_to_quantize=["MatMul"],
                                      nodes_to_exclude=keep_float)
    finally:
        root.disabled = was_disabled


__all__ = ["EXPORT_VERSION", "QUANTIZATIONS", "ensure_onnx_model", "export_fp32", "quantize_int8",
           "onnx_file_name", "weights_file", "weights_sha256", "check_mean_pooling"]
