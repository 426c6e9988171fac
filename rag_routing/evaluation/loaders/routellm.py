"""RouteLLM's evaluation files (Ong et al. 2024, ``routellm/evals/``): MMLU-style CSVs.

Each CSV has a ``prompt`` column and one boolean column per model (True = answered correctly); a column
``<model>_response`` holds that model's answer when present: it becomes the dataset's ``responses`` and is
used for token counts. A folder of CSVs
is read in file-name order. As RouteLLM does, the prompts listed in a ``contaminated_prompts.jsonl`` next to
the CSVs or one folder up are dropped. The files carry no costs: they come from the price table
(:mod:`rag_routing.evaluation.token_costs`).

Example:
    >>> ds = load_routellm("../shared/data/routellm/mmlu/responses")   # doctest: +SKIP
    >>> len(ds), ds.candidates                                          # doctest: +SKIP
    (14037, ['mistralai/Mixtral-8x7B-Instruct-v0.1', 'gpt-4-1106-preview'])
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.errors import DatasetFormatError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders.files import (
    existing,
    find_contaminated,
    parse_float,
    read_contaminated,
    read_csv,
    response_rows,
)
from rag_routing.evaluation.token_costs import price_from_text

logger = logging.getLogger(__name__)

_BOOLEAN_CELLS = {"true", "false", "1", "0", "1.0", "0.0", ""}
_RESPONSE_SUFFIX = "_response"


def _csv_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.csv"))
    if not files:
        raise DatasetFormatError(f"{path}: no .csv files in this folder")
    return files


def _model_columns(path: Path, header: list[str], rows: list[list[str]]) -> list[int]:
    """Columns whose cells are all booleans, except the prompt, responses and index columns."""
    if "prompt" not in header:
        raise DatasetFormatError(f"{path}: a RouteLLM CSV needs a 'prompt' column; found {header[:6]}")
    columns = []
    for j, name in enumerate(header):
        if name == "prompt" or name.endswith(_RESPONSE_SUFFIX) or not name or name.startswith("Unnamed:"):
            continue
        if all(row[j].strip().lower() in _BOOLEAN_CELLS for row in rows):
            columns.append(j)
    if not columns:
        raise DatasetFormatError(f"{path}: no boolean model column (one True/False column per model expected)")
    return columns


def _read_file(path: Path, models: list[str] | None) -> tuple[list[str], list[str], np.ndarray,
                                                             dict[str, list[str | None]], list[dict[str, Any]]]:
    header, rows = read_csv(path)
    columns = _model_columns(path, header, rows)
    names = [header[j] for j in columns]
    if models is not None and sorted(names) != sorted(models):
        raise DatasetFormatError(f"{path}: models {names} differ from the other files' {models}")
    order = [columns[names.index(m)] for m in (models or names)]
    p = header.index("prompt")
    quality = np.array([[parse_float(row[j], f"{path}, column {header[j]!r}") for j in order] for row in rows],
                       dtype=np.float64).reshape(len(rows), len(order))
    responses = {header[j]: [row[header.index(header[j] + _RESPONSE_SUFFIX)] or None for row in rows]
                 for j in order if header[j] + _RESPONSE_SUFFIX in header}
    subject = path.stem.split("_", 1)[1] if "_" in path.stem else path.stem
    meta = [{"source": path.name, "subject": subject} for _ in rows]
    return [row[p] for row in rows], models or names, quality, responses, meta


def load_routellm(path: str | Path, *, output_tokens: int | None = None, price_table: Any = None,
                  decontaminate: bool = True) -> RoutingDataset:
    """Load a RouteLLM CSV or folder of CSVs (see module docstring).

    Parameters:
        path: a CSV file or a folder of them.
        output_tokens: assumed answer length for rows without a recorded response (default: the estimate
            of :mod:`~rag_routing.evaluation.token_costs`).
        price_table: a :class:`~rag_routing.ledger.pricing.PriceTable`; default the shipped one.
        decontaminate: drop the prompts of ``contaminated_prompts.jsonl`` (RouteLLM's protocol).
    """
    root = existing(path)
    prompts: list[str] = []
    blocks: list[np.ndarray] = []
    responses: dict[str, list[str | None]] = {}
    metadata: list[dict[str, Any]] = []
    models: list[str] | None = None
    for file in _csv_files(root):
        p, models, q, r, meta = _read_file(file, models)
        offset = len(prompts)
        for name in models:  # keep responses aligned even when only some files have them
            responses.setdefault(name, [None] * offset).extend(r.get(name, [None] * len(p)))
        prompts += p
        blocks.append(q)
        metadata += meta
    assert models is not None
    quality = np.vstack(blocks)
    folder = root if root.is_dir() else root.parent
    contaminated = read_contaminated(find_contaminated(folder)) if decontaminate else set()
    keep = np.array([p not in contaminated for p in prompts], dtype=bool)
    if not keep.all():
        logger.info("dropped %d contaminated prompts (RouteLLM protocol)", int((~keep).sum()))
    prompts = [p for p, k in zip(prompts, keep) if k]
    responses = {m: [t for t, k in zip(texts, keep) if k] for m, texts in responses.items() if any(texts)}
    costs = price_from_text(models, prompts, responses or None, output_tokens, price_table)
    name = root.parent.name if root.is_dir() and root.name == "responses" else (root.name if root.is_dir()
                                                                                 else root.stem)
    return RoutingDataset(queries=prompts, candidates=models, quality=quality[keep], cost=costs.cost,
                          metadata=[m for m, k in zip(metadata, keep) if k], name=f"routellm:{name}",
                          cost_source=costs.source, responses=response_rows(models, responses, len(prompts)))


__all__ = ["load_routellm"]
