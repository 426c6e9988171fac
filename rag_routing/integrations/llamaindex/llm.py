"""LlamaIndex LLM for the offline default generator (:class:`~rag_routing.llms.local.LocalLLM`).

:class:`LocalLlamaIndexLLM` is a ``CustomLLM``: ``complete`` / ``stream_complete`` / ``chat`` / ``stream_chat``
and their async twins (which run in a worker thread, not on the event loop). Responses carry token
log-probabilities in ``logprobs`` (one list of :class:`LogProb` per generated token: the ``top_logprobs`` most
likely tokens, as llama-index's OpenAI LLM fills it; the chosen token alone when ``top_logprobs=0``), the
chosen tokens' own log-probabilities in ``additional_kwargs["token_logprobs"]``, and the usage in
``additional_kwargs`` (``prompt_tokens``, ``completion_tokens``, ``total_tokens``, as OpenAI's).

``complete(prompt)`` sends ``prompt`` as a user message through the chat template (after ``system_prompt``
if set); ``complete(prompt, formatted=True)`` sends it to the model as is (plain completion).

Example (loads the local model on first use):
    >>> llm = LocalLlamaIndexLLM(max_tokens=16)
    >>> r = llm.complete("The capital of Freedonia is Zorbatown.\\nWhat is the capital of Freedonia?")
    >>> "Zorbatown" in r.text, r.additional_kwargs["completion_tokens"] > 0
    (True, True)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import ConfigDict, Field, PrivateAttr

from rag_routing.errors import InvalidInputError
from rag_routing.llms.generation import Generation, GenerationChunk
from rag_routing.llms.local import LocalLLM

_ROLES = {"developer": "system", "chatbot": "assistant", "model": "assistant", "function": "tool"}
_CALL_OPTIONS = ("max_tokens", "max_new_tokens", "temperature", "seed", "logprobs", "top_logprobs", "stop")
_DEFAULT_CONTEXT_WINDOW = 8192  # SmolLM2-135M-Instruct


class LocalLlamaIndexLLM(CustomLLM):
    """A local instruct model (SmolLM2-135M-Instruct by default) as a LlamaIndex LLM, with logprobs.

    Args:
        model_path, gguf_file: the model (see :class:`~rag_routing.llms.local.LocalLLM`); default SmolLM2.
        model_name: the name reported in metadata and the ledger.
        max_tokens: maximum generated tokens per call.
        temperature: 0 (default) is greedy; above 0 samples, reproducibly when ``seed`` is set.
        logprobs, top_logprobs: return token log-probabilities and the top-k alternatives.
        stop: default stop sequences.
        context_window: what LlamaIndex packs prompts to; ``None`` reads it from the model (loading it).
        record_to_ledger: record each call in the ambient cost ledger ($0, tokens, seconds, energy).
    """

    model_config = ConfigDict(protected_namespaces=())

    model_path: str | None = Field(default=None, description="Local folder, .gguf file or hub id; None: SmolLM2.")
    gguf_file: str | None = Field(default=None, description="GGUF file inside model_path.")
    model_name: str | None = Field(default=None, description="Name in metadata and the cost ledger.")
    max_tokens: int = Field(default=256, description="Maximum generated tokens per call.")
    temperature: float = Field(default=0.0, description="0 = greedy.")
    seed: int | None = Field(default=None, description="Seed for sampling (temperature > 0).")
    device: str = Field(default="cpu", description="Torch device.")
    logprobs: bool = Field(default=True, description="Return token log-probabilities.")
    top_logprobs: int = Field(default=5, description="Alternatives per token (0-20).")
    stop: list[str] | None = Field(default=None, description="Default stop sequences.")
    context_window: int | None = Field(default=None, description="Context window; None reads the model's.")
    record_to_ledger: bool = Field(default=True, description="Record calls in the ambient cost ledger.")

    _llm: LocalLLM = PrivateAttr()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # Built here rather than in a validator so that typed errors reach the caller unwrapped.
        self._llm = LocalLLM(self.model_path, gguf_file=self.gguf_file, model_name=self.model_name,
                             max_new_tokens=self.max_tokens, temperature=self.temperature, seed=self.seed,
                             device=self.device, record_to_ledger=self.record_to_ledger)
        self.model_name = self._llm.model_name
        self._options({})

    @classmethod
    def class_name(cls) -> str:
        return "rag_routing_local_llm"

    @property
    def llm(self) -> LocalLLM:
        """The framework-free model behind this LLM."""
        return self._llm

    @property
    def metadata(self) -> LLMMetadata:
        window = self.context_window
        if window is None:
            window = _DEFAULT_CONTEXT_WINDOW if self.model_path is None else (self._llm.context_window
                                                                              or _DEFAULT_CONTEXT_WINDOW)
        return LLMMetadata(context_window=window, num_output=self.max_tokens, is_chat_model=True,
                           model_name=self.model_name or "")

    def to_payload(self) -> dict[str, Any]:
        # Tells the budget gate that this LLM reserves and records its own calls (no second reservation).
        return {**super().to_payload(), "record_to_ledger": self.record_to_ledger}

    # -- completion -----------------------------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._complete(prompt, formatted, kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        target, options = self._completion_target(prompt, formatted), self._options(kwargs)
        return _completion_stream(self._llm.stream_chunks(target, apply_template=not formatted, **options))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await asyncio.to_thread(self._complete, prompt, formatted, kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        target, options = self._completion_target(prompt, formatted), self._options(kwargs)
        return _acompletion_stream(self._llm.astream_chunks(target, apply_template=not formatted, **options))

    # -- chat -----------------------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        chunks = self._llm.stream_chunks(self._chat_messages(messages), **self._options(kwargs))
        return (_as_chat(r) for r in _completion_stream(chunks))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self._chat, messages, kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        chunks = self._llm.astream_chunks(self._chat_messages(messages), **self._options(kwargs))

        async def responses() -> ChatResponseAsyncGen:
            async for response in _acompletion_stream(chunks):
                yield _as_chat(response)

        return responses()

    # -- helpers --------------------------------------------------------------------------------------------
    def _complete(self, prompt: str, formatted: bool, kwargs: dict[str, Any]) -> CompletionResponse:
        target, options = self._completion_target(prompt, formatted), self._options(kwargs)
        generation = self._llm.generate(target, apply_template=not formatted, **options)
        return _completion(generation, generation.text, None, _generation_logprobs(generation), final=generation)

    def _chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatResponse:
        generation = self._llm.generate(self._chat_messages(messages), **self._options(kwargs))
        return _as_chat(_completion(generation, generation.text, None, _generation_logprobs(generation),
                                    final=generation))

    def _completion_target(self, prompt: str, formatted: bool) -> Any:
        if formatted or not self.system_prompt:
            return prompt
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]

    def _chat_messages(self, messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        converted = [{"role": _ROLES.get(_role(m), _role(m)), "content": m.content or ""} for m in messages]
        if self.system_prompt and not any(m["role"] == "system" for m in converted):
            converted.insert(0, {"role": "system", "content": self.system_prompt})
        return converted

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = [k for k in kwargs if k not in _CALL_OPTIONS]
        if unknown:
            raise InvalidInputError(f"LocalLlamaIndexLLM does not understand {sorted(unknown)}; it accepts "
                                    f"{', '.join(_CALL_OPTIONS)}")
        options = {
            "max_new_tokens": kwargs.get("max_tokens", kwargs.get("max_new_tokens", self.max_tokens)),
            "temperature": kwargs.get("temperature", self.temperature), "seed": kwargs.get("seed", self.seed),
            "logprobs": kwargs.get("logprobs", self.logprobs),
            "top_logprobs": kwargs.get("top_logprobs", self.top_logprobs),
            "stop": kwargs.get("stop", self.stop),
        }
        self._llm.decode_settings(**options)  # bad options fail before the model is loaded
        return options


def _role(message: ChatMessage) -> str:
    return message.role.value if isinstance(message.role, MessageRole) else str(message.role)


def _logprob_rows(tokens: Sequence[str], logprobs: Sequence[float],
                  tops: Sequence[Sequence[tuple[str, float]]]) -> list[list[LogProb]]:
    if not logprobs:
        return []
    rows = tops if tops else [[(t, lp)] for t, lp in zip(tokens, logprobs)]
    return [[LogProb(token=t, logprob=lp, bytes=list(t.encode("utf-8"))) for t, lp in row] for row in rows]


def _generation_logprobs(generation: Generation) -> list[list[LogProb]] | None:
    rows = _logprob_rows(generation.tokens, generation.token_logprobs, generation.top_logprobs)
    return rows or None


def _completion(source: Generation | GenerationChunk, text: str, delta: str | None,
                logprobs: list[list[LogProb]] | None, final: Generation | None) -> CompletionResponse:
    extra: dict[str, Any] = {"tokens": list(source.tokens), "token_logprobs": list(source.token_logprobs)}
    if final is not None:
        extra.update(prompt_tokens=final.input_tokens, completion_tokens=final.output_tokens,
                     total_tokens=final.total_tokens, finish_reason=final.finish_reason, model=final.model,
                     seconds=final.seconds)
        if final.ledger_entry_id is not None:
            extra["ledger_entry_id"] = final.ledger_entry_id
    return CompletionResponse(text=text, delta=delta, logprobs=logprobs, additional_kwargs=extra,
                              raw=final.to_dict() if final is not None else None)


def _chunk_response(piece: GenerationChunk, text: str) -> CompletionResponse:
    rows = _logprob_rows(piece.tokens, piece.token_logprobs, piece.top_logprobs)
    return _completion(piece, text, piece.text, rows or None, final=piece.final)


def _completion_stream(chunks: Iterable[GenerationChunk]) -> Iterator[CompletionResponse]:
    """``text`` is the answer so far, ``delta`` the new piece, ``logprobs`` this piece's tokens'."""
    text = ""
    for piece in chunks:
        text += piece.text
        yield _chunk_response(piece, text)


async def _acompletion_stream(chunks: AsyncIterator[GenerationChunk]) -> AsyncIterator[CompletionResponse]:
    text = ""
    async for piece in chunks:
        text += piece.text
        yield _chunk_response(piece, text)


def _as_chat(response: CompletionResponse) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=response.text),
                        delta=response.delta, logprobs=response.logprobs, raw=response.raw,
                        additional_kwargs=response.additional_kwargs)


__all__ = ["LocalLlamaIndexLLM"]
