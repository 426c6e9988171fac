"""`GadgetFilter`: find an unnaturally surprising run of tokens at the end (or start) of a query, and strip it.

A confounder gadget (Shafran et al. 2025) is a short token sequence, hill-climbed to raise a router's
"needs the strong model" score, appended to (or prepended to) an ordinary query. Under a bigram language
model fitted on clean queries (:class:`~rag_routing.security.language_model.BigramLM`) such a run is far more
surprising than natural text. The filter scans every suffix (prefix) of ``min_gadget`` to ``max_gadget``
tokens and scores it with the standardised sum of its surprisals, ``z = (Σ s - L·μ) / (σ·√L)`` (a scan
statistic); the threshold is the ``1 - false_positive_rate`` quantile of the statistic on clean queries the
model did not see (two-fold cross-fitting), so about ``false_positive_rate`` of clean queries are touched.

Actions: ``"strip"`` routes the query without the suspicious run (the default: an honest query that trips
the filter loses only its tail for routing, the generator still sees the whole query), ``"flag"`` only
notes it, ``"refuse"`` raises :class:`~rag_routing.security.errors.SuspiciousQueryError`. Queries longer
than ``length_factor`` times the clean ``1 - false_positive_rate`` length quantile are flagged too.

Limits: an adaptive attacker can optimise gadgets for low perplexity as well (Shafran et al. report that
perplexity filtering is then evaded at some cost in attack strength); pair the filter with quotas.

Example:
    >>> import itertools
    >>> clean = [f"what is the boiling point of {x} {where}" for x, where in itertools.product(
    ...     ["water", "milk", "olive oil", "salt water", "ethanol", "mercury"],
    ...     ["at sea level", "on a mountain", "in a pressure cooker"])]
    >>> f = GadgetFilter(min_gadget=2, false_positive_rate=0.1).fit(clean)
    >>> f.check_query("what is the boiling point of milk at sea level", "alice")[1] is None
    True
    >>> query, done = f.check_query("what is the boiling point of milk at sea level cooker mercury boiling of "
    ...                             "olive", "mallory")
    >>> done["action"], query.startswith("what is the boiling point of"), "cooker" in query
    ('stripped', True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag_routing.errors import InvalidInputError, NotFittedError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router
from rag_routing.security.errors import SuspiciousQueryError
from rag_routing.security.guards import RouteGuard
from rag_routing.security.language_model import BigramLM, tokenize


class GadgetFilter(RouteGuard):
    """Perplexity scan for appended / prepended gadgets (see the module docstring).

    Parameters:
        action: ``"strip"``, ``"flag"`` or ``"refuse"``.
        false_positive_rate: share of clean queries allowed over the threshold (sets the threshold).
        min_gadget, max_gadget: lengths (tokens) of the runs scanned.
        min_keep: tokens always kept (a query is never stripped to nothing).
        position: where gadgets are looked for: ``"suffix"``, ``"prefix"`` or ``"both"``.
        length_factor: flag queries longer than this times the clean length quantile.
        beta: smoothing of the bigram model.
        clip_quantile: per-token surprisal cap, as a quantile of clean held-out tokens.
        max_calibration: held-out queries scored to set the threshold (the model is fitted on all).
        seed: the cross-fitting split.
    """

    name = "gadget_filter"

    def __init__(self, *, action: str = "strip", false_positive_rate: float = 0.01, min_gadget: int = 3,
                 max_gadget: int = 40, min_keep: int = 3, position: str = "suffix", length_factor: float = 2.0,
                 beta: float = 2.0, clip_quantile: float = 0.75, max_calibration: int = 2000, seed: int = 0):
        if action not in ("strip", "flag", "refuse"):
            raise InvalidInputError(f"action must be 'strip', 'flag' or 'refuse', got {action!r}")
        if not isinstance(false_positive_rate, float) or not 0 < false_positive_rate < 1:
            raise InvalidInputError(f"false_positive_rate must be a float in (0, 1), got {false_positive_rate!r}")
        for name, value in (("min_gadget", min_gadget), ("max_gadget", max_gadget), ("min_keep", min_keep)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
        if max_gadget < min_gadget:
            raise InvalidInputError(f"max_gadget ({max_gadget}) must be >= min_gadget ({min_gadget})")
        if not isinstance(clip_quantile, float) or not 0 < clip_quantile <= 1:
            raise InvalidInputError(f"clip_quantile must be a float in (0, 1], got {clip_quantile!r}")
        if position not in ("suffix", "prefix", "both"):
            raise InvalidInputError(f"position must be 'suffix', 'prefix' or 'both', got {position!r}")
        self.action, self.false_positive_rate, self.position = action, false_positive_rate, position
        self.min_gadget, self.max_gadget, self.min_keep = min_gadget, max_gadget, min_keep
        self.length_factor, self.beta, self.seed = float(length_factor), float(beta), seed
        self.clip_quantile, self.max_calibration = clip_quantile, max_calibration
        self.lm_: BigramLM | None = None

    # -- fitting ------------------------------------------------------------------------------------------------
    def fit(self, queries: Sequence[str]) -> GadgetFilter:
        """Fit the language model on clean ``queries`` and calibrate the threshold on held-out halves."""
        queries = [q for q in queries if isinstance(q, str) and q.strip()]
        if len(queries) < 4:
            raise InvalidInputError("GadgetFilter needs at least 4 clean queries to calibrate")
        order = np.random.default_rng(self.seed).permutation(len(queries))
        halves = [[queries[i] for i in order[: len(order) // 2]], [queries[i] for i in order[len(order) // 2:]]]
        held_out: list[np.ndarray] = []
        for train, test in ((halves[0], halves[1]), (halves[1], halves[0])):
            lm = BigramLM(self.beta).fit(train)
            held_out += [lm.surprisal(q) for q in test[: self.max_calibration // 2]]
        self.cap_ = float(np.quantile(np.concatenate(held_out), self.clip_quantile))
        held_out = [np.minimum(s, self.cap_) for s in held_out]
        tokens = np.concatenate(held_out)
        self.mu_, self.sigma_ = float(tokens.mean()), float(max(tokens.std(), 1e-6))
        scores = np.array([self._scan(s)[0] for s in held_out])
        finite = scores[np.isfinite(scores)]
        self.threshold_ = float(np.quantile(finite, 1 - self.false_positive_rate)) if finite.size else np.inf
        lengths = np.array([len(s) for s in held_out])
        self.max_tokens_ = int(np.ceil(np.quantile(lengths, 1 - self.false_positive_rate) * self.length_factor))
        self.lm_ = BigramLM(self.beta).fit(queries)
        return self

    def prepare(self, router: Router, dataset: RoutingDataset) -> None:
        if self.lm_ is None:
            self.fit(dataset.queries)

    # -- scoring ------------------------------------------------------------------------------------------------
    def _scan(self, s: np.ndarray) -> tuple[float, int, str]:
        """(best z, its run length, "suffix" or "prefix") over the scanned runs of surprisals ``s``."""
        best = (-np.inf, 0, "suffix")
        longest = min(self.max_gadget, len(s) - self.min_keep)
        if longest < self.min_gadget:
            return best
        lengths = np.arange(self.min_gadget, longest + 1)
        scale = self.sigma_ * np.sqrt(lengths)
        sides = ("suffix", "prefix") if self.position == "both" else (self.position,)
        for side in sides:
            run = s[::-1] if side == "suffix" else s
            sums = np.cumsum(run)[lengths - 1]
            z = (sums - lengths * self.mu_) / scale
            i = int(np.argmax(z))
            if z[i] > best[0]:
                best = (float(z[i]), int(lengths[i]), side)
        return best

    def _boundary(self, s: np.ndarray, side: str, fallback: int) -> int:
        """Where the suspicious run starts: the mean-shift change point (largest between-segment contrast
        ``L·(n-L)/n · (mean(run) - mean(rest))²`` with a more surprising run) of the flagged side."""
        run = s[::-1] if side == "suffix" else s
        n = len(run)
        longest = min(self.max_gadget, n - self.min_keep)
        if longest < self.min_gadget:
            return fallback
        lengths = np.arange(self.min_gadget, longest + 1)
        total, head = run.sum(), np.cumsum(run)[lengths - 1]
        shift = head / lengths - (total - head) / (n - lengths)
        contrast = np.where(shift > 0, lengths * (n - lengths) / n * shift ** 2, -np.inf)
        return int(lengths[int(np.argmax(contrast))]) if np.isfinite(contrast).any() else fallback

    def statistic(self, query: str) -> tuple[float, int, str]:
        """(scan statistic, length of the most suspicious run, its side) of ``query``."""
        if self.lm_ is None:
            raise NotFittedError("GadgetFilter is not fitted; call fit(clean_queries) first")
        return self._scan(np.minimum(self.lm_.surprisal(query), self.cap_))

    def statistics(self, queries: Sequence[str]) -> np.ndarray:
        """The scan statistic of every query (``-inf`` for queries too short to scan)."""
        return np.array([self.statistic(q)[0] for q in queries], dtype=np.float64)

    # -- guarding -----------------------------------------------------------------------------------------------
    def check_query(self, query: str, principal: str) -> tuple[str, dict[str, Any] | None]:
        if self.lm_ is None:
            raise NotFittedError("GadgetFilter is not fitted; call fit(clean_queries) or GuardedRouter.fit")
        spans = tokenize(query)
        s = np.minimum(self.lm_.surprisal_of([m.group().lower() for m in spans]), self.cap_)
        z, length, side = self._scan(s)
        too_long = len(spans) > self.max_tokens_
        if z <= self.threshold_ and not too_long:
            return query, None
        reason = (f"a run of {length} {side} tokens with surprisal z={z:.1f} > {self.threshold_:.1f}"
                  if z > self.threshold_
                  else f"{len(spans)} tokens > {self.max_tokens_}")
        if self.action == "refuse":
            raise SuspiciousQueryError(f"query refused: it looks like a routing attack ({reason}); rephrase it")
        if self.action == "flag" or z <= self.threshold_:
            return query, {"action": "flagged", "reason": reason, "z": z}
        length = self._boundary(s, side, length)
        if side == "suffix":
            kept = query[: spans[len(spans) - length].start()].rstrip()
        else:
            kept = query[spans[length].start():].lstrip()
        return kept, {"action": "stripped", "reason": reason, "z": z, "removed_tokens": length, "side": side}


__all__ = ["GadgetFilter"]
