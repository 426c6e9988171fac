"""`AnswerScorerJudge`: a small model trained on (query, answer) -> correct, FrugalGPT's scoring function.

L. Chen, M. Zaharia and J. Zou (2023), "FrugalGPT: How to Use Large Language Models While Reducing Cost and
Improving Performance": a cheap learned scorer ``g(query, answer)`` estimates whether an answer is right, and
the cascade stops at the first answer it trusts. Estimates P(correct | query, answer, which model answered,
what earlier models of the cascade answered); runs locally, so its own cost is $0 (recorded with its seconds).

Features (all saved as arrays, no pickle):

* the query: a featurizer's vector (default TF-IDF + LSA, 64 dimensions, fitted on the training queries; or the
  benchmark's MiniLM vectors passed as ``query_features``) projected on its first ``query_dims`` principal
  components;
* the answer: its key (option letter in ``"choice"`` mode, normalised text otherwise) one-hot over the frequent
  keys, and its length;
* the candidate that answered (one-hot);
* agreement with the earlier answers of the cascade (``previous``): per earlier candidate whether it answered
  and whether it answered the same, the agreeing share and the number of earlier answers. FrugalGPT's
  DistilBERT reads the answer text; with short answers (a letter), agreement between models is what tells a
  right answer from a wrong one.

A logistic regression per candidate (``per_candidate=True``, when the candidate has ``min_rows`` rows of both
classes) falls back to one pooled over all candidates.

Example:
    >>> queries = [f"what is {i} plus {i}" for i in range(40)]
    >>> answers = [str(2 * i) if i % 3 else "no idea" for i in range(40)]
    >>> correct = [0.0 if a == "no idea" else 1.0 for a in answers]
    >>> judge = AnswerScorerJudge(featurizer="none", min_rows=10).fit(queries, answers, correct)
    >>> judge.score("what is 7 plus 7", "14") > 0.5 > judge.score("what is 7 plus 7", "no idea")
    True
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.allowed_models import allow_models
from rag_routing.embeddings import TfidfFeaturizer, featurizer_from_state, make_featurizer
from rag_routing.errors import CorruptStateError, InvalidInputError, NotFittedError
from rag_routing.routers.judges.answer_text import answer_key, looks_like_choices
from rag_routing.routers.judges.base import Judge, JudgeInput, Previous
from rag_routing.routers.persistence import read_state, write_state

_KIND = "judge:answer_scorer"


class AnswerScorerJudge(Judge):
    """Learned P(answer correct) from query, answer, candidate and earlier answers (FrugalGPT, Chen et al. 2023).

    Args:
        featurizer: query features: ``None`` (TF-IDF + LSA, 64 dims), ``"none"`` (no query features),
            ``"tfidf"``, ``"minilm"`` or a featurizer object, used as given (fit it first; see
            :func:`rag_routing.embeddings.make_featurizer`).
        mode: ``"auto"`` (``"choice"`` when most training answers are option letters), ``"choice"`` or ``"text"``.
        per_candidate: one logistic regression per candidate (else one pooled model).
        C: inverse L2 regularisation strength of the logistic regressions.
        max_answer_keys: most frequent answer keys one-hot encoded (keys seen at least 5 times).
        min_rows: rows a candidate needs for its own model.
        query_dims: the query vectors are projected on their first principal components (fewer, steadier
            features for a few thousand rows).
        threshold: accept at or above this probability.
    """

    name = "answer_scorer"

    def __init__(self, *, featurizer: Any = None, mode: str = "auto", per_candidate: bool = True, C: float = 0.5,
                 max_answer_keys: int = 16, min_rows: int = 50, query_dims: int = 32, threshold: float = 0.5):
        super().__init__(threshold=threshold)
        if mode not in ("auto", "choice", "text"):
            raise InvalidInputError(f"mode must be 'auto', 'choice' or 'text', got {mode!r}")
        self.featurizer, self.mode, self.per_candidate = featurizer, mode, per_candidate
        self.C, self.max_answer_keys, self.min_rows = float(C), int(max_answer_keys), int(min_rows)
        self.query_dims = int(query_dims)

    # -- fitting ----------------------------------------------------------------------------------------------
    def fit(self, queries: Sequence[str], answers: Sequence[str], correct: Sequence[float], *,
            candidates: Sequence[str] | None = None, previous: Sequence[Previous | None] | None = None,
            query_features: np.ndarray | None = None) -> AnswerScorerJudge:
        """Learn from rows of (query, answer, 0/1 correct); NaN labels are left out. Returns ``self``.

        ``query_features`` (``(n, d)``, one row per row of ``queries``) replaces featurizing the queries, e.g.
        embeddings a benchmark computed once with the featurizer given to this judge.
        """
        from sklearn.linear_model import LogisticRegression

        n = len(queries)
        labels = np.asarray(correct, dtype=np.float64)
        candidates = list(candidates) if candidates is not None else ["model"] * n
        previous = list(previous) if previous is not None else [()] * n
        if not (len(answers) == labels.shape[0] == len(candidates) == len(previous) == n) or n == 0:
            raise InvalidInputError("queries, answers, correct, candidates and previous must be non-empty and align")
        keep = ~np.isnan(labels)
        if not set(np.unique(labels[keep])) <= {0.0, 1.0} or len(np.unique(labels[keep])) < 2:
            raise InvalidInputError("correct must hold 0/1 labels (NaN = unknown) with both classes present")
        self.mode_ = self.mode if self.mode != "auto" else ("choice" if looks_like_choices(answers) else "text")
        keys = [answer_key(a, self.mode_) for a in answers]
        common = Counter(k for k, ok in zip(keys, keep) if ok).most_common(self.max_answer_keys)
        self.answer_keys_ = [k for k, count in common if count >= 5]
        self.candidates_ = list(dict.fromkeys(candidates))
        self.featurizer_ = _featurizer(self.featurizer)
        if self.featurizer_ is not None and query_features is None and (self.featurizer is None
                                                                        or isinstance(self.featurizer, str)):
            self.featurizer_.fit(list(dict.fromkeys(queries)))  # a featurizer object is used as given
        self._fit_projection(self._query_vectors(queries, query_features, project=False))
        X = self._design(queries, answers, keys, candidates, previous, query_features)[keep]
        y, rows_candidates = labels[keep], np.asarray(candidates, dtype=object)[keep]
        self.mean_ = X.mean(axis=0)
        self.scale_ = np.where(X.std(axis=0) > 1e-8, X.std(axis=0), 1.0)
        d = X.shape[1] - self._n_answer_features()
        if d > 0:  # one scale for the query block: per-feature scaling blows up near-constant LSA directions
            spread = float(np.sqrt(X[:, :d].var(axis=0).mean()))
            self.scale_[:d] = spread if spread > 1e-12 else 1.0
        Z = (X - self.mean_) / self.scale_
        pooled = LogisticRegression(C=self.C, max_iter=5000).fit(Z, y)
        self.coef_ = np.tile(pooled.coef_[0], (len(self.candidates_) + 1, 1))
        self.intercept_ = np.full(len(self.candidates_) + 1, float(pooled.intercept_[0]))
        self.own_model_ = np.zeros(len(self.candidates_), dtype=bool)
        for j, name in enumerate(self.candidates_ if self.per_candidate else []):
            mask = rows_candidates == name
            if mask.sum() >= self.min_rows and 0 < y[mask].mean() < 1:
                model = LogisticRegression(C=self.C, max_iter=5000).fit(Z[mask], y[mask])
                self.coef_[j], self.intercept_[j], self.own_model_[j] = model.coef_[0], model.intercept_[0], True
        return self

    # -- features ---------------------------------------------------------------------------------------------
    def _n_answer_features(self) -> int:
        m, a = len(self.candidates_), len(self.answer_keys_)
        return (a + 3) + m + (2 * m + 3)

    def _query_vectors(self, queries: Sequence[str], query_features: np.ndarray | None,
                       project: bool = True) -> np.ndarray:
        if query_features is not None:
            F = np.asarray(query_features, dtype=np.float64)
            if F.ndim != 2 or F.shape[0] != len(queries):
                raise InvalidInputError(f"query_features must have one row per query; got {F.shape}")
        elif self.featurizer_ is None:
            return np.zeros((len(queries), 0))
        else:
            unique = list(dict.fromkeys(queries))
            vectors = np.asarray(self.featurizer_.transform(unique), dtype=np.float64)
            row = {q: i for i, q in enumerate(unique)}
            F = vectors[[row[q] for q in queries]]
        return (F - self.query_mean_) @ self.query_proj_.T if project else F

    def _fit_projection(self, F: np.ndarray) -> None:
        """Principal directions of the (distinct) training query vectors, at most ``query_dims`` of them."""
        unique = np.unique(F, axis=0) if F.size else F
        self.query_mean_ = unique.mean(axis=0) if unique.shape[0] else np.zeros(F.shape[1])
        if F.shape[1] == 0 or unique.shape[0] < 2:
            self.query_proj_ = np.zeros((0, F.shape[1]))
            return
        centred = unique - self.query_mean_
        values, vectors = np.linalg.eigh(centred.T @ centred)  # d x d: cheaper than an SVD of the rows
        top = np.argsort(values)[::-1][: min(self.query_dims, unique.shape[0] - 1, F.shape[1])]
        self.query_proj_ = vectors[:, top].T

    def _design(self, queries: Sequence[str], answers: Sequence[str], keys: Sequence[str],
                candidates: Sequence[str | None], previous: Sequence[Previous | None],
                query_features: np.ndarray | None) -> np.ndarray:
        n, m, a = len(queries), len(self.candidates_), len(self.answer_keys_)
        key_at = {k: i for i, k in enumerate(self.answer_keys_)}
        cand_at = {c: i for i, c in enumerate(self.candidates_)}
        answer = np.zeros((n, a + 3))
        who = np.zeros((n, m))
        prev = np.zeros((n, 2 * m + 3))
        for i in range(n):
            answer[i, key_at.get(keys[i], a)] = 1.0
            answer[i, a + 1] = np.log1p(len(answers[i])) / 5.0
            answer[i, a + 2] = float(not answers[i].strip())
            if candidates[i] in cand_at:
                who[i, cand_at[candidates[i]]] = 1.0
            earlier = previous[i] or ()
            agree = 0
            for name, text in earlier:
                same = answer_key(text, self.mode_) == keys[i]
                agree += same
                if name in cand_at:
                    prev[i, cand_at[name]] = 1.0
                    prev[i, m + cand_at[name]] = float(same)
            if earlier:
                prev[i, 2 * m] = agree / len(earlier)
                prev[i, 2 * m + 1] = float(agree == len(earlier))
            prev[i, 2 * m + 2] = len(earlier) / max(m, 1)
        return np.hstack([self._query_vectors(queries, query_features), answer, who, prev])

    # -- scoring ----------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("AnswerScorerJudge is not fitted; call fit(...) or AnswerScorerJudge.load(path)")

    def score_batch(self, queries: Sequence[str], answers: Sequence[str], contexts: Sequence[str | None] | None = None,
                    *, generations: Sequence[Any] | None = None, candidates: Sequence[str | None] | None = None,
                    previous: Sequence[Previous | None] | None = None,
                    query_features: np.ndarray | None = None) -> np.ndarray:
        """``(n,)`` P(correct), vectorised; ``query_features`` as in :meth:`fit`."""
        self._check_fitted()
        started = time.perf_counter()
        n = len(queries)
        candidates = list(candidates) if candidates is not None else [None] * n
        previous = list(previous) if previous is not None else [()] * n
        if not len(answers) == len(candidates) == len(previous) == n:
            raise InvalidInputError("queries, answers, candidates and previous must align")
        keys = [answer_key(a, self.mode_) for a in answers]
        Z = (self._design(queries, answers, keys, candidates, previous, query_features) - self.mean_) / self.scale_
        cand_at = {c: i for i, c in enumerate(self.candidates_)}
        rows = np.array([cand_at[c] if c in cand_at and self.own_model_[cand_at[c]] else len(self.candidates_)
                         for c in candidates], dtype=np.int64)
        logits = np.einsum("ij,ij->i", Z, self.coef_[rows]) + self.intercept_[rows]
        if n:
            self._record_compute(started, n=n)
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))

    def _score(self, item: JudgeInput) -> float:
        return float(self.score_batch([item.query], [item.answer], candidates=[item.candidate],
                                      previous=[item.previous])[0])

    # -- persistence ------------------------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted judge as (JSON-able config, numeric arrays)."""
        self._check_fitted()
        meta: dict[str, Any] = {"kind": _KIND, "mode": self.mode_, "answer_keys": self.answer_keys_,
                                "candidates": self.candidates_, "threshold": self.threshold, "C": self.C,
                                "per_candidate": self.per_candidate, "min_rows": self.min_rows,
                                "max_answer_keys": self.max_answer_keys, "query_dims": self.query_dims,
                                "featurizer": None}
        arrays = {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_, "intercept": self.intercept_,
                  "own_model": self.own_model_.astype(np.int8), "query_mean": self.query_mean_,
                  "query_proj": self.query_proj_}
        if self.featurizer_ is not None:
            config, f_arrays = self.featurizer_.get_state()
            meta["featurizer"] = config
            arrays.update({f"featurizer.{k}": v for k, v in f_arrays.items()})
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> AnswerScorerJudge:
        """Rebuild a judge from :meth:`get_state` output (:class:`CorruptStateError` if it is malformed)."""
        if meta.get("kind") != _KIND:
            raise CorruptStateError("the saved state does not hold an AnswerScorerJudge")
        try:
            judge = cls(mode=meta["mode"], per_candidate=bool(meta["per_candidate"]), C=float(meta["C"]),
                        max_answer_keys=int(meta["max_answer_keys"]), min_rows=int(meta["min_rows"]),
                        query_dims=int(meta["query_dims"]), threshold=float(meta["threshold"]))
            judge.mode_, judge.answer_keys_ = str(meta["mode"]), [str(k) for k in meta["answer_keys"]]
            judge.candidates_ = [str(c) for c in meta["candidates"]]
            judge.mean_, judge.scale_ = np.asarray(arrays["mean"], float), np.asarray(arrays["scale"], float)
            judge.coef_, judge.intercept_ = np.asarray(arrays["coef"], float), np.asarray(arrays["intercept"], float)
            judge.own_model_ = np.asarray(arrays["own_model"]).astype(bool)
            judge.query_mean_ = np.asarray(arrays["query_mean"], float)
            judge.query_proj_ = np.asarray(arrays["query_proj"], float)
            f_arrays = {k[len("featurizer."):]: v for k, v in arrays.items() if k.startswith("featurizer.")}
            judge.featurizer_ = None if meta["featurizer"] is None else featurizer_from_state(meta["featurizer"],
                                                                                                f_arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStateError(f"saved AnswerScorerJudge state is incomplete ({exc})") from exc
        if judge.coef_.shape != (len(judge.candidates_) + 1, judge.mean_.shape[0]):
            raise CorruptStateError(f"coefficient shape {judge.coef_.shape} does not match the features")
        return judge

    def save(self, path: str | Path) -> Path:
        """Write the fitted judge to ``path`` (``.npz``, no pickle); returns the path written."""
        return write_state(path, *self.get_state())

    @classmethod
    def load(cls, path: str | Path, *, allowed_models: Sequence[str] | None = None) -> AnswerScorerJudge:
        """Load a judge written by :meth:`save`; its embedder may be only the packaged model or one in
        ``allowed_models`` (see :mod:`rag_routing.allowed_models`)."""
        meta, arrays = read_state(path)
        try:
            with allow_models(allowed_models):
                return cls.from_state(meta, arrays)
        except CorruptStateError as exc:
            raise type(exc)(f"{path}: {exc}") from exc


def _featurizer(spec: Any) -> Any:
    if spec is None:
        return TfidfFeaturizer(n_components=64)
    if isinstance(spec, str) and spec == "none":
        return None
    return make_featurizer(spec)


__all__ = ["AnswerScorerJudge"]
