"""Answer scoring for extractive QA: SQuAD-style normalisation, exact match, token F1 and containment.

Rajpurkar et al. 2016 ("SQuAD") define the normalisation (lower case, drop punctuation and the articles
a/an/the, collapse white space), exact match and token-level F1; MuSiQue (Trivedi et al. 2022) scores the
same way, taking the maximum over the gold answer and its aliases. ``acc`` is Adaptive-RAG's accuracy
(Jeong et al. 2024): the normalised gold answer appears in the normalised prediction, which is fairer to
small models that answer in a sentence ("The capital is Lima.").

Example:
    >>> score_answer("The capital is Lima.", ["Lima"])
    {'em': 0.0, 'f1': 0.5, 'acc': 1.0}
    >>> exact_match("the Beatles!", "Beatles"), round(token_f1("John Lennon", "Lennon"), 3)
    (1.0, 0.667)
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014"}


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's ``normalize_answer``)."""
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall between the normalised strings."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains_answer(prediction: str, gold: str) -> float:
    """1.0 when the normalised gold answer occurs in the normalised prediction (on word boundaries)."""
    ref = normalize_answer(gold)
    if not ref:
        return 0.0
    return float(f" {ref} " in f" {normalize_answer(prediction)} ")


def score_answer(prediction: str | None, answers: Iterable[str]) -> dict[str, float]:
    """``{"em", "f1", "acc"}``, each the maximum over the gold ``answers`` (answer plus aliases).

    A missing prediction (``None``) scores 0 everywhere.
    """
    golds = [a for a in answers if isinstance(a, str) and a.strip()]
    if prediction is None or not golds:
        return {"em": 0.0, "f1": 0.0, "acc": 0.0}
    return {
        "em": max(exact_match(prediction, g) for g in golds),
        "f1": max(token_f1(prediction, g) for g in golds),
        "acc": max(contains_answer(prediction, g) for g in golds),
    }


__all__ = ["normalize_answer", "exact_match", "token_f1", "contains_answer", "score_answer"]
