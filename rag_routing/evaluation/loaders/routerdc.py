"""RouterDC's data files (Chen et al. 2024, ``datasets/split2_model7``): a JSON list of
``{"question": str, "scores": {model: float}}``. A missing score is NaN. The files carry no costs: they come
from the price table and the prompt's tokens plus an estimated answer length
(:mod:`rag_routing.evaluation.token_costs`).

Example:
    >>> ds = load_routerdc("../shared/data/routerdc7/mmlu_test.json")   # doctest: +SKIP
    >>> ds.n_candidates                                                  # doctest: +SKIP
    7
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.errors import DatasetFormatError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders.files import existing, read_json
from rag_routing.evaluation.token_costs import price_from_text


def load_routerdc(path: str | Path, *, output_tokens: int | None = None, price_table: Any = None) -> RoutingDataset:
    """Load a RouterDC JSON file (see module docstring)."""
    file = existing(path)
    data = read_json(file) if file.is_file() else None
    if not isinstance(data, list) or not data:
        raise DatasetFormatError(f"{file}: expected a non-empty JSON list of {{'question', 'scores'}} objects")
    models: list[str] = []
    for i, item in enumerate(data):
        if not (isinstance(item, dict) and isinstance(item.get("question"), str)
                and isinstance(item.get("scores"), dict)):
            raise DatasetFormatError(f"{file}, item {i}: expected {{'question': str, 'scores': {{model: float}}}}")
        models += [m for m in item["scores"] if m not in models]
    try:
        quality = np.array([[np.nan if item["scores"].get(m) is None else float(item["scores"][m]) for m in models]
                            for item in data], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{file}: a score is not a number ({exc})") from exc
    questions = [item["question"] for item in data]
    costs = price_from_text(models, questions, None, output_tokens, price_table)
    return RoutingDataset(queries=questions, candidates=models, quality=quality, cost=costs.cost,
                          metadata=[{"source": file.name} for _ in data], name=f"routerdc:{file.stem}",
                          cost_source=costs.source)


__all__ = ["load_routerdc"]
