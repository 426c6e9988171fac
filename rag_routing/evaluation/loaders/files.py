"""Reading the raw files behind the loaders: CSV (with very long cells), JSON, JSON lines, and RouteLLM's
lists of contaminated prompts. Every failure is a :class:`~rag_routing.errors.DatasetFormatError` naming the
file."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag_routing.errors import DatasetFormatError, InvalidInputError
from rag_routing.json_input import parse_json, read_json_file

#: File RouteLLM writes with the benchmark prompts that also appear in its training data.
CONTAMINATED_FILE = "contaminated_prompts.jsonl"

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # model responses can exceed csv's 128 kB default


def existing(path: str | Path) -> Path:
    """``path`` as a Path, or :class:`InvalidInputError` if nothing is there."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InvalidInputError(f"no such file or folder: {str(p)!r}")
    return p


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file; rows shorter or longer than the header are an error."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise DatasetFormatError(f"{path}: empty CSV file (no header)")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetFormatError(f"{path}: not a readable UTF-8 CSV file ({exc})") from exc
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DatasetFormatError(f"{path}, line {number}: {len(row)} cells for {len(header)} columns")
    return header, rows


def read_csv_header(path: Path) -> list[str]:
    """Only the header of a CSV file (for format detection)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetFormatError(f"{path}: not a readable UTF-8 CSV file ({exc})") from exc


def read_json(path: Path) -> Any:
    return read_json_file(path)


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed object)`` for every non-blank line."""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, parse_json(line, f"{path}, line {number}")
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({exc})") from exc


def find_contaminated(folder: Path) -> Path | None:
    """RouteLLM's ``contaminated_prompts.jsonl`` in ``folder`` or one folder up, if present."""
    for place in (folder, folder.parent):
        candidate = place / CONTAMINATED_FILE
        if candidate.is_file():
            return candidate
    return None


def read_contaminated(path: Path | None) -> set[str]:
    """The ``eval_prompt`` of every line (RouteLLM drops benchmark rows whose prompt is one of them)."""
    if path is None:
        return set()
    prompts: set[str] = set()
    for number, item in iter_jsonl(path):
        prompt = item.get("eval_prompt") if isinstance(item, dict) else None
        if not isinstance(prompt, str):
            raise DatasetFormatError(f"{path}, line {number}: expected an object with an 'eval_prompt' string")
        prompts.add(prompt)
    return prompts


def parse_float(value: str, where: str) -> float:
    """A numeric or boolean cell as float; an empty cell is NaN (unknown)."""
    text = value.strip()
    if not text or text.lower() in ("nan", "none", "null"):
        return float("nan")
    lowered = text.lower()
    if lowered == "true":
        return 1.0
    if lowered == "false":
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise DatasetFormatError(f"{where}: {value[:40]!r} is not a number or a boolean") from None



def response_rows(models: list[str], responses: dict[str, list[str | None]], n: int) -> list[list[str | None]] | None:
    """``{model: n answers}`` as the ``RoutingDataset.responses`` layout (n rows of m answers, None = unknown);
    ``None`` when no answer is known at all."""
    if not any(text for texts in responses.values() for text in texts):
        return None
    columns = [responses.get(m) or [None] * n for m in models]
    return [list(row) for row in zip(*columns)] if columns else None


__all__ = ["CONTAMINATED_FILE", "existing", "read_csv", "read_csv_header", "read_json", "iter_jsonl",
           "find_contaminated", "read_contaminated", "parse_float", "response_rows"]
