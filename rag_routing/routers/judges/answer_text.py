"""Answer text as judges compare it: normalised free text, multiple-choice letters, code blocks.

* :func:`normalize_answer`: SQuAD-style normalisation of the first line (case, punctuation, articles,
  whitespace), so "The Eiffel Tower." and "eiffel tower" agree;
* :func:`extract_choice`: the option letter of a multiple-choice answer ("B", "(B)", "B) oil", "Answer: B");
* :func:`answer_key`: the key two answers are compared by (a letter in ``"choice"`` mode, else the
  normalised text), shared by the consistency judge, the answer scorer and the cascades;
* :func:`looks_like_choices`: whether most answers of a sample are bare option letters;
* :func:`extract_code`: the code of a reply (fenced blocks joined, or the whole text).

Example:
    >>> normalize_answer("  The Eiffel Tower.\\nIt is in Paris.")
    'eiffel tower'
    >>> extract_choice("Answer: (B) oil"), extract_choice("I do not know")
    ('B', None)
    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```")
    'def f():\\n    return 1'
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)
_CHOICE = re.compile(r"^\s*(?:answer\s*(?:is)?\s*[:\-]?\s*)?[\(\[]?([A-J])(?:[\)\]\.:,]|\s|$)", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_MAX_KEY = 200


def normalize_answer(text: str) -> str:
    """Lower-cased first non-empty line without punctuation, articles or extra spaces (at most 200 chars)."""
    line = next((part for part in text.strip().splitlines() if part.strip()), "")
    line = _ARTICLES.sub(" ", line.lower().translate(_PUNCT))
    return " ".join(line.split())[:_MAX_KEY]


def extract_choice(text: str, letters: str = "ABCDEFGHIJ") -> str | None:
    """The option letter an answer starts with (upper case), or ``None``.

    A leading "I" or lower-case letter counts only as a label ("I)", "b.", "c"): "I do not know" and "a
    person ..." are prose.
    """
    match = _CHOICE.match(text)
    if match is None:
        return None
    letter = match.group(1).upper()
    if letter not in letters.upper():
        return None
    rest = text[match.end(1):match.end(1) + 1]
    labelled = rest in (")", ".", "]", ":", ",", "")
    if (letter == "I" or match.group(1).islower()) and not labelled:
        return None  # "I do not know", "a person ..." are prose, not options I and A
    return letter


def answer_key(text: str, mode: str = "text") -> str:
    """The comparison key of an answer: its option letter (``"choice"``; ``"?"`` if none) or normalised text."""
    if mode == "choice":
        return extract_choice(text) or "?"
    if mode != "text":
        raise ValueError(f"answer mode must be 'text' or 'choice', got {mode!r}")
    return normalize_answer(text)


def looks_like_choices(answers: Sequence[str | None], share: float = 0.8) -> bool:
    """True when at least ``share`` of the known answers are a bare option letter (with optional ')' )."""
    known = [a for a in answers if a is not None]
    if not known:
        return False
    bare = sum(1 for a in known if extract_choice(a) is not None and len(a.strip()) <= 3)
    return bare >= share * len(known)


def extract_code(text: str, language: str | None = "python") -> str:
    """The code in a reply: its fenced blocks (of ``language`` or untagged) joined, else the whole text."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    wanted = [body for tag, body in blocks if not tag or language is None or tag in (language, language[:2])]
    if wanted:
        return "\n\n".join(body.rstrip() for body in wanted)
    return text.strip()


__all__ = ["normalize_answer", "extract_choice", "answer_key", "looks_like_choices", "extract_code"]
