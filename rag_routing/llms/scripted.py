"""A scripted stand-in for the local model, for fast tests of code that consumes it (no weights loaded).

:func:`scripted_model` registers, under a folder path, a tiny character-level "model" that answers every
prompt with the same text, one character per token, with a chosen confidence. Pass that path as
``model_path`` to :class:`~rag_routing.llms.local.LocalLLM`, ``LocalChatModel`` or ``LocalLlamaIndexLLM``: the
whole real pipeline (decoding loop, stop sequences, streaming, logprobs, ledger) runs, in milliseconds. It
needs torch (the decoding loop's tensors), not transformers.

Example:
    >>> import tempfile
    >>> path = scripted_model("Paris", folder=tempfile.mkdtemp(), confidence=0.9)
    >>> g = LocalLLM(path).generate("Capital of France?")
    >>> g.text, g.tokens[:2], round(math.exp(g.token_logprobs[0]), 2)
    ('Paris', ['P', 'a'], 0.9)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from rag_routing.errors import InvalidInputError
from rag_routing.llms import loading
from rag_routing.llms.local import LocalLLM  # noqa: F401 - used by the docstring example

_EOS, _UNKNOWN = "</s>", "\x00"


@dataclass
class _CharTokenizer:
    vocab: list[str]
    chat_template: None = None
    eos_token_id: int = 0

    def __post_init__(self) -> None:
        self.ids = {ch: i for i, ch in enumerate(self.vocab)}

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [self.ids.get(ch, 1) for ch in text]}

    def decode(self, ids: list[int], skip_special_tokens: bool = False, **_: Any) -> str:
        return "".join(self.vocab[i] for i in ids if not (skip_special_tokens and i == 0))


class _ScriptedLM:
    """Emits ``answer`` then end-of-sequence; the scripted token gets probability ``confidence``."""

    def __init__(self, answer_ids: list[int], vocab_size: int, confidence: float):
        import torch

        self.answer_ids, self.vocab_size = answer_ids, vocab_size
        rest = (1.0 - confidence) / (vocab_size - 1)
        self.high, self.low = math.log(confidence), math.log(rest) if rest > 0 else -1e4
        self.torch = torch
        self.generation_config = SimpleNamespace(eos_token_id=0)
        self.config = SimpleNamespace(max_position_embeddings=4096)

    def forward(self, input_ids: Any, past_key_values: Any = None, use_cache: bool = True) -> Any:
        step = 0 if past_key_values is None else past_key_values + 1
        target = self.answer_ids[step] if step < len(self.answer_ids) else 0
        logits = self.torch.full((1, 1, self.vocab_size), self.low)
        logits[0, 0, target] = self.high
        return SimpleNamespace(logits=logits, past_key_values=step)

    __call__ = forward

    def parameters(self) -> list[Any]:
        return []


def scripted_model(answer: str, *, folder: str | os.PathLike[str], confidence: float = 0.9,
                   device: str = "cpu", dtype: str = "float32") -> str:
    """Register a stand-in model answering ``answer`` under ``folder`` (created if needed); returns its path."""
    if not isinstance(answer, str) or _UNKNOWN in answer or _EOS in answer:
        raise InvalidInputError("answer must be a string without NUL characters or '</s>'")
    if not 0.0 < confidence <= 1.0:
        raise InvalidInputError(f"confidence must be in (0, 1], got {confidence!r}")
    os.makedirs(folder, exist_ok=True)
    source = loading.resolve_source(folder)
    vocab = [_EOS, _UNKNOWN, *sorted(set(answer))]
    tokenizer = _CharTokenizer(vocab)
    model = _ScriptedLM([tokenizer.ids[ch] for ch in answer], len(vocab), confidence)
    loaded = loading.LoadedModel(model=model, tokenizer=tokenizer, device=device, source=source, load_seconds=0.0,
                                 num_parameters=1_000_000, eos_token_ids=frozenset({0}),
                                 context_window=model.config.max_position_embeddings)
    with loading._LOCK:
        loading._CACHE[(source.name_or_path, None, device, dtype)] = loaded
    return source.name_or_path


__all__ = ["scripted_model"]
