"""Offline default generators: a small local instruct model with token log-probabilities, no key needed.

* :class:`LocalLLM`: SmolLM2-135M-Instruct (or any hub id / local folder) with ``generate``, ``stream``,
  ``stream_chunks`` and async twins; results are :class:`Generation` objects with token log-probabilities.
* :func:`openai_logprobs`: log-probabilities in OpenAI's shape, which LangChain judges read.

Framework wrappers live in ``rag_routing.integrations``: ``langchain.chat_model.LocalChatModel`` and
``llamaindex.llm.LocalLlamaIndexLLM``. Importing this package does not import torch or transformers.
"""

from rag_routing.llms.generation import Generation, GenerationChunk, openai_logprobs
from rag_routing.llms.loading import (
    DEFAULT_MODEL_NAME,
    ModelLoadError,
    default_model_path,
    loaded_models,
    unload_all,
)
from rag_routing.llms.local import LocalLLM, normalize_messages

__all__ = [
    "LocalLLM",
    "Generation",
    "GenerationChunk",
    "openai_logprobs",
    "normalize_messages",
    "ModelLoadError",
    "default_model_path",
    "loaded_models",
    "unload_all",
    "DEFAULT_MODEL_NAME",
]
