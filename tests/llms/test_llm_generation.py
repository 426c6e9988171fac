"""Generation results and their OpenAI log-probability shape (pure logic, no model)."""

from __future__ import annotations

import math

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.llms import Generation, GenerationChunk, openai_logprobs


def _generation(**overrides):
    values = dict(text="Zorbatown.", input_tokens=40, output_tokens=4, token_logprobs=[-0.5, -0.1, -0.2],
                  top_logprobs=[[("Z", -0.5), ("The", -1.2)], [("orbat", -0.1), ("or", -3.0)],
                                [("own.", -0.2), ("own", -2.0)]],
                  tokens=["Z", "orbat", "own."], finish_reason="stop", model="tiny", seconds=0.5)
    values.update(overrides)
    return Generation(**values)


def test_usage_and_summaries():
    g = _generation()
    assert g.usage == {"input_tokens": 40, "output_tokens": 4, "total_tokens": 44}
    assert g.sequence_logprob == pytest.approx(-0.8)
    assert g.tokens_per_second == pytest.approx(8.0)
    assert _generation(seconds=0.0).tokens_per_second == 0.0


def test_openai_shape_matches_chat_completions():
    content = _generation().to_openai_logprobs()["content"]
    assert [c["token"] for c in content] == ["Z", "orbat", "own."]
    assert content[0] == {
        "token": "Z", "logprob": -0.5, "bytes": [90],
        "top_logprobs": [{"token": "Z", "logprob": -0.5, "bytes": [90]},
                         {"token": "The", "logprob": -1.2, "bytes": [84, 104, 101]}],
    }


def test_openai_shape_without_alternatives_or_logprobs():
    assert openai_logprobs(["a", "é"], [-1.0, -2.0], [])["content"][1] == {
        "token": "é", "logprob": -2.0, "bytes": [195, 169], "top_logprobs": []}
    assert _generation(token_logprobs=[], top_logprobs=[]).to_openai_logprobs() == {"content": []}
    assert openai_logprobs(["a"], [-math.inf], [])["content"][0]["logprob"] == -math.inf


@pytest.mark.parametrize("tokens, logprobs, tops", [
    (["a", "b"], [-1.0], []),                      # a token without its log-probability
    (["a"], [-1.0], [[("a", -1.0)], [("b", -2.0)]]),  # more rows of alternatives than tokens
    (["a"], [0.5], []),                            # a probability above 1
    (["a"], [math.nan], []),
])
def test_openai_shape_rejects_inconsistent_input(tokens, logprobs, tops):
    with pytest.raises(InvalidInputError):
        openai_logprobs(tokens, logprobs, tops)


def test_chunk_logprobs_and_dict_round_trip():
    chunk = GenerationChunk(text="Z", tokens=["Z"], token_ids=[7], token_logprobs=[-0.5], top_logprobs=[[("Z", -0.5)]])
    assert chunk.to_openai_logprobs()["content"][0]["top_logprobs"] == [{"token": "Z", "logprob": -0.5, "bytes": [90]}]
    data = _generation().to_dict()
    assert data["top_logprobs"][0] == [["Z", -0.5], ["The", -1.2]]
    rebuilt = {**data, "top_logprobs": [[tuple(p) for p in row] for row in data["top_logprobs"]]}
    assert Generation(**rebuilt) == _generation()


@pytest.mark.parametrize("module", ["rag_routing.llms.generation", "rag_routing.llms.loading",
                                    "rag_routing.llms.scripted"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    if module.endswith("scripted"):
        pytest.importorskip("torch")
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
