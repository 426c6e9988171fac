"""MiniLM through ONNX Runtime: a cached offline export (:mod:`.export`) and the embedder (:mod:`.embedder`).

Example:
    >>> from rag_routing.onnx_embedding import OnnxMiniLMEmbedder, onnxruntime_available
    >>> isinstance(onnxruntime_available(), bool)
    True
"""

from rag_routing.onnx_embedding.embedder import OnnxMiniLMEmbedder, onnxruntime_available
from rag_routing.onnx_embedding.export import ensure_onnx_model, weights_sha256

__all__ = ["OnnxMiniLMEmbedder", "onnxruntime_available", "ensure_onnx_model", "weights_sha256"]
