"""Test doubles for paid chat models: they report provider usage like a real one and count their calls.

Shared by the LangChain and LangGraph budget tests (not a test module itself).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.similarity import KNNRouter


class CountingChat(BaseChatModel):
    """A paid chat model stand-in: replies ``reply``, reports ``input_tokens`` / ``output_tokens`` as
    ``usage_metadata`` and the model name in ``response_metadata``; ``calls`` counts provider calls."""

    model: str = "gpt-4o-mini"
    reply: str = "Paris is the capital of France"
    input_tokens: int = 1000
    output_tokens: int = 500
    max_tokens: int | None = None
    fail: bool = False
    _calls: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def _llm_type(self) -> str:
        return "counting-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model, "max_tokens": self.max_tokens}

    def _count(self) -> None:
        with self._lock:
            self._calls += 1
        if self.fail:
            raise RuntimeError("provider error")

    def _usage(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens}

    def _result(self) -> ChatResult:
        message = AIMessage(self.reply, usage_metadata=self._usage(), response_metadata={"model_name": self.model})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: Any = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self._count()
        return self._result()

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        await asyncio.sleep(0)
        self._count()
        return self._result()

    def _chunks(self) -> list[ChatGenerationChunk]:
        words = self.reply.split(" ")
        chunks = [ChatGenerationChunk(message=AIMessageChunk(w if i == 0 else " " + w)) for i, w in enumerate(words)]
        chunks.append(ChatGenerationChunk(message=AIMessageChunk(
            "", usage_metadata=self._usage(), response_metadata={"model_name": self.model})))
        return chunks

    def _stream(self, messages: list[BaseMessage], stop: Any = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self._count()
        yield from self._chunks()

    async def _astream(self, messages: list[BaseMessage], stop: Any = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        self._count()
        for chunk in self._chunks():
            await asyncio.sleep(0)
            yield chunk


def small_large_router() -> KNNRouter:
    """A fitted router over candidates ``small`` / ``large``: maths goes to ``large``, chit-chat to ``small``."""
    queries = ["integrate x squared", "solve the integral of sin x", "hello there", "hi, how are you"]
    ds = RoutingDataset(queries, ["small", "large"], [[0, 1], [0, 1], [1, 1], [1, 1]],
                        np.tile([0.0003, 0.006], (4, 1)))
    return KNNRouter(k=1, prior=0.0, featurizer="tfidf", lam=1.0).fit(ds)


__all__ = ["CountingChat", "small_large_router"]
