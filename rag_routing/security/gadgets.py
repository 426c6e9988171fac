"""Confounder gadgets (Shafran et al. 2025, "Rerouting LLM routers"): token sequences that, appended to any
query, push a router to the expensive model.

:func:`search_gadget` is the paper's hill climbing: start from ``n_tokens`` random tokens of a vocabulary of
common words; at each step pick a position, try ``candidates_per_step`` replacement tokens there, and keep
the one that most raises the router's mean strong-vs-weak score (:meth:`Router.score`) over the optimisation
queries. It needs only the router's scores (black box: no gradients, no weights), so it attacks every router
alike. A gadget found on some queries is *universal*: :func:`flip_report` applies it to held-out queries and
counts the share whose route flips from a cheap candidate to the expensive one.

An adaptive attacker who knows a defence can add ``penalty`` (e.g. :meth:`GadgetFilter.statistics
<rag_routing.security.gadget_filter.GadgetFilter.statistics>`) with ``penalty_weight`` to trade strength for
stealth.

Example:
    >>> from rag_routing.evaluation.dataset import RoutingDataset
    >>> from rag_routing.routers.registry import create_router
    >>> hard = [f"prove the theorem about integral number {i}" for i in range(20)]
    >>> easy = [f"say hello to my friend number {i}" for i in range(20)]
    >>> ds = RoutingDataset(hard + easy, ["small", "large"], [[0, 1]] * 20 + [[1, 1]] * 20,
    ...                     [[0.001, 0.02]] * 40)
    >>> router = create_router("knn", lam=10.0, featurizer="tfidf").fit(ds)
    >>> result = search_gadget(router, easy[:10], vocabulary=common_tokens(hard + easy), n_tokens=4,
    ...                        iterations=12, seed=0)
    >>> bool(result.objective > result.history[0]), router.route_indices(result.gadget.apply_all(easy[10:])).tolist()
    (True, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rag_routing.errors import InvalidInputError
from rag_routing.routers.base import Router, validate_queries
from rag_routing.validation import check_choice

_WORD = re.compile(r"[a-z][a-z0-9]+")


def common_tokens(queries: Sequence[str], n: int = 1000, min_count: int = 2) -> list[str]:
    """The attacker's vocabulary: the ``n`` most frequent lower-case words of ``queries``."""
    counts = Counter(w for q in queries for w in _WORD.findall(q.lower()))
    return [w for w, c in counts.most_common(n) if c >= min_count] or [w for w, _ in counts.most_common(n)]


@dataclass(frozen=True)
class Gadget:
    """A token sequence added to queries; :meth:`apply` adds it."""

    tokens: tuple[str, ...]
    position: str = "suffix"

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def apply(self, query: str) -> str:
        return f"{query} {self.text}" if self.position == "suffix" else f"{self.text} {query}"

    def apply_all(self, queries: Sequence[str]) -> list[str]:
        return [self.apply(q) for q in queries]


@dataclass
class GadgetSearchResult:
    """The best gadget, its objective (mean score), the objective after each step, and the work done."""

    gadget: Gadget
    objective: float
    history: list[float] = field(default_factory=list)
    evaluations: int = 0
    seconds: float = 0.0


def _objective(router: Router, texts: list[str], n_queries: int, strong: str | None, weak: str | None,
               penalty: Callable[[list[str]], np.ndarray] | None, weight: float) -> np.ndarray:
    """Mean score per gadget for ``texts`` laid out gadget-major (``n_gadgets * n_queries``)."""
    scores = router.score(texts, strong=strong, weak=weak).reshape(-1, n_queries)
    value = scores.mean(axis=1)
    if penalty is not None and weight:
        value = value - weight * np.asarray(penalty(texts), dtype=np.float64).reshape(-1, n_queries).mean(axis=1)
    return value


def search_gadget(router: Router, queries: Sequence[str], *, n_tokens: int = 10,
                  vocabulary: Sequence[str] | None = None, iterations: int = 60, candidates_per_step: int = 32,
                  position: str = "suffix", strong: str | None = None, weak: str | None = None,
                  penalty: Callable[[list[str]], np.ndarray] | None = None, penalty_weight: float = 0.0,
                  patience: int | None = None, seed: int = 0) -> GadgetSearchResult:
    """Hill-climb a universal confounder gadget against ``router`` (see the module docstring).

    Parameters:
        router: a fitted router (only its :meth:`~Router.score` is used).
        queries: the optimisation queries (the attacker's own).
        n_tokens: gadget length.
        vocabulary: candidate tokens (default: :func:`common_tokens` of ``queries``).
        iterations: hill-climbing steps (one position each, cycling through the positions).
        candidates_per_step: replacement tokens tried per step (one batch of ``router.score`` calls).
        position: ``"suffix"`` (appended) or ``"prefix"``.
        strong, weak: the candidates compared by the score (default: the costliest and the cheapest).
        penalty, penalty_weight: an adaptive attacker's stealth term, subtracted from the objective.
        patience: stop after this many steps without improvement (default: ``2 * n_tokens``).
        seed: randomness of the start and of the tokens tried.
    """
    queries = validate_queries(queries)
    if not queries:
        raise InvalidInputError("search_gadget needs at least one optimisation query")
    check_choice("position", position, ("suffix", "prefix"))
    sizes = (("n_tokens", n_tokens), ("iterations", iterations), ("candidates_per_step", candidates_per_step))
    for name, value in sizes:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    vocab = list(dict.fromkeys(vocabulary if vocabulary is not None else common_tokens(queries)))
    if len(vocab) < 2:
        raise InvalidInputError("the gadget vocabulary needs at least 2 distinct tokens")
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    current = [vocab[i] for i in rng.integers(len(vocab), size=n_tokens)]
    best = float(_objective(router, Gadget(tuple(current), position).apply_all(queries), len(queries), strong,
                            weak, penalty, penalty_weight)[0])
    history, evaluations, stale = [best], len(queries), 0
    patience = 2 * n_tokens if patience is None else patience
    for step in range(iterations):
        pos = step % n_tokens
        tried = [vocab[i] for i in rng.choice(len(vocab), size=min(candidates_per_step, len(vocab)), replace=False)]
        gadgets = [Gadget(tuple(current[:pos] + [t] + current[pos + 1:]), position) for t in tried]
        texts = [g.apply(q) for g in gadgets for q in queries]
        values = _objective(router, texts, len(queries), strong, weak, penalty, penalty_weight)
        evaluations += len(texts)
        i = int(np.argmax(values))
        if values[i] > best + 1e-12:
            best, current, stale = float(values[i]), list(gadgets[i].tokens), 0
        else:
            stale += 1
        history.append(best)
        if stale >= patience:
            break
    return GadgetSearchResult(Gadget(tuple(current), position), best, history, evaluations,
                              time.perf_counter() - started)


__all__ = ["Gadget", "GadgetSearchResult", "search_gadget", "common_tokens"]
