"""Loaders for routing data files, picked from the file or by name.

=============  ===============================================================  ====================
format         files                                                            costs
=============  ===============================================================  ====================
``routellm``   a CSV or folder of CSVs: ``prompt`` + one boolean column a model  price table x tokens
``mtbench``    RouteLLM's MT-Bench folder (``judgements.jsonl``, ...)            price table x tokens
``routerbench`` a CSV with ``<model>`` scores and ``<model>|total_cost``           from the file
``routerdc``   a JSON list of ``{"question", "scores"}``                         price table x tokens
``jsonl``      the generic format of :mod:`.jsonl` (one query a line)           file, else table
=============  ===============================================================  ====================

Example:
    >>> ds = load_dataset("../shared/data/routellm/mmlu/responses")   # doctest: +SKIP
    >>> detect_format("../shared/data/routerbench/arc_challenge_test.csv")   # doctest: +SKIP
    'routerbench'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag_routing.errors import DatasetFormatError, InvalidInputError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders.files import existing, read_csv_header
from rag_routing.evaluation.loaders.jsonl import load_jsonl, write_jsonl
from rag_routing.evaluation.loaders.mtbench import JUDGEMENTS_FILE, load_mtbench
from rag_routing.evaluation.loaders.routellm import load_routellm
from rag_routing.evaluation.loaders.routerbench import COST_SUFFIX, load_routerbench
from rag_routing.evaluation.loaders.routerdc import load_routerdc

FORMATS: tuple[str, ...] = ("routellm", "mtbench", "routerbench", "routerdc", "jsonl")


def _csv_format(file: Path) -> str:
    header = read_csv_header(file)
    if any(h.endswith(COST_SUFFIX) for h in header):
        return "routerbench"
    if "prompt" in header:
        return "routellm"
    raise DatasetFormatError(f"{file}: a CSV with neither '<model>{COST_SUFFIX}' columns (routerbench) nor a "
                             "'prompt' column (routellm); pass --format")


def detect_format(path: str | Path) -> str:
    """The format of ``path`` (one of :data:`FORMATS`), from its name and first lines."""
    p = existing(path)
    if p.is_dir():
        if (p / JUDGEMENTS_FILE).is_file():
            return "mtbench"
        csvs = sorted(p.glob("*.csv"))
        if csvs:
            return _csv_format(csvs[0])
        raise DatasetFormatError(f"{p}: cannot tell the format of this folder (no CSV files, no {JUDGEMENTS_FILE}); "
                                 f"pass a file, or --format one of {', '.join(FORMATS)}")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _csv_format(p)
    if suffix == ".json":
        return "routerdc"
    if suffix == ".jsonl":
        return "mtbench" if p.name == JUDGEMENTS_FILE else "jsonl"
    raise DatasetFormatError(f"{p}: cannot tell the format from the name; pass --format one of {', '.join(FORMATS)}")


def load_dataset(path: str | Path, format: str | None = None, *, output_tokens: int | None = None,
                 price_table: Any = None) -> RoutingDataset:
    """Load ``path`` as a :class:`RoutingDataset` (``format`` detected when ``None``).

    ``output_tokens`` and ``price_table`` only matter for formats without costs (see each loader).
    """
    fmt = format or detect_format(path)
    if fmt == "routellm":
        return load_routellm(path, output_tokens=output_tokens, price_table=price_table)
    if fmt == "mtbench":
        return load_mtbench(path, price_table=price_table)
    if fmt == "routerbench":
        return load_routerbench(path)
    if fmt == "routerdc":
        return load_routerdc(path, output_tokens=output_tokens, price_table=price_table)
    if fmt == "jsonl":
        return load_jsonl(path, output_tokens=output_tokens, price_table=price_table)
    raise InvalidInputError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "detect_format", "load_dataset", "load_routellm", "load_mtbench", "load_routerbench",
           "load_routerdc", "load_jsonl", "write_jsonl"]
