"""Deterministic bag-of-words embeddings for LangChain and LlamaIndex tests (not a test module itself).

Each lower-cased word is hashed (crc32) into one of ``DIM`` buckets; vectors are L2-normalised, so a query and a
passage that share words are close. Meaningful retrieval over the bundled corpus without loading a model.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

DIM = 4096
_STOP = {"the", "of", "is", "a", "an", "in", "what", "which", "who", "its", "and", "to", "was", "by"}


def hashed(text: str) -> list[float]:
    vector = np.zeros(DIM)
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word not in _STOP:
            vector[zlib.crc32(word.encode()) % DIM] += 1.0
    norm = np.linalg.norm(vector)
    return (vector / norm if norm else vector).tolist()


def langchain_embeddings():  # noqa: ANN201 - the LangChain class is built here, after importorskip
    from langchain_core.embeddings import Embeddings

    class HashingEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [hashed(t) for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return hashed(text)

    return HashingEmbeddings()


def llamaindex_embedding():  # noqa: ANN201
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class HashingEmbedding(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return hashed(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return hashed(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return hashed(text)

    return HashingEmbedding(model_name="hashing")
