"""Costs for data files that carry none: the price table times token counts.

Input tokens are the prompt's (tiktoken ``cl100k_base``, offline). Output tokens are the response's when the
file holds responses; otherwise an estimate, documented here and repeated in the dataset's ``cost_source``:

* a multiple-choice prompt (answer options such as ``A.``/``(B)`` on their own lines, or a prompt ending in
  ``Answer:``) is answered in about :data:`MULTIPLE_CHOICE_OUTPUT_TOKENS` tokens ("B. paralysis of ...");
* any other prompt in about :data:`FREE_FORM_OUTPUT_TOKENS` tokens (a paragraph, or a short function);
* ``output_tokens=N`` replaces both with ``N``.

Example:
    >>> est = estimate_output_tokens(["Which?\\nA. x\\nB. y\\nAnswer:", "Write a poem about rain."])
    >>> est.tolist()
    [8, 256]
    >>> costs = price_from_text(["gpt-4-1106-preview"], ["hello world"], output_tokens=0)
    >>> float(costs.cost[0, 0])   # 2 tokens at 10 $ / 1M
    2e-05
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rag_routing.errors import InvalidInputError, UnknownPriceError

#: Estimated answer length of a multiple-choice prompt without a recorded response.
MULTIPLE_CHOICE_OUTPUT_TOKENS = 8
#: Estimated answer length of any other prompt without a recorded response.
FREE_FORM_OUTPUT_TOKENS = 256

_OPTION_LINE = re.compile(r"(?m)^\s*\(?([A-H])[.):]\s")
_ANSWER_CUE = re.compile(r"(?i)answer\s*:?\s*$")


@dataclass(frozen=True)
class TokenCosts:
    """A cost matrix (US $, ``(n, m)``) and a sentence saying how it was made."""

    cost: np.ndarray
    source: str


def is_multiple_choice(prompt: str) -> bool:
    """True for prompts listing at least two lettered options, or ending with an ``Answer:`` cue."""
    letters = set(_OPTION_LINE.findall(prompt))
    return len(letters) >= 2 or bool(_ANSWER_CUE.search(prompt))


def estimate_output_tokens(prompts: Sequence[str], output_tokens: int | None = None) -> np.ndarray:
    """Estimated response length (tokens) per prompt; see the module docstring."""
    if output_tokens is not None:
        if isinstance(output_tokens, bool) or not isinstance(output_tokens, (int, np.integer)) or output_tokens < 0:
            raise InvalidInputError(f"output_tokens must be an integer >= 0, got {output_tokens!r}")
        return np.full(len(prompts), int(output_tokens), dtype=np.int64)
    choice = np.fromiter((is_multiple_choice(p) for p in prompts), dtype=bool, count=len(prompts))
    return np.where(choice, MULTIPLE_CHOICE_OUTPUT_TOKENS, FREE_FORM_OUTPUT_TOKENS).astype(np.int64)


def _table(table: object | None) -> object:
    if table is not None:
        return table
    from rag_routing.ledger.pricing import default_table

    return default_table()


def price_tokens(candidates: Sequence[str], input_tokens: np.ndarray, output_tokens: np.ndarray,
                 table: object | None = None) -> np.ndarray:
    """``(n, m)`` US $ of each call: per-candidate prices times ``(n,)`` or ``(n, m)`` token counts."""
    prices = _table(table)
    try:
        pricing = [prices.get(name) for name in candidates]  # type: ignore[attr-defined]
    except UnknownPriceError as exc:
        raise UnknownPriceError(
            f"{exc}. This data file has no costs, so every candidate needs a price: pass a price table "
            "(--prices FILE, the format of rag_routing/data/prices.json) or put costs in the file"
        ) from exc
    n, m = len(np.asarray(input_tokens)), len(candidates)
    if n == 0:
        return np.zeros((0, m))
    tokens_in = np.broadcast_to(np.asarray(input_tokens, dtype=np.float64).reshape(n, -1), (n, m))
    tokens_out = np.broadcast_to(np.asarray(output_tokens, dtype=np.float64).reshape(n, -1), (n, m))
    price_in = np.array([p.input_per_mtok for p in pricing]) / 1e6
    price_out = np.array([p.output_per_mtok for p in pricing]) / 1e6
    per_call = np.array([p.per_call for p in pricing])
    return tokens_in * price_in + tokens_out * price_out + per_call


def count_tokens(texts: Sequence[str]) -> np.ndarray:
    """Token counts (offline ``cl100k_base``) as an int array."""
    from rag_routing.ledger.tokens import count_tokens_batch

    return np.asarray(count_tokens_batch(list(texts)), dtype=np.int64)


def table_label(table: object | None = None) -> str:
    """``"price table as of <date>"`` for the cost-source sentence."""
    as_of = getattr(_table(table), "as_of", None)
    return f"price table as of {as_of}" if as_of else "price table"


def price_from_text(
    candidates: Sequence[str],
    prompts: Sequence[str],
    responses: Mapping[str, Sequence[str | None]] | None = None,
    output_tokens: int | None = None,
    table: object | None = None,
) -> TokenCosts:
    """Cost of every (prompt, candidate) call from token counts and the price table.

    Parameters:
        candidates: model names, looked up in the price table (provider prefixes are tolerated).
        prompts: ``n`` prompts (input tokens).
        responses: optional ``{candidate: n responses}``; a missing or empty response falls back to the
            estimate.
        output_tokens: fixed output length instead of the estimate.
        table: a :class:`~rag_routing.ledger.pricing.PriceTable`; default the shipped one.
    """
    n, m = len(prompts), len(candidates)
    tokens_in = count_tokens(prompts)
    estimate = estimate_output_tokens(prompts, output_tokens)
    tokens_out = np.broadcast_to(estimate[:, None], (n, m)).copy()
    measured = 0
    for j, name in enumerate(candidates):
        texts = (responses or {}).get(name)
        if texts is None:
            continue
        if len(texts) != n:
            raise InvalidInputError(f"{len(texts)} responses of {name!r} for {n} prompts")
        known = np.array([bool(t) for t in texts])
        if known.any():
            tokens_out[known, j] = count_tokens([t for t in texts if t])
            measured += int(known.sum())
    if output_tokens is not None:
        guess = f"{output_tokens} assumed output tokens"
    else:
        guess = (f"estimated output ({MULTIPLE_CHOICE_OUTPUT_TOKENS} tokens for multiple-choice prompts, "
                 f"{FREE_FORM_OUTPUT_TOKENS} otherwise)")
    if measured == n * m:
        how = "prompt + response tokens"
    elif measured:
        how = f"prompt + response tokens ({measured} of {n * m} calls; the rest {guess})"
    else:
        how = f"prompt tokens + {guess}"
    source = f"{table_label(table)} x cl100k_base token counts: {how}"
    return TokenCosts(price_tokens(candidates, tokens_in, tokens_out, table), source)


__all__ = [
    "MULTIPLE_CHOICE_OUTPUT_TOKENS",
    "FREE_FORM_OUTPUT_TOKENS",
    "TokenCosts",
    "is_multiple_choice",
    "estimate_output_tokens",
    "count_tokens",
    "price_tokens",
    "price_from_text",
    "table_label",
]
