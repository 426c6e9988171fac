"""A per-candidate logistic regression on sparse TF-IDF n-grams: RouteLLM's TF-IDF classifier baseline without
the dimensionality reduction the dense featurizers apply.

The dense ``featurizer="tfidf"`` option keeps 256 LSA directions, which is what the similarity and
factorisation routers need; a linear model can use every n-gram instead. On RouteLLM MMLU (5-fold CV inside
the training half) character 1-4-grams with ``C=0.3`` reach APGR 0.670 against 0.655 for ``mf`` on MiniLM and
0.652 for word 1-2-grams.

The vocabulary, idf weights and coefficients are saved as plain arrays and JSON (no pickle); scikit-learn
fits the model, numpy and a fixed-vocabulary vectorizer evaluate it. At fit time the character n-grams are
counted with numpy (:func:`~rag_routing.routers.char_ngrams.char_ngram_counts`, scikit-learn's
``CountVectorizer`` matrix to the bit, ~3x faster on 100,000 short queries); word n-grams, and texts with a NUL
character, use scikit-learn's counter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput, validate_queries
from rag_routing.routers.char_ngrams import char_ngram_counts
from rag_routing.routers.matrix_factorization import (
    scaled_targets,
    sigmoid,
)
from rag_routing.routers.multi_logistic import fit_logistic_columns
from rag_routing.validation import check_number

#: Analyzers: character n-grams (``char_ngrams``), word n-grams (``word_ngrams``) or both, concatenated.
ANALYZERS = ("char", "word", "char+word")
#: The ``TfidfVectorizer`` settings its ``TfidfTransformer`` takes (used when the counts come from numpy).
_TFIDF_SETTINGS = ("norm", "use_idf", "smooth_idf", "sublinear_tf")


class TfidfLogisticRouter(Router):
    """Per-candidate P(good answer) by logistic regression on sparse TF-IDF n-grams (Ong et al. 2025,
    "RouteLLM", its TF-IDF + logistic-regression classifier; here one model per candidate, as RouterBench's
    predictive routers, Hu et al. 2024).

    Estimates each candidate's quality for the query as a probability on the training outcomes' scale.

    * Features: TF-IDF (sublinear tf, lower-cased) over character ``char_ngrams`` (``analyzer="char"``, the
      default), word ``word_ngrams`` (``"word"``) or both side by side (``"char+word"``); terms seen in fewer
      than ``min_df`` training queries are dropped, at most ``max_features`` per analyzer are kept.
    * One L2-regularised logistic regression (inverse strength ``C``) per candidate, fitted on the queries
      whose outcome for it is known (NaN rows are left out, never read as 0). Outcomes are first mapped to
      [0, 1]; a fractional outcome ``y`` counts as a right answer with weight ``y`` and a wrong one with
      weight ``1 - y``. A candidate whose known outcomes are all the same gets that constant. The fits share
      one sparse matrix (:mod:`rag_routing.routers.multi_logistic`), with scikit-learn's
      ``LogisticRegression`` objective and stopping rule.
    * Predictions are mapped back to the outcomes' scale.

    Example:
        >>> import numpy as np
        >>> from rag_routing.evaluation.dataset import RoutingDataset
        >>> queries = [f"integrate x^{i} dx" for i in range(6)] + [f"say hello to friend {i}" for i in range(6)]
        >>> quality = np.array([[0.0, 1.0]] * 6 + [[1.0, 1.0]] * 6)     # columns: small, large
        >>> train = RoutingDataset(queries, ["small", "large"], quality, np.tile([1e-4, 1e-2], (12, 1)))
        >>> router = TfidfLogisticRouter(min_df=1, C=10.0).fit(train)
        >>> [d.candidate for d in router.route(["integrate x^9 dx", "say hello to friend 7"], lam=20.0)]
        ['large', 'small']
    """

    name = "tfidf_lr"
    uses_features = False  # it reads the text through its own sparse vectorizers

    def __init__(self, *, analyzer: str = "char", char_ngrams: tuple[int, int] = (1, 4),
                 word_ngrams: tuple[int, int] = (1, 2), min_df: int = 3, max_features: int = 300_000,
                 C: float = 0.3, max_iter: int = 3000, **kwargs: Any):
        super().__init__(**kwargs)
        self.analyzer = analyzer
        self.char_ngrams = tuple(char_ngrams) if isinstance(char_ngrams, (list, tuple)) else char_ngrams
        self.word_ngrams = tuple(word_ngrams) if isinstance(word_ngrams, (list, tuple)) else word_ngrams
        self.min_df = min_df
        self.max_features = max_features
        self.C = C
        self.max_iter = max_iter
        self._check_params()

    def _check_params(self) -> None:
        if self.analyzer not in ANALYZERS:
            raise InvalidInputError(f"analyzer must be one of {ANALYZERS}, got {self.analyzer!r}")
        for label, span in (("char_ngrams", self.char_ngrams), ("word_ngrams", self.word_ngrams)):
            ok = isinstance(span, tuple) and len(span) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in span)
            if not ok or not 1 <= span[0] <= span[1]:
                raise InvalidInputError(f"{label} must be a (min, max) pair of integers with 1 <= min <= max, "
                                        f"got {span!r}")
        check_number("min_df", self.min_df, 1, integer=True)
        check_number("max_features", self.max_features, 1, integer=True)
        check_number("C", self.C, 0.0, low_open=True)
        check_number("max_iter", self.max_iter, 1, integer=True)

    # ------------------------------------------------------------------ text -> sparse features
    def _parts(self) -> list[tuple[str, tuple[int, int]]]:
        parts = {"char": [("char", self.char_ngrams)], "word": [("word", self.word_ngrams)]}
        return [p for key in self.analyzer.split("+") for p in parts[key]]

    def _vectorizer(self, kind: str, ngrams: tuple[int, int], vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if vocabulary is not None:
            return TfidfVectorizer(analyzer=kind, ngram_range=ngrams, sublinear_tf=True, vocabulary=vocabulary,
                                   dtype=np.float64)
        return TfidfVectorizer(analyzer=kind, ngram_range=ngrams, sublinear_tf=True, min_df=self.min_df,
                               max_features=self.max_features, dtype=np.float64)

    def _fit_vectorizers(self, texts: list[str]) -> Any:
        import scipy.sparse as sp
        from sklearn.feature_extraction.text import TfidfTransformer

        blocks, self.terms_, self.idf_ = [], [], []
        for kind, ngrams in self._parts():
            vectorizer = self._vectorizer(kind, ngrams)
            try:
                counted = char_ngram_counts(texts, ngrams, self.min_df, self.max_features) if kind == "char" else None
                if counted is None:
                    blocks.append(vectorizer.fit_transform(texts))
                    terms, idf = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__), vectorizer.idf_
                else:  # the same counts, weighted with the vectorizer's own TF-IDF settings
                    counts, terms = counted
                    tfidf = TfidfTransformer(**{name: getattr(vectorizer, name) for name in _TFIDF_SETTINGS})
                    blocks.append(tfidf.fit(counts).transform(counts, copy=False))
                    idf = tfidf.idf_
            except ValueError as exc:  # every term under min_df: scikit-learn's "no terms remain"
                raise InvalidInputError(f"no {kind} n-gram appears in {self.min_df} or more training queries "
                                        f"({exc}); lower min_df or add queries") from exc
            self.terms_.append(terms)
            self.idf_.append(np.asarray(idf, dtype=np.float64))
        self._vectorizers = None
        return sp.hstack(blocks).tocsr()

    def transform(self, X: RouterInput) -> Any:
        """The sparse ``(n, n_terms)`` TF-IDF matrix of the queries (strings or a :class:`RoutingDataset`)."""
        import scipy.sparse as sp

        self._check_fitted()
        if isinstance(X, np.ndarray):
            raise InvalidInputError("TfidfLogisticRouter reads query text; pass strings or a RoutingDataset, "
                                    "not a feature matrix")
        texts = list(X.queries) if isinstance(X, RoutingDataset) else validate_queries(X)
        if getattr(self, "_vectorizers", None) is None:
            self._vectorizers = []
            for (kind, ngrams), terms, idf in zip(self._parts(), self.terms_, self.idf_):
                vectorizer = self._vectorizer(kind, ngrams, {t: i for i, t in enumerate(terms)})
                vectorizer.fit(["x"])  # sets up the analyzer; the learned idf replaces the one-text idf
                vectorizer.idf_ = idf
                self._vectorizers.append(vectorizer)
        if not texts:  # no rows: scikit-learn's transformers refuse an empty batch
            return sp.csr_matrix((0, sum(len(terms) for terms in self.terms_)))
        return sp.hstack([v.transform(texts) for v in self._vectorizers]).tocsr()

    # ------------------------------------------------------------------ fitting
    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self._check_params()
        Y, self.quality_low_, self.quality_high_ = scaled_targets(dataset.quality)
        X = self._fit_vectorizers(list(dataset.queries))
        # All candidates read one shared X (no copied rows): the same optimum as one scikit-learn fit each.
        self.coef_, self.intercept_ = fit_logistic_columns(X, Y, self.C, self.max_iter)

    # ------------------------------------------------------------------ prediction
    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        Z = np.asarray(self.transform(X) @ self.coef_.T) + self.intercept_
        return self.quality_low_ + (self.quality_high_ - self.quality_low_) * sigmoid(Z)

    # ------------------------------------------------------------------ persistence
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"quality_low": self.quality_low_, "quality_high": self.quality_high_, "terms": self.terms_}
        arrays = {"coef": self.coef_, "intercept": self.intercept_,
                  **{f"idf{k}": idf for k, idf in enumerate(self.idf_)}}
        return config, arrays

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.quality_low_, self.quality_high_ = float(config["quality_low"]), float(config["quality_high"])
        self.terms_ = [[str(t) for t in terms] for terms in config["terms"]]
        self.idf_ = [np.asarray(arrays[f"idf{k}"], dtype=np.float64) for k in range(len(self.terms_))]
        self.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        self.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        self._vectorizers = None
        n_terms = sum(len(t) for t in self.terms_)
        if len(self.terms_) != len(self._parts()) or any(len(t) != len(i) for t, i in zip(self.terms_, self.idf_)):
            raise ValueError("saved vocabularies do not match their idf vectors or the analyzer")
        if self.coef_.shape != (len(self.candidates_), n_terms) or self.intercept_.shape != (len(self.candidates_),):
            raise ValueError("saved coefficients do not match the candidates and the vocabulary")


__all__ = ["ANALYZERS", "TfidfLogisticRouter"]
