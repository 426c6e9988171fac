"""What one local-model call returned: text, usage and token log-probabilities, framework-free.

:class:`Generation` is the result of :meth:`LocalLLM.generate <rag_routing.llms.local.LocalLLM.generate>`;
:class:`GenerationChunk` is one piece of :meth:`LocalLLM.stream_chunks`. Both are plain dataclasses so that
judges (token margin, sequence probability) read log-probabilities without importing a framework.
:func:`openai_logprobs` writes them in OpenAI's chat-completions shape, the shape LangChain's ``ChatOpenAI``
puts in ``response_metadata["logprobs"]``, so a judge written against OpenAI reads ours unchanged.

Log-probabilities are the model's own distribution (softmax of the raw logits, temperature 1), whatever
sampling temperature produced the token, as OpenAI reports them.

Example:
    >>> g = Generation(text="Paris", input_tokens=12, output_tokens=2, token_logprobs=[-0.1],
    ...                top_logprobs=[[("Paris", -0.1), ("Lyon", -2.5)]], tokens=["Paris"],
    ...                finish_reason="stop", model="tiny", seconds=0.05)
    >>> g.usage
    {'input_tokens': 12, 'output_tokens': 2, 'total_tokens': 14}
    >>> entry = g.to_openai_logprobs()["content"][0]
    >>> entry["token"], entry["logprob"], [t["token"] for t in entry["top_logprobs"]]
    ('Paris', -0.1, ['Paris', 'Lyon'])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rag_routing.errors import InvalidInputError

FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True, slots=True)
class Generation:
    """The result of one generation call.

    Attributes:
        text: the generated text (end-of-turn token and any stop sequence removed).
        input_tokens: prompt tokens, chat template included.
        output_tokens: tokens the model generated, including the end-of-turn token and tokens cut by a stop
            sequence (what the call computed, and what the ledger charges).
        token_logprobs: log-probability of each token of ``tokens`` (empty when logprobs were not asked for).
        top_logprobs: per token of ``tokens``, the ``k`` most likely tokens and their log-probabilities,
            most likely first (empty when logprobs were not asked for).
        tokens: the generated tokens as text pieces (``"".join(tokens)`` is ``text`` up to a stop cut).
        finish_reason: ``"stop"`` (end of turn or a stop sequence) or ``"length"`` (max tokens reached).
        model: the model's name.
        seconds: wall-clock seconds of the call (model loading excluded).
        token_ids: the tokenizer ids of ``tokens``.
        ledger_entry_id: id of the ledger entry the call was recorded as, if an ambient ledger was active.
    """

    text: str
    input_tokens: int
    output_tokens: int
    token_logprobs: list[float]
    top_logprobs: list[list[tuple[str, float]]]
    tokens: list[str]
    finish_reason: str
    model: str
    seconds: float
    token_ids: list[int] = field(default_factory=list)
    ledger_entry_id: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def usage(self) -> dict[str, int]:
        """``{"input_tokens", "output_tokens", "total_tokens"}`` (LangChain's ``usage_metadata`` keys)."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens}

    @property
    def sequence_logprob(self) -> float:
        """Sum of the token log-probabilities (log-probability of the whole answer); 0.0 for no tokens."""
        return float(sum(self.token_logprobs))

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_openai_logprobs(self) -> dict[str, list[dict[str, Any]]]:
        """The log-probabilities as OpenAI's ``choices[0].logprobs`` (see :func:`openai_logprobs`)."""
        return openai_logprobs(self.tokens, self.token_logprobs, self.top_logprobs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field."""
        return {
            "text": self.text, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "token_logprobs": list(self.token_logprobs),
            "top_logprobs": [[[t, lp] for t, lp in row] for row in self.top_logprobs],
            "tokens": list(self.tokens), "finish_reason": self.finish_reason, "model": self.model,
            "seconds": self.seconds, "token_ids": list(self.token_ids), "ledger_entry_id": self.ledger_entry_id,
        }


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """One piece of a streamed generation.

    ``text`` is the new text; ``tokens`` / ``token_logprobs`` / ``top_logprobs`` are the tokens whose text is
    complete as of this chunk (so concatenating every chunk's lists gives the final :class:`Generation`'s).
    The last chunk has ``final`` set: the whole :class:`Generation`, with usage and ``finish_reason``.
    """

    text: str
    tokens: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[str, float]]] = field(default_factory=list)
    final: Generation | None = None

    def to_openai_logprobs(self) -> dict[str, list[dict[str, Any]]]:
        return openai_logprobs(self.tokens, self.token_logprobs, self.top_logprobs)


def openai_logprobs(tokens: Sequence[str], token_logprobs: Sequence[float],
                    top_logprobs: Sequence[Sequence[tuple[str, float]]]) -> dict[str, list[dict[str, Any]]]:
    """Log-probabilities in OpenAI's chat-completions shape.

    ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}, ...]}``;
    ``{"content": []}`` when there are no log-probabilities. ``top_logprobs`` may be empty (then every entry's
    ``top_logprobs`` is ``[]``, as OpenAI returns with ``top_logprobs=0``).

    Example:
        >>> openai_logprobs(["Hi"], [-0.5], [])["content"][0]
        {'token': 'Hi', 'logprob': -0.5, 'bytes': [72, 105], 'top_logprobs': []}
    """
    if not token_logprobs:
        return {"content": []}
    if len(tokens) != len(token_logprobs):
        raise InvalidInputError(f"{len(tokens)} tokens but {len(token_logprobs)} log-probabilities")
    if top_logprobs and len(top_logprobs) != len(tokens):
        raise InvalidInputError(f"{len(tokens)} tokens but {len(top_logprobs)} top_logprobs rows")
    content = []
    for i, (token, logprob) in enumerate(zip(tokens, token_logprobs)):
        alternatives = top_logprobs[i] if top_logprobs else ()
        content.append({
            "token": token, "logprob": _logprob(logprob), "bytes": list(token.encode("utf-8")),
            "top_logprobs": [{"token": t, "logprob": _logprob(lp), "bytes": list(t.encode("utf-8"))}
                             for t, lp in alternatives],
        })
    return {"content": content}


def _logprob(value: float) -> float:
    value = float(value)
    if math.isnan(value) or value > 0:
        raise InvalidInputError(f"a log-probability must be <= 0, got {value!r}")
    return value


__all__ = ["Generation", "GenerationChunk", "openai_logprobs", "FINISH_REASONS"]
