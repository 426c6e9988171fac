"""The price table: shipped data, look-ups, overrides, unknown prices."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from rag_routing.candidates import Pricing
from rag_routing.errors import CorruptStateError, InvalidInputError, UnknownPriceError
from rag_routing.ledger import PriceTable, estimate_cost
from rag_routing.ledger.pricing import default_table


def _shipped() -> dict:
    return json.loads(resources.files("rag_routing").joinpath("data", "prices.json").read_text())


def test_shipped_table_is_dated_and_sourced():
    data = _shipped()
    assert data["as_of"].startswith("2026-")
    assert data["sources"]["openai"] and data["sources"]["anthropic"] and data["sources"]["together"]
    for name, spec in data["models"].items():
        assert spec["source"] in data["sources"], name
    assert PriceTable.default().as_of == data["as_of"]


@pytest.mark.parametrize(
    ("model", "price_in", "price_out"),
    [
        ("gpt-4o", 2.5, 10.0),
        ("gpt-4o-mini", 0.15, 0.6),
        ("gpt-4-1106-preview", 10.0, 30.0),
        ("gpt-3.5-turbo-1106", 1.0, 2.0),
        ("claude-instant-v1", 0.8, 2.4),
        ("claude-v1", 8.0, 24.0),
        ("claude-v2", 8.0, 24.0),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 0.6, 0.6),
        ("mixtral-8x7b-chat", 0.6, 0.6),
        ("mistral-7b-chat", 0.2, 0.2),
        ("llama-2-70b-chat", 0.9, 0.9),
        ("Meta-Llama-3-8B", 0.2, 0.2),
        ("code-llama-instruct-34b-chat", 0.776, 0.776),
        ("Yi-34B-Chat", 0.8, 0.8),
        ("WizardLM-13B-V1.2", 0.3, 0.3),
        ("zephyr-7b-beta", 0.2, 0.2),
        ("dolphin-2.9-llama3-8b", 0.2, 0.2),
        ("SmolLM2-135M-Instruct", 0.0, 0.0),
    ],
)
def test_known_prices(model, price_in, price_out):
    pricing = PriceTable.default().get(model)
    assert (pricing.input_per_mtok, pricing.output_per_mtok) == (price_in, price_out)


def test_local_models_are_explicitly_free():
    info = PriceTable.default().info("SmolLM2-135M-Instruct")
    assert info.local is True and info.pricing.cost(10**6, 10**6) == 0.0 and info.params_billion == 0.135


@pytest.mark.parametrize(
    "alias",
    ["GPT-4o", " gpt-4o ", "openai/gpt-4o", "openai:gpt-4o", "gpt-4o-2024-08-06", "azure/openai/gpt-4o-latest"],
)
def test_lookup_tolerates_case_prefixes_and_snapshots(alias):
    assert PriceTable.default().get(alias).output_per_mtok == 10.0


def test_lookup_does_not_confuse_families():
    table = PriceTable.default()
    assert table.get("gpt-4o-mini-2024-07-18").input_per_mtok == 0.15  # not gpt-4o
    assert table.get("anthropic/claude-3-5-sonnet-20241022").input_per_mtok == 3.0
    assert table.get("bedrock/anthropic.claude-v2").input_per_mtok == 8.0
    assert table.get("claude-2.1").input_per_mtok == 8.0  # alias
    assert table.get("together/mistralai/Mixtral-8x7B-Instruct-v0.1").input_per_mtok == 0.6


def test_unknown_model_error_says_what_to_do():
    with pytest.raises(UnknownPriceError) as info:
        PriceTable.default().get("x")
    assert "no price known for model 'x'; pass Pricing(...) or allow_unpriced=True" in str(info.value)
    assert "x" not in PriceTable.default() and "gpt-4o" in PriceTable.default()
    with pytest.raises(InvalidInputError):
        PriceTable.default().get("")


def test_override_changes_only_this_table():
    table = PriceTable.default()
    table.override("openai/gpt-4o", Pricing(input_per_mtok=1.0, output_per_mtok=2.0))
    assert table.get("gpt-4o").input_per_mtok == 1.0 and table.get("GPT-4O").output_per_mtok == 2.0
    assert PriceTable.default().get("gpt-4o").input_per_mtok == 2.5
    assert default_table().get("gpt-4o").input_per_mtok == 2.5
    table.override("my-llm", Pricing(input_per_mtok=3.0, output_per_mtok=4.0), params_billion=7)
    assert table.get("MY-LLM").output_per_mtok == 4.0 and table.params_billion("my-llm") == 7.0
    # a dated snapshot gets its own price and leaves the family alone
    table.override("gpt-4o-mini-2024-07-18", Pricing(input_per_mtok=9.0, output_per_mtok=9.0))
    assert table.get("gpt-4o-mini").input_per_mtok == 0.15
    assert table.get("gpt-4o-mini-2024-07-18").input_per_mtok == 9.0
    with pytest.raises(InvalidInputError):
        table.override("bad", {"input": 1, "output": 1})  # type: ignore[arg-type]


def test_override_keeps_aliases_and_size():
    table = PriceTable.default().override("claude-2", Pricing(input_per_mtok=1.0, output_per_mtok=1.0))
    assert table.get("claude-v2").input_per_mtok == 1.0 and table.get("claude-2.1").input_per_mtok == 1.0
    table.override("Meta-Llama-3-8B", Pricing(input_per_mtok=0.1, output_per_mtok=0.1))
    assert table.params_billion("meta-llama-3-8b") == 8.03


def test_with_overrides_returns_a_copy():
    base = PriceTable.default()
    changed = base.with_overrides({"gpt-4o": Pricing(input_per_mtok=0, output_per_mtok=0),
                                   "new-llm": {"input": 1.5, "output": 2.5}})
    assert changed.get("gpt-4o").input_per_mtok == 0 and changed.get("new-llm").output_per_mtok == 2.5
    assert base.get("gpt-4o").input_per_mtok == 2.5 and "new-llm" not in base


def test_from_json_and_to_dict_round_trip(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(PriceTable.default().to_dict()))
    table = PriceTable.from_json(path)
    assert table.models() == PriceTable.default().models()
    assert table.get("mixtral-8x7b-chat").output_per_mtok == 0.6
    assert table.info("mixtral-8x7b-chat").total_params_billion == 46.7
    path.write_text(json.dumps({"as_of": "2026-02-01", "models": {"mine": {"input": 1, "output": 2}}}))
    assert PriceTable.from_json(path).get("mine").cost(10**6, 10**6) == 3.0


@pytest.mark.parametrize(
    "content",
    ["{not json", json.dumps({"no_models": {}}), json.dumps({"models": {"m": {"input": 1}}}),
     json.dumps({"models": {"m": {"input": -1, "output": 1}}})],
)
def test_bad_price_files(tmp_path, content):
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises((CorruptStateError, InvalidInputError)):
        PriceTable.from_json(path)


def test_estimate_cost():
    assert estimate_cost("gpt-3.5-turbo-1106", 1_000_000, 500_000) == 2.0
    assert estimate_cost("x", 10, 10, pricing=Pricing(input_per_mtok=1e6, output_per_mtok=0)) == 10.0
    assert estimate_cost("x", 10, 10, allow_unpriced=True) == 0.0
    custom = PriceTable.default().override("x", Pricing(input_per_mtok=1, output_per_mtok=1))
    assert estimate_cost("x", 10**6, 0, table=custom) == 1.0
    with pytest.raises(UnknownPriceError):
        estimate_cost("x", 1, 1)
    with pytest.raises(InvalidInputError):
        estimate_cost("gpt-4o", -1, 0)
    with pytest.raises(InvalidInputError):
        estimate_cost("gpt-4o", float("nan"), 0)


def test_genai_prices_backs_the_shipped_table_and_names_its_source():
    pytest.importorskip("genai_prices")
    from rag_routing.ledger import CostLedger

    table = PriceTable.default()
    assert table.find("gpt-5") is not None and table.find("gpt-5").priced_by.startswith("genai-prices")
    assert PriceTable.default(maintained=False).find("gpt-5") is None  # the shipped table alone
    assert table.find("gpt-4o-2024-08-06").pricing == Pricing(input_per_mtok=2.5, output_per_mtok=10.0)
    # local models and host-priced open-weight models keep the shipped price
    assert table.find("SmolLM2-135M-Instruct").priced_by.startswith("shipped")
    assert table.find("mixtral-8x7b-chat").pricing.input_per_mtok == 0.6
    # overrides beat genai-prices; a candidate's own Pricing beats both
    custom = PriceTable.default().override("gpt-5", Pricing(input_per_mtok=1, output_per_mtok=1))
    assert custom.find("gpt-5").priced_by == "override" and custom.get("gpt-5").input_per_mtok == 1
    ledger = CostLedger(prices=custom)
    e1 = ledger.record_call(stage="generation", model="gpt-5", input_tokens=10)
    e2 = ledger.record_call(stage="generation", model="claude-opus-4-1", input_tokens=10)
    e3 = ledger.record_call(stage="generation", model="gpt-5", input_tokens=10,
                            pricing=Pricing(input_per_mtok=3, output_per_mtok=3))
    assert [e.metadata["price_source"] for e in (e1, e3)] == ["override", "candidate"]
    assert e2.metadata["price_source"].startswith("genai-prices")


def test_without_genai_prices_the_shipped_table_prices_everything(monkeypatch):
    from rag_routing.ledger import maintained_prices

    monkeypatch.setattr(maintained_prices, "available", lambda: False)
    maintained_prices.lookup.cache_clear()
    try:
        table = PriceTable.default()
        assert table.find("gpt-5") is None
        assert table.find("gpt-4o").priced_by.startswith("shipped")
    finally:
        maintained_prices.lookup.cache_clear()
