"""A small, deterministic word tokenizer for BM25: lowercase, Unicode words, optional English stopwords.

No stemming (it would need a dependency); pass your own callable to ``BM25Retriever(tokenizer=...)`` for
that. The stopword list is a constant shipped here, so results never depend on a downloaded resource.

Example:
    >>> WordTokenizer()("The Dewey Decimal Classification, 18th édition!")
    ['dewey', 'decimal', 'classification', '18th', 'édition']
    >>> WordTokenizer(stopwords=None)("The cat")
    ['the', 'cat']
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Common English function words (articles, pronouns, auxiliaries, prepositions, conjunctions).
ENGLISH_STOPWORDS: frozenset[str] = frozenset("""
a about above after again against all am an and any are aren as at be because been before being below
between both but by can cannot could couldn did didn do does doesn doing don down during each few for from
further had hadn has hasn have haven having he her here hers herself him himself his how i if in into is isn
it its itself just let ll me more most mustn my myself no nor not now of off on once only or other ought our
ours ourselves out over own re s same shan she should shouldn so some such t than that the their theirs them
themselves then there these they this those through to too under until up ve very was wasn we were weren
what when where which while who whom why will with won would wouldn you your yours yourself yourselves
""".split())

_WORD = re.compile(r"\w+", re.UNICODE)


class WordTokenizer:
    """Splits text into lowercase ``\\w+`` words, dropping ``stopwords`` and words shorter than ``min_length``.

    Args:
        stopwords: words to drop (default :data:`ENGLISH_STOPWORDS`; ``None`` keeps every word).
        min_length: shortest word kept, in characters.
    """

    def __init__(self, stopwords: Iterable[str] | None = ENGLISH_STOPWORDS, min_length: int = 1):
        self.stopwords = frozenset(w.lower() for w in stopwords) if stopwords is not None else frozenset()
        self.min_length = int(min_length)

    def __call__(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        drop, shortest = self.stopwords, self.min_length
        return [w for w in words if len(w) >= shortest and w not in drop]

    def __repr__(self) -> str:
        return f"WordTokenizer(stopwords={len(self.stopwords)} words, min_length={self.min_length})"


__all__ = ["WordTokenizer", "ENGLISH_STOPWORDS"]
