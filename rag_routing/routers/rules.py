"""`ConditionalRouter`: plain declarative rules, the industrial baseline (survey §5.1; Haystack's
``ConditionalRouter``, LiteLLM's and semantic-router's keyword routes).

A rule is data, never code: ``{field, op, value, route, priority}`` validated by pydantic when the router is
built. ``field`` is ``"query"`` or ``"metadata.<key>"``; ``op`` is one of ``contains`` (case-insensitive
substring), ``regex`` (Python ``re.search``, pattern length capped), ``len_gt`` / ``len_lt`` (characters of
the field) or ``metadata_eq`` (the field equals ``value``). No user string is ever evaluated.

Routing inside the shared rule: the matched rule's candidate gets quality 1 and every other candidate 0, so with
``λ = 0`` the rule decides (RouteLLM-style one-hot routing); a positive ``λ`` can still trade a rule away for
cost, as for any router. A query that no rule matches goes to ``default`` (a candidate name), or, when
``default`` is ``None``, every candidate keeps its mean training quality (the best single model wins).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from rag_routing.errors import InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.routers.base import Router, RouterInput, validate_queries
from rag_routing.validation import check_choice

#: Longest regular expression accepted (a guard against pathological patterns in configs).
MAX_PATTERN_CHARS = 500


class Rule(BaseModel):
    """One declarative condition and the candidate it routes to (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = "query"
    op: Literal["contains", "regex", "len_gt", "len_lt", "metadata_eq"]
    value: Any
    route: str
    priority: int = 0

    @field_validator("field")
    @classmethod
    def _known_field(cls, v: str) -> str:
        if v != "query" and not (v.startswith("metadata.") and len(v) > len("metadata.")):
            raise ValueError(f"field must be 'query' or 'metadata.<key>', got {v!r}")
        return v

    @model_validator(mode="after")
    def _value_fits_op(self) -> Rule:
        if self.op in ("contains", "regex") and not (isinstance(self.value, str) and self.value):
            raise ValueError(f"op {self.op!r} needs a non-empty string value")
        if self.op == "regex":
            if len(self.value) > MAX_PATTERN_CHARS:
                raise ValueError(f"regex longer than {MAX_PATTERN_CHARS} characters")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from exc
        if self.op in ("len_gt", "len_lt") and (isinstance(self.value, bool) or not isinstance(self.value, int)):
            raise ValueError(f"op {self.op!r} needs an integer value")
        if self.op == "metadata_eq" and not self.field.startswith("metadata."):
            raise ValueError("op 'metadata_eq' needs field 'metadata.<key>'")
        return self

    def matches(self, query: str, metadata: Mapping[str, Any]) -> bool:
        """Whether this rule holds for ``query`` and its ``metadata`` (a missing metadata key never matches)."""
        if self.field == "query":
            subject: Any = query
        else:
            key = self.field[len("metadata."):]
            if key not in metadata:
                return False
            subject = metadata[key]
        if self.op == "metadata_eq":
            return bool(subject == self.value)
        if self.op in ("len_gt", "len_lt"):
            n = len(str(subject))
            return n > self.value if self.op == "len_gt" else n < self.value
        text = str(subject)
        if self.op == "contains":
            return self.value.lower() in text.lower()
        return re.search(self.value, text) is not None


def parse_rules(rules: Sequence[Rule | Mapping[str, Any]]) -> list[Rule]:
    """Validated :class:`Rule` objects, or :class:`InvalidInputError` naming the bad rule."""
    if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Sequence):
        raise InvalidInputError("rules must be a list of rule mappings {field, op, value, route}")
    parsed = []
    for i, rule in enumerate(rules):
        try:
            parsed.append(rule if isinstance(rule, Rule) else Rule.model_validate(dict(rule)))
        except (ValidationError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"rule {i} is invalid: {exc}") from None
    return parsed


