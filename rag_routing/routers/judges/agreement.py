"""`AgreementJudge`: trust an answer as far as the other models of the cascade gave the same one.

M. Yue et al. (2024), "Large Language Model Cascades with Mixture of Thought Representations for Cost-Efficient
Reasoning": answers that agree are usually right, disagreement sends the question on. Here the answers come from
*different* models already called by the cascade (the vote variant), so judging costs nothing. Votes are weighted
as in the optimal weighted majority rule (S. Nitzan and J. Paroush 1982, "Optimal decision rules in uncertain
dichotomous choice situations"): a model of accuracy ``p`` weighs ``log(p / (1 - p))``. Estimates

    P(correct) = sigmoid( w(candidate) + Σ_agreeing w(j) − Σ_disagreeing w(j) )

over the earlier answers ``previous`` of the cascade. ``p`` is each model's reliability: given
(``reliability={name: accuracy}``), learned by :meth:`AgreementJudge.fit` from recorded outcomes (a smoothed
accuracy), else ``default_reliability``; a model no better than a coin (p <= 0.5) weighs 0.

Answers are compared by key (:func:`~.answer_text.answer_key`): the option letter (``mode="choice"``), normalised
text (``"text"``), or the first group of ``answer_pattern`` when it matches; ``"auto"`` picks ``"choice"`` when
most answers are bare option letters. An earlier answer without a key (an unparsable option, an empty reply)
abstains; a judged answer without a key scores 0. With fewer than ``min_answers`` answers that have a key there
is no evidence: the score is 0 and the cascade asks another model. Runs locally: $0, its seconds are recorded.

Example:
    >>> judge = AgreementJudge(reliability={"small": 0.7, "mid": 0.8}, mode="choice")
    >>> judge.score("Which?", "B", candidate="mid")                       # nobody to agree with: ask on
    0.0
    >>> round(judge.score("Which?", "B", candidate="mid", previous=[("small", "B")]), 3)   # 2.2 log-odds
    0.903
    >>> round(judge.score("Which?", "B", candidate="mid", previous=[("small", "C")]), 3)   # 0.8 beats 0.7 barely
    0.632
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.routers.judges.answer_text import answer_key, looks_like_choices
from rag_routing.routers.judges.base import Judge, JudgeInput, Previous, _items, _unit
from rag_routing.routers.persistence import read_state, write_state

_KIND = "judge:agreement"
_MAX_RELIABILITY = 0.99  # one model never outvotes all others by itself beyond log(99) ≈ 4.6


def vote_weight(reliability: np.ndarray | float) -> np.ndarray:
    """Log-odds weight ``log(p / (1 - p))`` of a voter of accuracy ``p``; 0 for ``p <= 0.5``."""
    p = np.clip(np.asarray(reliability, dtype=np.float64), 0.5, _MAX_RELIABILITY)
    return np.log(p / (1.0 - p))


def weighted_agreement(own_keys: np.ndarray, own_weights: np.ndarray, previous_keys: np.ndarray,
                       previous_weights: np.ndarray, min_answers: int = 2) -> np.ndarray:
    """``(n,)`` P(correct) of each row's answer from the earlier answers of its row, vectorised.

    ``own_keys`` ``(n,)`` and ``previous_keys`` ``(n, p)`` are comparison keys (``""`` = no key: abstains);
    the weights are :func:`vote_weight` of each answering model, same shapes.
    """
    own = np.asarray(own_keys, dtype=str)
    n = own.shape[0]
    prev = np.asarray(previous_keys, dtype=str).reshape(n, -1)
    prev_w = np.asarray(previous_weights, dtype=np.float64).reshape(n, -1)
    voting = prev != ""
    same = voting & (prev == own[:, None])
    logits = np.asarray(own_weights, dtype=np.float64) + (np.where(same, prev_w, 0.0)
                                                          - np.where(voting & ~same, prev_w, 0.0)).sum(axis=1)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -40.0, 40.0)))
    evidence = (own != "") & (1 + voting.sum(axis=1) >= min_answers)
    return np.where(evidence, scores, 0.0)


class AgreementJudge(Judge):
    """P(answer correct) from a reliability-weighted vote of the earlier answers of the cascade (Yue et al. 2024,
    vote variant; weights of Nitzan and Paroush 1982). See the module docstring.

    Args:
        reliability: accuracy per candidate name (used for names :meth:`fit` did not see).
        default_reliability: accuracy assumed for a candidate of unknown reliability.
        mode: ``"auto"``, ``"choice"`` or ``"text"`` (how answers are compared).
        answer_pattern: regex whose first group (or whole match) is the key, tried before ``mode``.
        min_answers: answers with a key (the judged one included) needed before any trust; fewer score 0.
        prior_strength: pseudo-answers at ``default_reliability`` that :meth:`fit` adds per candidate.
        threshold: accept at or above this probability (0.8: with equal voters, two more agreeing than not).
    """

    name = "agreement"

    def __init__(self, *, reliability: dict[str, float] | None = None, default_reliability: float = 0.75,
                 mode: str = "auto", answer_pattern: str | None = None, min_answers: int = 2,
                 prior_strength: float = 4.0, threshold: float = 0.8):
        super().__init__(threshold=threshold)
        if mode not in ("auto", "choice", "text"):
            raise InvalidInputError(f"mode must be 'auto', 'choice' or 'text', got {mode!r}")
        if isinstance(min_answers, bool) or not isinstance(min_answers, int) or min_answers < 1:
            raise InvalidInputError(f"min_answers must be an integer >= 1, got {min_answers!r}")
        self.reliability = _reliabilities(reliability or {})
        self.default_reliability = _probability(default_reliability, "default_reliability")
        self.prior_strength = _unit(prior_strength, "prior_strength")
        if self.prior_strength < 0:
            raise InvalidInputError(f"prior_strength must be >= 0, got {prior_strength!r}")
        self.mode, self.min_answers = mode, min_answers
        self.answer_pattern = answer_pattern
        self._pattern = None if answer_pattern is None else re.compile(answer_pattern)
        self.reliability_: dict[str, float] = dict(self.reliability)
        self.mode_: str | None = None if mode == "auto" else mode

    # -- learning ---------------------------------------------------------------------------------------------
    def fit(self, candidates: Sequence[str], correct: Sequence[float],
            answers: Sequence[str | None] | None = None) -> AgreementJudge:
        """Learn each candidate's reliability from rows of (candidate, 0/1 correct); NaN labels are left out.

        A candidate's reliability is its accuracy shrunk towards ``default_reliability`` by ``prior_strength``
        pseudo-answers. ``answers`` (the recorded answer texts) settle ``mode="auto"``. Returns ``self``.
        """
        names = np.asarray([str(c) for c in candidates], dtype=object)
        labels = np.asarray(correct, dtype=np.float64).ravel()
        if names.shape[0] != labels.shape[0] or (answers is not None and len(answers) != labels.shape[0]):
            raise InvalidInputError(f"candidates, correct and answers must align; got {names.shape[0]} candidates "
                                    f"and {labels.shape[0]} labels")
        known = ~np.isnan(labels)
        if not known.any() or not set(np.unique(labels[known])) <= {0.0, 1.0}:
            raise InvalidInputError("correct must hold 0/1 labels (NaN = unknown), at least one of them known")
        learned = dict(self.reliability)
        for name in dict.fromkeys(names[known]):
            hits = labels[known & (names == name)]
            learned[str(name)] = float((hits.sum() + self.prior_strength * self.default_reliability)
                                       / (hits.size + self.prior_strength))
        self.reliability_ = learned
        if self.mode == "auto" and answers is not None:
            self.mode_ = "choice" if looks_like_choices(answers) else "text"
        return self

    # -- keys and weights -------------------------------------------------------------------------------------
    def weights(self, candidates: Sequence[str | None]) -> np.ndarray:
        """:func:`vote_weight` of each named candidate (``default_reliability`` for unknown names)."""
        return vote_weight([self.reliability_.get(str(c), self.default_reliability) if c is not None
                            else self.default_reliability for c in candidates])

    def key(self, text: str | None, mode: str | None = None) -> str:
        """The comparison key of an answer (``""`` when it has none)."""
        if text is None:
            return ""
        if self._pattern is not None:
            match = self._pattern.search(text)
            if match is not None:
                return (match.group(1) if match.groups() else match.group(0)).strip().lower()
        key = answer_key(text, mode or self.mode_ or "text")
        return "" if key == "?" else key

    def _mode_for(self, item: JudgeInput) -> str:
        if self.mode_ is not None:
            return self.mode_
        return "choice" if looks_like_choices([item.answer, *(a for _, a in item.previous)], share=0.5) else "text"

    # -- scoring ----------------------------------------------------------------------------------------------
    def score_batch(self, queries: Sequence[str], answers: Sequence[str], contexts: Sequence[str | None] | None = None,
                    *, generations: Sequence[Any] | None = None, candidates: Sequence[str | None] | None = None,
                    previous: Sequence[Previous | None] | None = None) -> np.ndarray:
        """``(n,)`` P(correct) of each answer given its ``previous`` answers (vectorised after parsing)."""
        started = time.perf_counter()
        items = _items(queries, answers, contexts, generations, candidates, previous)
        if not items:
            return np.zeros(0)
        width = max(1, max(len(item.previous) for item in items))
        own, own_w = np.empty(len(items), dtype=object), self.weights([item.candidate for item in items])
        prev = np.full((len(items), width), "", dtype=object)
        prev_w = np.zeros((len(items), width))
        for i, item in enumerate(items):
            mode = self._mode_for(item)
            own[i] = self.key(item.answer, mode)
            for j, (name, text) in enumerate(item.previous):
                prev[i, j] = self.key(text, mode)
            if item.previous:
                prev_w[i, :len(item.previous)] = self.weights([name for name, _ in item.previous])
        scores = weighted_agreement(own, own_w, prev, prev_w, self.min_answers)
        self._record_compute(started, n=len(items))
        return scores

    def _score(self, item: JudgeInput) -> float:
        return float(self.score_batch([item.query], [item.answer], candidates=[item.candidate],
                                      previous=[item.previous])[0])

    # -- persistence ------------------------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The judge as (JSON-able config, numeric arrays)."""
        names = sorted(self.reliability_)
        meta = {"kind": _KIND, "mode": self.mode, "mode_fitted": self.mode_, "answer_pattern": self.answer_pattern,
                "min_answers": self.min_answers, "default_reliability": self.default_reliability,
                "prior_strength": self.prior_strength, "threshold": self.threshold, "candidates": names,
                "given": sorted(self.reliability)}
        return meta, {"reliability": np.array([self.reliability_[n] for n in names], dtype=np.float64),
                      "given_reliability": np.array([self.reliability[n] for n in sorted(self.reliability)],
                                                    dtype=np.float64)}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> AgreementJudge:
        """Rebuild a judge from :meth:`get_state` output (:class:`CorruptStateError` if it is malformed)."""
        if meta.get("kind") != _KIND:
            raise CorruptStateError("the saved state does not hold an AgreementJudge")
        try:
            given = dict(zip([str(n) for n in meta["given"]], np.asarray(arrays["given_reliability"], float).tolist(),
                             strict=True))
            judge = cls(reliability=given, default_reliability=float(meta["default_reliability"]),
                        mode=str(meta["mode"]), answer_pattern=meta["answer_pattern"],
                        min_answers=int(meta["min_answers"]), prior_strength=float(meta["prior_strength"]),
                        threshold=float(meta["threshold"]))
            learned = np.asarray(arrays["reliability"], float).tolist()
            judge.reliability_ = _reliabilities(dict(zip([str(n) for n in meta["candidates"]], learned, strict=True)))
            judge.mode_ = None if meta["mode_fitted"] is None else str(meta["mode_fitted"])
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise CorruptStateError(f"saved AgreementJudge state is incomplete or malformed ({exc})") from exc
        if judge.mode_ not in (None, "choice", "text"):
            raise CorruptStateError(f"saved AgreementJudge has an unknown mode {judge.mode_!r}")
        return judge

    def save(self, path: str | Path) -> Path:
        """Write the judge to ``path`` (``.npz``, no pickle); returns the path written."""
        return write_state(path, *self.get_state())

    @classmethod
    def load(cls, path: str | Path) -> AgreementJudge:
        """Load a judge written by :meth:`save`."""
        meta, arrays = read_state(path)
        try:
            return cls.from_state(meta, arrays)
        except CorruptStateError as exc:
            raise CorruptStateError(f"{path}: {exc}") from exc


def _probability(value: Any, what: str) -> float:
    p = _unit(value, what)
    if not 0.0 <= p <= 1.0:
        raise InvalidInputError(f"{what} must be in [0, 1], got {value!r}")
    return p


def _reliabilities(values: dict[str, float]) -> dict[str, float]:
    if not isinstance(values, dict):
        raise InvalidInputError(f"reliability must be a dict of candidate name -> accuracy, got "
                                f"{type(values).__name__}")
    return {str(name): _probability(p, f"the reliability of {name!r}") for name, p in values.items()}


__all__ = ["AgreementJudge", "vote_weight", "weighted_agreement"]
