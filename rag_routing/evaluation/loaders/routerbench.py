"""RouterBench (Hu et al. 2024) CSVs, as re-split in RouterDC's ``routerbench_zs``.

Columns: ``sample_id``, ``prompt`` (a stringified Python list holding the prompt), ``eval_name``, one score
column per model (empty = unknown), ``<model>|model_response`` and ``<model>|total_cost`` (US $ of that
call), ``oracle_model_to_route_to``. The models are the ones with a ``|total_cost`` column. Costs come from
the file; a missing cost cell stays NaN. The responses (also stringified lists) become ``responses``.

RouterBench prompts are few-shot: every prompt of a file starts with the same in-context examples (about
1,650 characters for ARC-Challenge) and ends with the question. A query encoder reads only the start of a text
(MiniLM: 256 word pieces), so every query would embed the same. The loader therefore removes the prefix that
all prompts of the file share (cut at a blank line) from the query; the full prompt stays in each row's
metadata (``prompt``). ``strip_shared_prefix=False`` keeps the prompts whole.

Example:
    >>> ds = load_routerbench("../shared/data/routerbench/arc_challenge_train.csv")   # doctest: +SKIP
    >>> ds.n_candidates, ds.cost_source                                                # doctest: +SKIP
    (11, 'file: <model>|total_cost')
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.errors import DatasetFormatError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders.files import existing, parse_float, read_csv, response_rows

COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
_META_COLUMNS = ("sample_id", "eval_name", "oracle_model_to_route_to")


def prompt_text(cell: str) -> str:
    """The prompt held by a stringified list (``"['What is ...']"``); other text is returned unchanged.

    Example:
        >>> prompt_text("['Q: 2+2?\\\\nA) 3\\\\nB) 4']")
        'Q: 2+2?\\nA) 3\\nB) 4'
    """
    text = cell.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return cell
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return "\n".join(value)
    return cell


def shared_prefix(texts: list[str]) -> str:
    r"""The start that all ``texts`` share, cut after its last blank line ("" if none, or fewer than 2 texts).

    Example:
        >>> shared_prefix(["Q: 1+1?\nA: 2\n\nQ: 2+2?", "Q: 1+1?\nA: 2\n\nQ: 3+5?"])
        'Q: 1+1?\nA: 2\n\n'
    """
    if len(texts) < 2:
        return ""
    common = os.path.commonprefix(texts)
    cut = common.rfind("\n\n")
    return common[: cut + 2] if cut >= 0 else ""


def load_routerbench(path: str | Path, *, strip_shared_prefix: bool = True) -> RoutingDataset:
    """Load one RouterBench CSV (see module docstring)."""
    file = existing(path)
    if file.is_dir():
        raise DatasetFormatError(f"{file}: pass one RouterBench CSV file, not a folder (e.g. --train/--test)")
    header, rows = read_csv(file)
    models = [h[: -len(COST_SUFFIX)] for h in header if h.endswith(COST_SUFFIX)]
    missing = [m for m in models if m not in header]
    if not models or "prompt" not in header or missing:
        raise DatasetFormatError(
            f"{file}: a RouterBench CSV needs 'prompt', '<model>' score and '<model>{COST_SUFFIX}' columns"
            + (f"; no score column for {missing}" if missing else ""))
    score_at = [header.index(m) for m in models]
    cost_at = [header.index(m + COST_SUFFIX) for m in models]
    quality = np.array([[parse_float(r[j], f"{file}, column {header[j]!r}") for j in score_at] for r in rows],
                       dtype=np.float64).reshape(len(rows), len(models))
    cost = np.array([[parse_float(r[j], f"{file}, column {header[j]!r}") for j in cost_at] for r in rows],
                    dtype=np.float64).reshape(len(rows), len(models))
    p = header.index("prompt")
    responses = {m: [prompt_text(r[header.index(m + RESPONSE_SUFFIX)]) or None for r in rows]
                 for m in models if m + RESPONSE_SUFFIX in header}
    meta_at = {c: header.index(c) for c in _META_COLUMNS if c in header}
    metadata: list[dict[str, Any]] = [{c: r[j] for c, j in meta_at.items()} for r in rows]
    prompts = [prompt_text(r[p]) for r in rows]
    prefix = shared_prefix(prompts) if strip_shared_prefix else ""
    queries = [text[len(prefix):] for text in prompts]
    if prefix:
        for meta, text in zip(metadata, prompts):
            meta["prompt"] = text
    return RoutingDataset(queries=queries, candidates=models, quality=quality,
                          cost=cost, metadata=metadata, name=f"routerbench:{file.stem}",
                          cost_source=f"file: <model>{COST_SUFFIX}",
                          responses=response_rows(models, responses, len(rows)))


__all__ = ["load_routerbench", "prompt_text", "shared_prefix", "COST_SUFFIX", "RESPONSE_SUFFIX"]
