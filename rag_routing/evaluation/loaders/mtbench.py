"""RouteLLM's MT-Bench evaluation data: GPT-4-as-judge scores (1-10) of two-turn conversations.

A folder (or its ``judgements.jsonl``) with ``judgements.jsonl`` (``question_id, model, judgment, score,
turn, user_prompt``), ``question.jsonl`` (``question_id, category, turns``) and, optionally,
``contaminated_prompts.jsonl``. As in RouteLLM's ``MTBench`` benchmark:

* the query is the first turn (RouteLLM routes on it), the routed model answers both turns;
* quality = the mean of the two turns' scores, divided by 10 (RouteLLM averages the judge scores of both
  turns; the scale does not change APGR or CPT);
* questions whose first or second turn is listed as contaminated are dropped (80 -> 72);
* ``responses`` holds each model's first-turn answer, read from the judge prompts.

Costs: price table x tokens of both calls. The judge prompts hold each model's answers, so
input = turn 1 + (turn 1 + answer 1 + turn 2) and output = answer 1 + answer 2; where an answer cannot be read
from the judge prompt, :data:`~rag_routing.evaluation.token_costs.FREE_FORM_OUTPUT_TOKENS` per turn is assumed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.errors import DatasetFormatError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders.files import (
    CONTAMINATED_FILE,
    existing,
    iter_jsonl,
    read_contaminated,
    response_rows,
)
from rag_routing.evaluation.token_costs import FREE_FORM_OUTPUT_TOKENS, count_tokens, price_tokens, table_label

JUDGEMENTS_FILE = "judgements.jsonl"
QUESTIONS_FILE = "question.jsonl"

_CONVERSATION = re.compile(
    r"<\|The Start of Assistant A's Conversation with User\|>(.*?)<\|The End of Assistant A's Conversation",
    re.S)
_ANSWERS = re.compile(r"### Assistant A:\n(.*?)(?=\n\n### User:\n|\Z)", re.S)


def _answers(user_prompt: str) -> tuple[str, str] | None:
    """Both answers of a multi-turn judge prompt, or ``None`` if the layout is not the expected one."""
    match = _CONVERSATION.search(user_prompt)
    found = _ANSWERS.findall(match.group(1)) if match else []
    return (found[0].strip(), found[1].strip()) if len(found) == 2 else None


def _questions(path: Path) -> dict[int, dict[str, Any]]:
    questions = {}
    for number, item in iter_jsonl(path):
        turns = item.get("turns") if isinstance(item, dict) else None
        if not isinstance(turns, list) or len(turns) < 2 or "question_id" not in item:
            raise DatasetFormatError(f"{path}, line {number}: expected question_id and two turns")
        questions[int(item["question_id"])] = item
    return questions


def _scores(path: Path) -> tuple[list[str], dict[tuple[int, str], dict[int, float]], dict[tuple[int, str], Any]]:
    models: list[str] = []
    scores: dict[tuple[int, str], dict[int, float]] = defaultdict(dict)
    answers: dict[tuple[int, str], Any] = {}
    for number, item in iter_jsonl(path):
        try:
            key = (int(item["question_id"]), str(item["model"]))
            turn, score = int(item["turn"]), float(item["score"])
        except (KeyError, TypeError, ValueError):
            raise DatasetFormatError(f"{path}, line {number}: expected question_id, model, turn and score") from None
        if key[1] not in models:
            models.append(key[1])
        scores[key][turn] = score if score >= 0 else float("nan")  # FastChat writes -1 when parsing failed
        if turn == 2:
            answers[key] = _answers(str(item.get("user_prompt", "")))
    return models, scores, answers


def load_mtbench(path: str | Path, *, price_table: Any = None, decontaminate: bool = True) -> RoutingDataset:
    """Load RouteLLM's MT-Bench judgements (see module docstring)."""
    root = existing(path)
    folder = root if root.is_dir() else root.parent
    for needed in (JUDGEMENTS_FILE, QUESTIONS_FILE):
        if not (folder / needed).is_file():
            raise DatasetFormatError(f"{folder}: MT-Bench data needs {JUDGEMENTS_FILE} and {QUESTIONS_FILE}")
    questions = _questions(folder / QUESTIONS_FILE)
    models, scores, answers = _scores(folder / JUDGEMENTS_FILE)
    contaminated = read_contaminated(folder / CONTAMINATED_FILE) if (
        decontaminate and (folder / CONTAMINATED_FILE).is_file()) else set()
    ids = [qid for qid, q in questions.items()
           if not ({q["turns"][0], q["turns"][1]} & contaminated) and any((qid, m) in scores for m in models)]
    quality = np.array([[np.mean(list(scores[(q, m)].values())) / 10.0 if scores.get((q, m)) else np.nan
                         for m in models] for q in ids]).reshape(len(ids), len(models))
    turn1 = [str(questions[q]["turns"][0]) for q in ids]
    turn2 = [str(questions[q]["turns"][1]) for q in ids]
    t1, t2 = count_tokens(turn1), count_tokens(turn2)
    a1 = np.full((len(ids), len(models)), FREE_FORM_OUTPUT_TOKENS, dtype=np.int64)
    a2 = a1.copy()
    read = 0
    first_answers: dict[str, list[str | None]] = {}
    for j, m in enumerate(models):
        pairs = [answers.get((q, m)) for q in ids]
        first_answers[m] = [pair[0] if pair else None for pair in pairs]
        rows = [i for i, pair in enumerate(pairs) if pair]
        if rows:
            a1[rows, j] = count_tokens([pairs[i][0] for i in rows])
            a2[rows, j] = count_tokens([pairs[i][1] for i in rows])
            read += len(rows)
    tokens_in = (2 * t1 + t2)[:, None] + a1
    cost = price_tokens(models, tokens_in, a1 + a2, price_table)
    source = (f"{table_label(price_table)} x cl100k_base token counts of both turns: prompts + the answers "
              f"read from the judge prompts ({read} of {len(ids) * len(models)} conversations; "
              f"{FREE_FORM_OUTPUT_TOKENS} tokens per answer assumed for the rest)")
    metadata = [{"question_id": q, "category": questions[q].get("category"), "turn2": questions[q]["turns"][1]}
                for q in ids]
    return RoutingDataset(queries=turn1, candidates=models, quality=quality, cost=cost, metadata=metadata,
                          name="routellm:mt_bench", cost_source=source,
                          responses=response_rows(models, first_answers, len(ids)))


__all__ = ["load_mtbench"]
