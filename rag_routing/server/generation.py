"""Call any generator the same way: an object with ``generate(messages, ...)`` (``LocalLLM``, the scripted
stand-in, a client wrapper) or a plain callable ``fn(messages) -> str``.

Only the keyword arguments a generator accepts are passed (``max_new_tokens``/``max_tokens``,
``temperature``, ``stop``, ``seed``...; ``logprobs`` only to a generator that names it, ``False`` unless asked). Results may be a string, or
an object with ``text`` (or ``content``) and optionally ``input_tokens``/``output_tokens``/``finish_reason``
(a :class:`~rag_routing.llms.generation.Generation`). Streaming uses ``stream_chunks`` (chunks with ``text``
and a ``final`` generation), else ``stream`` (text pieces), else one piece from ``generate``.

Example:
    >>> gen = GeneratorAdapter("echo", lambda messages: messages[-1]["content"].upper())
    >>> gen.complete([{"role": "user", "content": "hi"}], max_tokens=5).text
    'HI'
    >>> [p if isinstance(p, str) else p.finish_reason for p in gen.stream([{"role": "user", "content": "yo"}])]
    ['YO', 'stop']
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from rag_routing.errors import InvalidInputError

_ALIASES = {"max_tokens": ("max_new_tokens", "max_tokens", "max_output_tokens"), "temperature": ("temperature",),
            "stop": ("stop",), "seed": ("seed",), "top_p": ("top_p",), "presence_penalty": ("presence_penalty",),
            "frequency_penalty": ("frequency_penalty",), "logprobs": ("logprobs",), "top_logprobs": ("top_logprobs",)}
#: Options a generator must name to get (a ``**kwargs`` catch-all does not return log-probabilities).
_NAMED_ONLY = ("logprobs", "top_logprobs")


@dataclass(frozen=True)
class Completion:
    """What a generator returned: text, token counts when it reported them, why it stopped."""

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str = "stop"
    logprobs: dict[str, Any] | None = None  # OpenAI's ``choices[0].logprobs`` when the generator gave them


def _accepted(fn: Any) -> tuple[set[str], bool]:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set(), True
    return set(params), any(p.kind is p.VAR_KEYWORD for p in params.values())


def _as_completion(result: Any) -> Completion:
    if isinstance(result, str):
        return Completion(result)
    text = getattr(result, "text", None)
    if not isinstance(text, str):
        text = getattr(result, "content", None)
    if not isinstance(text, str):
        raise InvalidInputError(f"a generator returned {type(result).__name__}; expected a str or an object "
                                "with a text attribute")
    finish = getattr(result, "finish_reason", "stop")
    to_logprobs = getattr(result, "to_openai_logprobs", None)
    logprobs = to_logprobs() if callable(to_logprobs) and getattr(result, "token_logprobs", None) else None
    return Completion(text, _count(getattr(result, "input_tokens", None)),
                      _count(getattr(result, "output_tokens", None)),
                      "length" if finish == "length" else "stop", logprobs)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class GeneratorAdapter:
    """One candidate's generator behind :meth:`complete` and :meth:`stream` (see the module docstring)."""

    def __init__(self, name: str, target: Any):
        generate = getattr(target, "generate", None)
        if generate is None and not callable(target):
            raise InvalidInputError(f"generator for {name!r} must have generate(messages, ...) or be callable, "
                                    f"got {type(target).__name__}")
        self.name, self.target = name, target
        self._generate = generate if generate is not None else target
        self._params, self._var_kw = _accepted(self._generate)
        self._chunks = getattr(target, "stream_chunks", None)
        self._stream = getattr(target, "stream", None)

    def accepts(self, option: str) -> bool:
        """Whether every generation path of this generator takes ``option`` (an OpenAI name: ``max_tokens``...)."""
        streaming = self._chunks if self._chunks is not None else self._stream  # the one stream() uses
        paths = [self._generate] + ([streaming] if streaming is not None else [])
        for fn in paths:
            names, var_kw = (self._params, self._var_kw) if fn is self._generate else _accepted(fn)
            if (option in _NAMED_ONLY or not var_kw) and not any(alias in names
                                                                 for alias in _ALIASES.get(option, (option,))):
                return False
        return True

    def check_options(self, options: dict[str, Any], explicit: set[str],
                      neutral: dict[str, tuple[Any, ...]] | None = None) -> None:
        """:class:`InvalidInputError` (with ``param``) for an option the client set that this generator cannot
        honour: a request is refused rather than answered as if the option had been applied."""
        for name in sorted(explicit):
            value = options.get(name)
            if value is None or value in (neutral or {}).get(name, ()) or self.accepts(name):
                continue
            error = InvalidInputError(f"candidate {self.name!r} does not support {name!r}; remove it from the "
                                      "request or choose another model")
            error.param, error.code = name, "unsupported_parameter"  # type: ignore[attr-defined]
            raise error

    def _kwargs(self, fn: Any, options: dict[str, Any]) -> dict[str, Any]:
        names, var_kw = (self._params, self._var_kw) if fn is self._generate else _accepted(fn)
        out: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            aliases = _ALIASES.get(key, (key,))
            for alias in aliases:
                if alias in names:
                    out[alias] = value
                    break
            else:
                if var_kw and key not in _NAMED_ONLY:  # a generator taking **kwargs gets the OpenAI name
                    out[key] = value
        if "logprobs" in names and not options.get("logprobs"):
            out["logprobs"] = False  # not asked for: do not compute them
        return out

    def complete(self, messages: list[dict[str, str]], **options: Any) -> Completion:
        """Generate a whole answer."""
        return _as_completion(self._generate(messages, **self._kwargs(self._generate, options)))

    def stream(self, messages: list[dict[str, str]], **options: Any) -> Iterator[str | Completion]:
        """Text pieces, then one :class:`Completion` with the whole text and usage."""
        if self._chunks is not None:
            return self._from_chunks(self._chunks(messages, **self._kwargs(self._chunks, options)))
        if self._stream is not None:
            return self._from_pieces(self._stream(messages, **self._kwargs(self._stream, options)))
        return self._single(messages, options)

    @staticmethod
    def _from_chunks(chunks: Iterator[Any]) -> Iterator[str | Completion]:
        with closing(chunks):  # closing early still lets the generator record what ran
            parts: list[str] = []
            final = None
            for chunk in chunks:
                if chunk.text:
                    parts.append(chunk.text)
                    yield chunk.text
                if getattr(chunk, "final", None) is not None:
                    final = chunk.final
            yield _as_completion(final) if final is not None else Completion("".join(parts))

    @staticmethod
    def _from_pieces(pieces: Iterator[Any]) -> Iterator[str | Completion]:
        parts: list[str] = []
        for piece in pieces:
            text = piece if isinstance(piece, str) else _as_completion(piece).text
            if text:
                parts.append(text)
                yield text
        yield Completion("".join(parts))

    def _single(self, messages: list[dict[str, str]], options: dict[str, Any]) -> Iterator[str | Completion]:
        completion = self.complete(messages, **options)
        if completion.text:
            yield completion.text
        yield completion


__all__ = ["GeneratorAdapter", "Completion"]
