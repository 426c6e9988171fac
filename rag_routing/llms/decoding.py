"""The token loop of :class:`~rag_routing.llms.local.LocalLLM`: one forward pass per token, with a KV cache.

Why not ``model.generate``: one loop serves both ``generate`` and ``stream``, so a streamed answer is the
non-streamed one by construction, with each token's log-probability available *as it is produced* (a
streamed LangChain chunk carries its own logprobs, as ChatOpenAI's do); stop sequences are cut in text,
never leaked to a stream; and sampling draws from a private ``torch.Generator``, so a seeded call is
reproducible without touching torch's global random state. Greedy decoding gives the same tokens as
``model.generate(do_sample=False)``.

Log-probabilities are ``log_softmax`` of the raw logits (temperature 1): the model's own distribution.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rag_routing.llms.generation import Generation, GenerationChunk
from rag_routing.llms.loading import LoadedModel


@dataclass(frozen=True, slots=True)
class DecodeSettings:
    """Validated settings of one call (see :meth:`LocalLLM.generate` for their meaning)."""

    max_new_tokens: int
    temperature: float
    seed: int | None
    stop: tuple[str, ...]
    logprobs: bool
    top_logprobs: int


def decode(loaded: LoadedModel, prompt_ids: Sequence[int], settings: DecodeSettings, *, model_name: str,
           started: float | None = None) -> Iterator[GenerationChunk]:
    """Generate from ``prompt_ids``; yields text chunks, the last one with ``final`` set."""
    import torch

    started = time.perf_counter() if started is None else started
    state = _TextState(loaded.tokenizer, settings.stop, settings.logprobs)
    sampler = _Sampler(torch, loaded.device, settings.temperature, settings.seed)
    forward = _Forward(torch, loaded.model, loaded.device, prompt_ids)
    computed, finish = 0, "length"
    for _ in range(settings.max_new_tokens):
        logits = forward.next_logits()
        token_id = sampler.pick(logits)
        computed += 1
        if token_id in loaded.eos_token_ids:
            finish = "stop"
            break
        logprob, top = _logprobs(torch, logits, token_id, settings, loaded.tokenizer)
        if state.add(token_id, logprob, top):
            finish = "stop"
            break
        chunk = state.flush()
        if chunk is not None:
            yield chunk
        forward.feed(token_id)
    last = state.flush(final=True)
    generation = Generation(
        text=state.text, input_tokens=len(prompt_ids), output_tokens=computed,
        token_logprobs=state.kept("logprobs"), top_logprobs=state.kept("tops"), tokens=state.kept("pieces"),
        finish_reason=finish, model=model_name, seconds=time.perf_counter() - started,
        token_ids=state.kept("ids"),
    )
    yield replace(last, final=generation)


class _Forward:
    """Incremental forward passes over one sequence, keeping the KV cache."""

    def __init__(self, torch: Any, model: Any, device: str, prompt_ids: Sequence[int]):
        self.torch, self.model = torch, model
        self.pending = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
        self.past: Any = None
        self.cache_arg, self.extra = _forward_arguments(model)

    def next_logits(self) -> Any:
        # inference_mode around each step only: a generator must not leave grad mode switched off in its
        # caller's code between two yields.
        with self.torch.inference_mode():
            out = self.model(input_ids=self.pending, use_cache=True, **{self.cache_arg: self.past}, **self.extra)
        self.past = getattr(out, self.cache_arg)
        return out.logits[0, -1].float()

    def feed(self, token_id: int) -> None:
        self.pending = self.torch.tensor([[token_id]], dtype=self.torch.long, device=self.pending.device)


def _forward_arguments(model: Any) -> tuple[str, dict[str, int]]:
    """The KV-cache argument's name (``cache`` since transformers 5.x, ``past_key_values`` before) and, where
    supported, a request for the last position's logits only (the prompt's are prompt_len x vocab floats)."""
    params = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return cache_arg, {name: 1}
    return cache_arg, {}


class _Sampler:
    """Greedy at temperature 0; otherwise sampling from a private, optionally seeded, generator."""

    def __init__(self, torch: Any, device: str, temperature: float, seed: int | None):
        self.torch, self.temperature = torch, temperature
        self.generator = None
        if temperature > 0:
            self.generator = torch.Generator(device=device)
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(seed)

    def pick(self, logits: Any) -> int:
        if self.generator is None:
            return int(logits.argmax())
        probs = self.torch.softmax(logits / self.temperature, dim=-1)
        return int(self.torch.multinomial(probs, 1, generator=self.generator))


def _logprobs(torch: Any, logits: Any, token_id: int, settings: DecodeSettings,
              tokenizer: Any) -> tuple[float, list[tuple[str, float]]]:
    if not settings.logprobs:
        return 0.0, []
    row = torch.log_softmax(logits, dim=-1)
    top: list[tuple[str, float]] = []
    if settings.top_logprobs:
        values, ids = torch.topk(row, min(settings.top_logprobs, row.numel()))
        top = [(_piece(tokenizer, i), v) for i, v in zip(ids.tolist(), values.tolist())]
    return float(row[token_id]), top


def _piece(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)


class _TextState:
    """The generated text so far, what was already streamed, and which tokens that text covers.

    Text is streamed only once it is final: never the start of a possible stop sequence, never an
    incomplete UTF-8 character (decoded as U+FFFD until its last byte arrives).
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...], with_logprobs: bool):
        self.tokenizer, self.stop, self.with_logprobs = tokenizer, stop, with_logprobs
        self.ids: list[int] = []
        self.pieces: list[str] = []
        self.logprobs: list[float] = []
        self.tops: list[list[tuple[str, float]]] = []
        self.ends: list[int] = []  # ends[i]: length of the text decoded from ids[: i + 1]
        self.text = ""
        self.emitted = 0  # characters of text already streamed
        self.committed = 0  # tokens already streamed
        self.cut: int | None = None  # where a stop sequence starts, once one appeared

    def add(self, token_id: int, logprob: float, top: list[tuple[str, float]]) -> bool:
        """Append a token; True when the text now contains a stop sequence (the text is cut there)."""
        self.ids.append(token_id)
        self.pieces.append(_piece(self.tokenizer, token_id))
        self.logprobs.append(logprob)
        self.tops.append(top)
        self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        self.ends.append(len(self.text))
        found = [i for i in (self.text.find(s, self.emitted) for s in self.stop) if i >= 0]
        if found:
            self.cut = min(found)
            self.text = self.text[: self.cut]
            return True
        return False

    def kept(self, name: str) -> list[Any]:
        """Tokens that are part of the answer: all of them, or after a stop cut those starting before it."""
        values = getattr(self, name)
        if name in ("logprobs", "tops") and not self.with_logprobs:
            return []
        if self.cut is None:
            return list(values)
        starts = [0, *self.ends[:-1]]
        return list(values[: max(self.committed, sum(1 for s in starts if s < self.cut))])

    def flush(self, final: bool = False) -> GenerationChunk | None:
        """What can be streamed now (everything that is left when ``final``); None when nothing is new."""
        if final:
            safe, upto = len(self.text), len(self.kept("ids"))
        else:
            safe = len(self.text) - _held_back(self.text, self.stop)
            while safe > self.emitted and self.text[safe - 1] == "\ufffd":
                safe -= 1
            upto = self.committed
            while upto < len(self.ends) and self.ends[upto] <= safe:
                upto += 1
        if not final and safe <= self.emitted and upto == self.committed:
            return None
        start, self.committed = self.committed, max(self.committed, upto)
        delta, self.emitted = self.text[self.emitted: max(safe, self.emitted)], max(safe, self.emitted)
        with_lp = self.with_logprobs
        return GenerationChunk(delta, self.pieces[start:upto], self.ids[start:upto],
                               self.logprobs[start:upto] if with_lp else [], self.tops[start:upto] if with_lp else [])


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that could be the start of a stop sequence."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


__all__ = ["DecodeSettings", "decode"]
