"""Loaders on small fixture files: every format, format detection, costs, NaN cells, broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag_routing.errors import DatasetFormatError, InvalidInputError, UnknownPriceError
from rag_routing.evaluation.dataset import RoutingDataset
from rag_routing.evaluation.loaders import detect_format, load_dataset, write_jsonl
from rag_routing.evaluation.loaders.routerbench import load_routerbench, prompt_text, shared_prefix
from rag_routing.evaluation.token_costs import (
    FREE_FORM_OUTPUT_TOKENS,
    MULTIPLE_CHOICE_OUTPUT_TOKENS,
    estimate_output_tokens,
    price_from_text,
)
from rag_routing.ledger.pricing import PriceTable
from rag_routing.ledger.tokens import count_tokens

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "routing"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
SHOTS = "Answer with the letter of the right option.\n\nQ: What colour is a clear sky?\nA) blue\nB) red\nAnswer: A\n\n"


@pytest.mark.parametrize("path, fmt", [
    ("routellm/responses", "routellm"),
    ("routellm/responses/mmlu_math.csv", "routellm"),
    ("mt_bench", "mtbench"),
    ("mt_bench/judgements.jsonl", "mtbench"),
    ("routerbench_train.csv", "routerbench"),
    ("routerdc.json", "routerdc"),
    ("generic.jsonl", "jsonl"),
])
def test_detect_format(path, fmt):
    assert detect_format(FIXTURES / path) == fmt


def test_detect_format_errors():
    with pytest.raises(DatasetFormatError, match="--format"):
        detect_format(FIXTURES / "unknown.txt")
    with pytest.raises(DatasetFormatError):
        detect_format(FIXTURES / "bad_no_prompt.csv")
    with pytest.raises(InvalidInputError, match="no such file"):
        detect_format(FIXTURES / "missing.csv")


# ------------------------------------------------------------------ routellm
def test_routellm_folder_drops_contaminated_and_aligns_columns():
    ds = load_dataset(FIXTURES / "routellm" / "responses")
    assert ds.name == "routellm:routellm"
    assert ds.candidates == [STRONG, WEAK]    # files in name order: mmlu_history.csv first; math is realigned
    assert len(ds) == 7                                          # 8 rows, 1 contaminated (one folder up)
    assert not any("contaminated" in q for q in ds.queries)
    history = [i for i, m in enumerate(ds.metadata) if m["subject"] == "history"]
    assert history == [0, 1, 2]
    assert ds.quality[history].tolist() == [[1, 1], [0, 1], [1, 0]]
    assert ds.quality[4].tolist() == [1, 0]                     # math row 2: weak wrong, strong right
    assert np.isnan(ds.quality[6, 0])                           # empty cell = unknown
    assert ds.queries[5].startswith('What is the derivative of "x^3"?\nA.')   # quoted, multi-line prompt
    assert (ds.cost[:, 0] > ds.cost[:, 1]).all()
    assert "4 of 14 calls" not in ds.cost_source and "response tokens" in ds.cost_source


def test_routellm_costs_use_response_tokens_when_present():
    ds = load_dataset(FIXTURES / "routellm" / "responses" / "mmlu_math.csv")
    table = PriceTable.default()
    p = table.get(STRONG)
    # Row 0: prompt + the recorded response "B. 4"; row 3 has no strong response -> the multiple-choice estimate.
    expected0 = p.cost(count_tokens(ds.queries[0]), count_tokens("B. 4"))
    expected3 = p.cost(count_tokens(ds.queries[3]), MULTIPLE_CHOICE_OUTPUT_TOKENS)
    assert ds.cost[0, 1] == pytest.approx(expected0)
    assert ds.cost[3, 1] == pytest.approx(expected3)
    assert "7 of 8 calls" in ds.cost_source
    assert ds.responses[0] == ["B", "B. 4"] and ds.responses[3] == ["A", None]


def test_routellm_without_decontamination_and_with_fixed_output_tokens():
    from rag_routing.evaluation.loaders import load_routellm

    ds = load_routellm(FIXTURES / "routellm" / "responses", decontaminate=False, output_tokens=0)
    assert len(ds) == 8
    assert "0 assumed output tokens" in ds.cost_source


def test_routellm_errors():
    with pytest.raises(DatasetFormatError, match="prompt"):
        load_dataset(FIXTURES / "bad_no_prompt.csv", "routellm")
    with pytest.raises(DatasetFormatError, match="cells for"):
        load_dataset(FIXTURES / "bad_ragged.csv", "routellm")


# ------------------------------------------------------------------ mtbench
def test_mtbench_quality_is_mean_turn_score_over_ten():
    ds = load_dataset(FIXTURES / "mt_bench")
    assert ds.name == "routellm:mt_bench"
    assert ds.queries == ["Write a haiku about rain.", "What is 12 * 12?"]   # question 83 is contaminated
    assert ds.candidates == [STRONG, WEAK]
    assert ds.quality.tolist() == [[0.85, 0.6], [1.0, 0.7]]
    assert ds.responses[1] == [f"answer one of {STRONG} to 82", f"answer one of {WEAK} to 82"]
    assert "2 of 4 conversations" not in ds.cost_source and "4 of 4" in ds.cost_source
    # Input = turn 1 + (turn 1 + answer 1 + turn 2); output = answer 1 + answer 2.
    t1, t2 = count_tokens(ds.queries[0]), count_tokens("Now make it rhyme.")
    a1 = count_tokens(f"answer one of {STRONG} to 81")
    a2 = count_tokens(f"second answer of {STRONG}, a bit longer, to 81")
    assert ds.cost[0, 0] == pytest.approx(PriceTable.default().get(STRONG).cost(2 * t1 + a1 + t2, a1 + a2))


def test_mtbench_needs_both_files(tmp_path):
    (tmp_path / "judgements.jsonl").write_text("")
    with pytest.raises(DatasetFormatError, match="question.jsonl"):
        load_dataset(tmp_path, "mtbench")


# ------------------------------------------------------------------ routerbench
def test_routerbench_reads_costs_prompts_and_nan():
    ds = load_dataset(FIXTURES / "routerbench_train.csv")
    assert ds.name == "routerbench:routerbench_train"
    assert ds.candidates == ["mistralai/mistral-7b-chat", "claude-instant-v1", "gpt-4-1106-preview"]
    assert len(ds) == 12 and ds.cost_source.startswith("file")
    assert np.isnan(ds.quality[3, 1]) and np.isnan(ds.quality).sum() == 1
    # The few-shot prefix every prompt shares is cut from the query; the whole prompt stays in the metadata.
    assert ds.queries[0] == "Question 0 about physics: which option is right?\nA) one\nB) two\nC) three\nD) four"
    assert ds.metadata[0]["prompt"] == SHOTS + ds.queries[0]
    assert ds.cost[1, 2] == pytest.approx(0.0055)
    assert ds.responses[0] == ["B", "B", "B"]                     # "['B']" unwrapped
    assert {k: ds.metadata[0][k] for k in ("sample_id", "eval_name", "oracle_model_to_route_to")} == {
        "sample_id": "rb.0", "eval_name": "tiny-eval", "oracle_model_to_route_to": "claude-instant-v1"}
    whole = load_routerbench(FIXTURES / "routerbench_train.csv", strip_shared_prefix=False)
    assert whole.queries[0] == ds.metadata[0]["prompt"] and "prompt" not in whole.metadata[0]


def test_shared_prefix():
    assert shared_prefix(["a\n\nb", "a\n\nc"]) == "a\n\n"
    assert shared_prefix(["same start, no blank line x", "same start, no blank line y"]) == ""
    assert shared_prefix(["only one\n\nq"]) == ""


def test_prompt_text_of_stringified_lists():
    assert prompt_text("['a', 'b']") == "a\nb"
    assert prompt_text("[not a list") == "[not a list"
    assert prompt_text("[1, 2]") == "[1, 2]"
    assert prompt_text("plain") == "plain"


def test_routerbench_rejects_a_folder():
    with pytest.raises(DatasetFormatError, match="one RouterBench CSV"):
        load_dataset(FIXTURES, "routerbench")


# ------------------------------------------------------------------ routerdc
def test_routerdc_prices_from_the_table():
    ds = load_dataset(FIXTURES / "routerdc.json")
    assert ds.n_candidates == 3 and len(ds) == 7
    assert np.isnan(ds.quality[2, 1])
    assert ds.quality[1].tolist() == [0.5, 1.0, 0.0]
    price = PriceTable.default().get("Mistral-7B-v0.1")
    assert ds.cost[0, 0] == pytest.approx(price.cost(count_tokens(ds.queries[0]), MULTIPLE_CHOICE_OUTPUT_TOKENS))
    assert ds.cost[6, 0] == pytest.approx(price.cost(count_tokens(ds.queries[6]), FREE_FORM_OUTPUT_TOKENS))
    assert "price table" in ds.cost_source and "estimated output" in ds.cost_source


def test_routerdc_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="JSON list"):
        load_dataset(FIXTURES / "bad_not_list.json")
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        load_dataset(broken)
    unpriced = tmp_path / "unpriced.json"
    unpriced.write_text('[{"question": "q", "scores": {"my-secret-llm": 1}}]')
    with pytest.raises(UnknownPriceError, match="--prices"):
        load_dataset(unpriced)
    table = PriceTable.default().with_overrides({"my-secret-llm": {"input": 1.0, "output": 2.0}})
    assert load_dataset(unpriced, price_table=table).cost[0, 0] > 0


# ------------------------------------------------------------------ generic jsonl
def test_generic_jsonl():
    ds = load_dataset(FIXTURES / "generic.jsonl")
    assert ds.candidates == ["gpt-4o-mini", "gpt-4o"]
    assert np.isnan(ds.quality[2, 0]) and np.isnan(ds.quality[3, 0])    # null quality, missing model
    assert ds.cost[1].tolist() == [0.0003, 0.006]
    priced = PriceTable.default().get("gpt-4o").cost(count_tokens(ds.queries[3]), count_tokens("A prince..."))
    assert ds.cost[3, 1] == pytest.approx(priced)                        # no cost_usd: priced from tokens
    assert np.isnan(ds.cost[3, 0])
    assert ds.cost_source.startswith("file; 1 of 8 calls priced by price table")
    assert ds.metadata[0] == {"task": "geo"} and ds.metadata[2] == {}
    assert ds.responses[3] == [None, "A prince..."] and ds.responses[0] == [None, None]


def test_generic_jsonl_errors():
    with pytest.raises(DatasetFormatError, match="line 2"):
        load_dataset(FIXTURES / "bad_line.jsonl")
    with pytest.raises(DatasetFormatError, match=r"\[0.0, 1.0\]"):
        load_dataset(FIXTURES / "bad_quality.jsonl")


def test_jsonl_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    quality = rng.random((5, 3))
    quality[1, 2] = np.nan
    cost = rng.random((5, 3)) / 100
    cost[4, 0] = np.nan
    responses = [[None, f"answer {i}", None] for i in range(5)]
    ds = RoutingDataset([f"query {i} \u00e9" for i in range(5)], ["a", "b/c", "d"], quality, cost,
                        metadata=[{"i": i, "tags": ["x"]} for i in range(5)], responses=responses)
    back = load_dataset(write_jsonl(ds, tmp_path / "out" / "ds.jsonl"))
    assert back.queries == ds.queries and back.candidates == ds.candidates and back.responses == responses
    np.testing.assert_array_equal(back.quality, ds.quality)   # NaN included
    np.testing.assert_array_equal(back.cost, ds.cost)
    assert back.metadata == ds.metadata and back.cost_source == "file"


def test_output_token_estimate():
    est = estimate_output_tokens(["Q?\n(A) x\n(B) y", "Which one? Answer:", "Tell me a story."])
    assert est.tolist() == [MULTIPLE_CHOICE_OUTPUT_TOKENS, MULTIPLE_CHOICE_OUTPUT_TOKENS, FREE_FORM_OUTPUT_TOKENS]
    assert estimate_output_tokens(["a", "b"], 3).tolist() == [3, 3]
    with pytest.raises(InvalidInputError):
        estimate_output_tokens(["a"], -1)
    with pytest.raises(InvalidInputError, match="responses"):
        price_from_text(["gpt-4o"], ["a", "b"], {"gpt-4o": ["only one"]})