class ConditionalRouter(Router):
    """Declarative rules over the query text and its metadata (survey §5.1: the rule-based industrial baseline).

    Estimates quality as 1 for the candidate of the rule that fires and 0 for the others (no learning: ``fit``
    only reads the candidate names, their mean costs and mean qualities, and checks every rule's route).

    Parameters:
        rules: list of :class:`Rule` or mappings ``{field, op, value, route, priority=0}``.
        mode: ``"first"`` (the first matching rule in list order wins) or ``"priority"`` (the highest
            ``priority`` among matching rules wins; ties go to the earlier rule).
        default: candidate for queries no rule matches; ``None`` = each candidate's mean training quality.
        **kwargs: ``lam``, ``budget``, ``fallback`` (see :class:`Router`).

    Metadata is read when routing a :class:`RoutingDataset` (its ``metadata`` rows) or from ``metadata=`` of
    :meth:`match`; plain query strings carry none.

    Example:
        >>> ds = RoutingDataset(["hi", "prove it"], ["small", "large"], [[1, 1], [0, 1]], [[0.001, 0.02]] * 2)
        >>> router = ConditionalRouter(rules=[{"op": "regex", "value": r"\\bprove\\b", "route": "large"}],
        ...                            default="small").fit(ds)
        >>> [d.candidate for d in router.route(["please prove this lemma", "hello there"])]
        ['large', 'small']
        >>> router.match(["hello there"])
        [None]
    """

    name = "rules"
    uses_features = False

    def __init__(self, *, rules: Sequence[Rule | Mapping[str, Any]] = (), mode: str = "first",
                 default: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.rules = [r.model_dump() for r in parse_rules(rules)]
        self.mode = check_choice("mode", mode, ("first", "priority"))
        if default is not None and not isinstance(default, str):
            raise InvalidInputError(f"default must be a candidate name or None, got {default!r}")
        self.default = default
        self._rules = parse_rules(self.rules)

    def _fit(self, features: np.ndarray | None, dataset: RoutingDataset) -> None:
        self._check_routes()
        self.mean_quality_ = np.nan_to_num(dataset.mean_quality(), nan=0.0)

    def _check_routes(self) -> None:
        known = set(self.candidates_)
        for i, rule in enumerate(self._rules):
            if rule.route not in known:
                raise InvalidInputError(f"rule {i} routes to unknown candidate {rule.route!r}; "
                                        f"candidates are {self.candidates_}")
        if self.default is not None and self.default not in known:
            raise InvalidInputError(f"default {self.default!r} is not a candidate; candidates are {self.candidates_}")

    def match(self, X: RouterInput, metadata: Sequence[Mapping[str, Any]] | None = None) -> list[int | None]:
        """Index (in ``rules``) of the rule that fires for each query, ``None`` where none does."""
        queries, metas = self._queries_and_metadata(X, metadata)
        order = list(range(len(self._rules)))
        if self.mode == "priority":
            order.sort(key=lambda i: -self._rules[i].priority)  # stable: ties keep list order
        return [next((i for i in order if self._rules[i].matches(q, m)), None) for q, m in zip(queries, metas)]

    @staticmethod
    def _queries_and_metadata(X: RouterInput, metadata: Sequence[Mapping[str, Any]] | None
                              ) -> tuple[list[str], list[Mapping[str, Any]]]:
        if isinstance(X, np.ndarray):
            raise InvalidInputError("ConditionalRouter reads query text; pass strings or a RoutingDataset")
        if isinstance(X, RoutingDataset):
            queries = list(X.queries)
            metadata = metadata if metadata is not None else (X.metadata or None)
        else:
            queries = validate_queries(X)
        metas = list(metadata) if metadata is not None else [{}] * len(queries)
        if len(metas) != len(queries):
            raise InvalidInputError(f"{len(metas)} metadata rows for {len(queries)} queries")
        return queries, [m or {} for m in metas]

    def _predict_quality(self, features: np.ndarray | None, X: RouterInput) -> np.ndarray:
        fired = self.match(X)
        S = np.tile(self.mean_quality_, (len(fired), 1))
        for row, i in enumerate(fired):
            target = self._rules[i].route if i is not None else self.default
            if target is not None:
                S[row] = 0.0
                S[row, self.candidates_.index(target)] = 1.0
        return S

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"mean_quality": self.mean_quality_}

    def _set_state(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.mean_quality_ = np.asarray(arrays["mean_quality"], dtype=np.float64)
        self._check_routes()


__all__ = ["ConditionalRouter", "Rule", "parse_rules", "MAX_PATTERN_CHARS"]
