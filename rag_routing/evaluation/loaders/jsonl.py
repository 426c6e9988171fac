"""The generic routing-data format: JSON lines, one query a line.

.. code-block:: json

    {"query": "What is 2+2?",
     "outcomes": {"small": {"quality": 1.0, "cost_usd": 0.0001},
                  "large": {"quality": 1.0, "cost_usd": 0.0030, "response": "4"}},
     "meta": {"task": "arithmetic"}}

* ``quality`` is in ``[0, 1]``, higher is better; ``null`` or a missing model means unknown (NaN).
* ``cost_usd`` is the US $ of that call; ``null`` means unknown. When the key is *absent*, the call is priced
  from the price table and token counts (the prompt, plus ``response`` when given, else the estimate of
  :mod:`rag_routing.evaluation.token_costs`), and the dataset's ``cost_source`` says so.
* ``response`` (optional) is that model's answer; it becomes the dataset's ``responses``.
* ``meta`` (optional) becomes the row's metadata.

Candidates are the models in order of first appearance. :func:`write_jsonl` writes this format, so any
:class:`~rag_routing.evaluation.dataset.RoutingDataset` can be exported and read back unchanged.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> ds = RoutingDataset(["2+2?", "prove it"], ["small", "large"], np.array([[1.0, 1.0], [np.nan, 1.0]]),
    ...                     np.array([[0.001, 0.01], [0.001, 0.01]]))
    >>> path = write_jsonl(ds, pathlib.Path(tempfile.mkdtemp()) / "toy.jsonl")
    >>> back = load_jsonl(path)
    >>> back.candidates, bool(np.isnan(back.quality[1, 0])), back.cost_source
    (['small', 'large'], True, 'file')
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.errors import DatasetFormatError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders.files import existing, iter_jsonl, response_rows
from rag_routing.evaluation.token_costs import price_from_text


def _number(value: Any, where: str, low: float = 0.0, high: float = math.inf) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise DatasetFormatError(f"{where}: expected a number in [{low}, {high}] or null, got {value!r}")
    return float(value)


def _parse(file: Path) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    queries, outcomes, metadata = [], [], []
    for number, item in iter_jsonl(file):
        where = f"{file}, line {number}"
        if not isinstance(item, dict) or not isinstance(item.get("query"), str) or not isinstance(
                item.get("outcomes"), dict):
            raise DatasetFormatError(f"{where}: expected {{'query': str, 'outcomes': {{model: {{...}}}}}}")
        meta = item.get("meta", {})
        if not isinstance(meta, dict):
            raise DatasetFormatError(f"{where}: 'meta' must be an object")
        for model, outcome in item["outcomes"].items():
            if not isinstance(outcome, dict):
                raise DatasetFormatError(f"{where}: outcome of {model!r} must be an object with 'quality'")
        queries.append(item["query"])
        outcomes.append(item["outcomes"])
        metadata.append(meta)
    if not queries:
        raise DatasetFormatError(f"{file}: no queries (one JSON object a line expected)")
    return queries, outcomes, metadata


def load_jsonl(path: str | Path, *, output_tokens: int | None = None, price_table: Any = None) -> RoutingDataset:
    """Load the generic JSON-lines format (see module docstring)."""
    file = existing(path)
    queries, outcomes, metadata = _parse(file)
    models: list[str] = []
    for row in outcomes:
        models += [m for m in row if m not in models]
    n, m = len(queries), len(models)
    quality = np.full((n, m), np.nan)
    cost = np.full((n, m), np.nan)
    to_price = np.zeros((n, m), dtype=bool)
    responses: dict[str, list[str | None]] = {name: [None] * n for name in models}
    for i, row in enumerate(outcomes):
        for j, name in enumerate(models):
            outcome = row.get(name)
            if outcome is None:
                continue
            where = f"{file}, query {i + 1}, model {name!r}"
            quality[i, j] = _number(outcome.get("quality"), where + ", quality", 0.0, 1.0)
            if "cost_usd" in outcome:
                cost[i, j] = _number(outcome["cost_usd"], where + ", cost_usd")
            else:
                to_price[i, j] = True
            if isinstance(outcome.get("response"), str):
                responses[name][i] = outcome["response"]
    source = "file"
    if to_price.any():
        cols = np.flatnonzero(to_price.any(axis=0))
        priced = price_from_text([models[j] for j in cols], queries, {models[j]: responses[models[j]] for j in cols},
                                 output_tokens, price_table)
        cost[:, cols] = np.where(to_price[:, cols], priced.cost, cost[:, cols])
        share = f"{int(to_price.sum())} of {n * m} calls"
        source = priced.source if to_price.all() else f"file; {share} priced by {priced.source}"
    return RoutingDataset(queries=queries, candidates=models, quality=quality, cost=cost, metadata=metadata,
                          name=file.stem, cost_source=source, responses=response_rows(models, responses, n))


def write_jsonl(dataset: RoutingDataset, path: str | Path) -> Path:
    """Write ``dataset`` in the generic format (atomically); NaN becomes ``null``. Returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")

    def cell(value: float) -> float | None:
        return None if math.isnan(value) else float(value)

    with tmp.open("w", encoding="utf-8") as handle:
        for i, query in enumerate(dataset.queries):
            outcomes: dict[str, dict[str, Any]] = {
                name: {"quality": cell(dataset.quality[i, j]), "cost_usd": cell(dataset.cost[i, j])}
                for j, name in enumerate(dataset.candidates)}
            if dataset.responses is not None:
                for j, name in enumerate(dataset.candidates):
                    if dataset.responses[i][j] is not None:
                        outcomes[name]["response"] = dataset.responses[i][j]
            line = {"query": query, "outcomes": outcomes, "meta": dataset.metadata[i]}
            handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, target)
    return target


__all__ = ["load_jsonl", "write_jsonl"]
