"""A tiny word-bigram language model fitted on clean queries: per-token surprisal, in microseconds.

``P(w | v) = (c(v, w) + β·P(w)) / (c(v) + β)`` (a bigram smoothed towards the unigram, which is add-½
smoothed over the vocabulary plus one unknown word). Surprisal is ``-log P`` in nats. A confounder gadget of
words hill-climbed for a router's benefit strings together words that rarely follow each other, so its tokens
are surprising; natural questions are not.

Example:
    >>> lm = BigramLM().fit(["what is the capital of france", "what is the capital of peru"])
    >>> natural, gadget = lm.surprisal("what is the capital of spain"), lm.surprisal("capital what of the is")
    >>> bool(natural.mean() < gadget.mean())
    True
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from rag_routing.errors import InvalidInputError, NotFittedError

TOKEN = re.compile(r"[^\W_]+|[^\w\s]", re.UNICODE)
_START = "<s>"


def tokenize(text: str) -> list[re.Match[str]]:
    """Word and punctuation tokens of ``text`` with their character spans (lower-cased by the caller)."""
    return list(TOKEN.finditer(text))


class BigramLM:
    """Word bigram model smoothed towards an add-½ unigram (see the module docstring)."""

    def __init__(self, beta: float = 2.0):
        if not isinstance(beta, (int, float)) or not beta > 0:
            raise InvalidInputError(f"beta must be a positive number, got {beta!r}")
        self.beta = float(beta)
        self.unigrams_: Counter[str] | None = None

    def fit(self, texts: Sequence[str]) -> BigramLM:
        unigrams: Counter[str] = Counter()
        bigrams: Counter[tuple[str, str]] = Counter()
        contexts: Counter[str] = Counter()
        for text in texts:
            if not isinstance(text, str):
                raise InvalidInputError(f"BigramLM fits on strings, got {type(text).__name__}")
            words = [m.group().lower() for m in tokenize(text)]
            unigrams.update(words)
            previous = [_START, *words[:-1]]
            bigrams.update(zip(previous, words))
            contexts.update(previous)
        if not unigrams:
            raise InvalidInputError("BigramLM needs at least one non-empty text")
        self.unigrams_, self.bigrams_, self.contexts_ = unigrams, bigrams, contexts
        self.total_ = sum(unigrams.values())
        self.vocab_size_ = len(unigrams) + 1  # + the unknown word
        return self

    def _unigram(self, word: str) -> float:
        assert self.unigrams_ is not None
        return (self.unigrams_.get(word, 0) + 0.5) / (self.total_ + 0.5 * self.vocab_size_)

    def surprisal(self, text: str, *, relative: bool = False) -> np.ndarray:
        """``-log P(token | previous token)`` for every token of ``text`` (nats).

        With ``relative``, ``-log P(token | previous) / P(token)`` (minus the pointwise mutual information):
        how much *less* likely the token is after its neighbour than on its own. Word salad made of common
        words is surprising this way even when each word is frequent.
        """
        return self.surprisal_of([m.group().lower() for m in tokenize(text)], relative=relative)

    def surprisal_of(self, words: Sequence[str], *, relative: bool = False) -> np.ndarray:
        if self.unigrams_ is None:
            raise NotFittedError("BigramLM is not fitted; call fit(clean_queries) first")
        out = np.empty(len(words), dtype=np.float64)
        previous = _START
        for i, word in enumerate(words):
            p_uni = self._unigram(word)
            seen = self.bigrams_.get((previous, word), 0)
            p = (seen + self.beta * p_uni) / (self.contexts_.get(previous, 0) + self.beta)
            out[i] = math.log(p_uni / p) if relative else -math.log(p)
            previous = word
        return out

    def perplexity(self, text: str) -> float:
        """``exp(mean surprisal)`` of ``text`` (``nan`` for a text without tokens)."""
        s = self.surprisal(text)
        return float(np.exp(s.mean())) if s.size else math.nan


__all__ = ["BigramLM", "tokenize"]
