"""CostLedger: recording, validation, concurrency, pricing of calls, reports and exports."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import threading

import pytest

from rag_routing.candidates import Pricing
from rag_routing.errors import CorruptStateError, InvalidInputError, UnknownPriceError
from rag_routing.ledger import CostLedger, LedgerEntry, PriceTable


def test_record_returns_the_entry_with_defaults():
    ledger = CostLedger(principal="alice")
    entry = ledger.record("retrieve", "bm25", seconds=0.25, metadata={"k": 5})
    assert isinstance(entry, LedgerEntry)
    assert (entry.stage, entry.component, entry.model, entry.principal) == ("retrieve", "bm25", None, "alice")
    assert entry.cost_usd == 0.0 and entry.seconds == 0.25 and entry.energy_kwh is None
    assert entry.metadata == {"k": 5} and entry.entry_id.startswith(ledger.ledger_id)
    assert ledger.entries == (entry,)
    with pytest.raises(AttributeError):
        entry.cost_usd = 1.0  # type: ignore[misc]


def test_component_defaults_to_model():
    assert CostLedger().record("generate", model="gpt-4o").component == "gpt-4o"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_tokens": -1},
        {"output_tokens": 2.5},
        {"input_tokens": True},
        {"cost_usd": float("nan")},
        {"cost_usd": -0.01},
        {"cost_usd": "0.1"},
        {"seconds": float("inf")},
        {"energy_kwh": -1.0},
        {"emissions_gco2e": float("nan")},
    ],
)
def test_invalid_amounts_are_refused(kwargs):
    ledger = CostLedger()
    with pytest.raises(InvalidInputError):
        ledger.record("generate", "m", **kwargs)
    assert len(ledger) == 0


def test_empty_stage_is_refused():
    with pytest.raises(InvalidInputError):
        CostLedger().record("", "m")


def test_numpy_counts_are_stored_as_python_numbers():
    np = pytest.importorskip("numpy")
    entry = CostLedger().record("g", "m", input_tokens=np.int64(7), cost_usd=np.float32(0.5))
    assert type(entry.input_tokens) is int and entry.input_tokens == 7
    assert type(entry.cost_usd) is float and entry.cost_usd == 0.5


def test_totals_under_8_threads_x_1000_records_are_exact():
    ledger = CostLedger()
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        for i in range(1000):
            ledger.record("generate", f"c{worker}", input_tokens=3, output_tokens=1, cost_usd=0.1,
                          seconds=0.001 * (i % 7))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    totals = ledger.totals()
    assert totals["calls"] == 8000 == len(ledger)
    assert totals["input_tokens"] == 24000 and totals["output_tokens"] == 8000 and totals["tokens"] == 32000
    # fsum: the correctly rounded sum, whatever order the threads appended in
    assert totals["cost_usd"] == math.fsum([0.1] * 8000)
    assert len({e.entry_id for e in ledger.entries}) == 8000
    assert {k: v["calls"] for k, v in ledger.breakdown("component").items()} == {f"c{w}": 1000 for w in range(8)}


async def test_totals_under_200_asyncio_tasks_are_exact():
    ledger = CostLedger()

    async def call(i: int) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
            ledger.record("judge", "j", input_tokens=i, cost_usd=0.25)

    await asyncio.gather(*(call(i) for i in range(200)))
    totals = ledger.totals()
    assert totals["calls"] == 1000
    assert totals["input_tokens"] == 5 * sum(range(200))
    assert totals["cost_usd"] == 250.0


def test_record_call_prices_tokens_from_the_table():
    ledger = CostLedger()
    entry = ledger.record_call(stage="generate", model="gpt-4-1106-preview", input_tokens=1000, output_tokens=100)
    assert entry.cost_usd == pytest.approx(1000 * 10 / 1e6 + 100 * 30 / 1e6)
    assert entry.estimated is True and entry.priced is True
    assert entry.component == "gpt-4-1106-preview"


def test_provider_usage_wins_over_estimates():
    ledger = CostLedger()
    entry = ledger.record_call(stage="generate", model="gpt-4o-mini", input_tokens=10, output_tokens=10,
                               input_text="a much longer prompt than ten tokens " * 5,
                               usage={"prompt_tokens": 2000, "completion_tokens": 400, "total_tokens": 2400})
    assert (entry.input_tokens, entry.output_tokens) == (2000, 400)
    assert entry.estimated is False
    assert entry.cost_usd == pytest.approx(2000 * 0.15 / 1e6 + 400 * 0.6 / 1e6)


def test_partial_usage_fills_the_rest_and_stays_estimated():
    entry = CostLedger().record_call(stage="generate", model="gpt-4o", usage={"input_tokens": 50},
                                     output_text="hello world")
    assert (entry.input_tokens, entry.output_tokens, entry.estimated) == (50, 2, True)


def test_usage_object_with_attributes_is_understood():
    class Usage:  # the shape of openai's CompletionUsage
        prompt_tokens = 11
        completion_tokens = 7

    entry = CostLedger().record_call(stage="g", model="gpt-4o", usage=Usage())
    assert (entry.input_tokens, entry.output_tokens, entry.estimated) == (11, 7, False)


def test_record_call_counts_text_tokens():
    entry = CostLedger().record_call(stage="g", model="gpt-4", input_text="hello world", output_text="hello")
    assert (entry.input_tokens, entry.output_tokens) == (2, 1)


def test_record_call_energy_from_table_size():
    entry = CostLedger().record_call(stage="g", model="Meta-Llama-3-8B", input_tokens=10, output_tokens=100)
    assert entry.energy_kwh is not None and entry.energy_kwh > 0
    assert entry.emissions_gco2e == pytest.approx(entry.energy_kwh * 590.4)
    unknown = CostLedger().record_call(stage="g", model="gpt-4o", input_tokens=10, output_tokens=100)
    assert unknown.energy_kwh is None and unknown.emissions_gco2e is None
    sized = CostLedger().record_call(stage="g", model="gpt-4o", output_tokens=100, params_billion=200)
    assert sized.energy_kwh is not None and sized.energy_kwh > entry.energy_kwh


def test_unknown_price_raises_unless_allowed():
    ledger = CostLedger()
    with pytest.raises(UnknownPriceError, match=r"no price known for model 'my-llm'; pass Pricing\(\.\.\.\)"):
        ledger.record_call(stage="g", model="my-llm", input_tokens=5)
    assert len(ledger) == 0
    entry = ledger.record_call(stage="g", model="my-llm", input_tokens=5, allow_unpriced=True)
    assert entry.cost_usd == 0.0 and entry.priced is False
    assert ledger.totals()["unpriced_calls"] == 1
    explicit = ledger.record_call(stage="g", model="my-llm", input_tokens=1_000_000,
                                  pricing=Pricing(input_per_mtok=2.0, output_per_mtok=4.0))
    assert explicit.cost_usd == 2.0 and explicit.priced is True


def test_ledger_level_allow_unpriced_and_custom_table():
    table = PriceTable.default().override("house-llm", Pricing(input_per_mtok=1.0, output_per_mtok=1.0))
    ledger = CostLedger(prices=table, allow_unpriced=True)
    assert ledger.record_call(stage="g", model="house-llm", input_tokens=10**6).cost_usd == 1.0
    assert ledger.record_call(stage="g", model="nobody-knows", input_tokens=10).priced is False


def test_estimate_call_records_nothing():
    ledger = CostLedger()
    est = ledger.estimate_call("gpt-4o", 1000, 1000)
    assert est.cost_usd == pytest.approx(0.0125) and est.priced and len(ledger) == 0
    assert est.amounts(seconds=2.0).as_tuple() == pytest.approx((0.0125, 2000, 2.0, 0.0))


def _sample_ledger() -> CostLedger:
    ledger = CostLedger(ledger_id="sample")
    ledger.record("retrieve", "bm25", seconds=0.5)
    ledger.record("generate", "small", "gpt-4o-mini", input_tokens=100, output_tokens=20, cost_usd=0.25,
                  seconds=1.0, energy_kwh=0.001, emissions_gco2e=0.5, decision_id="d1", estimated=True,
                  metadata={"why": "cheap, \"quoted\""})
    ledger.record("generate", "large", "gpt-4o", input_tokens=100, output_tokens=50, cost_usd=0.5, seconds=2.0,
                  decision_id="d1")
    return ledger


def test_totals_and_breakdowns():
    ledger = _sample_ledger()
    totals = ledger.totals()
    assert totals["calls"] == 3 and totals["cost_usd"] == 0.75 and totals["seconds"] == 3.5
    assert totals["energy_kwh"] == 0.001 and totals["energy_unknown_calls"] == 2
    assert totals["estimated_calls"] == 1
    by_stage = ledger.breakdown("stage")
    assert list(by_stage) == ["retrieve", "generate"]
    assert by_stage["generate"]["cost_usd"] == 0.75 and by_stage["generate"]["tokens"] == 270
    assert set(ledger.breakdown("model")) == {"(none)", "gpt-4o-mini", "gpt-4o"}
    assert ledger.breakdown("decision_id")["d1"]["calls"] == 2
    with pytest.raises(InvalidInputError):
        ledger.breakdown("colour")


def test_report_table_lists_groups_and_total():
    text = _sample_ledger().report("component")
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["component", "calls"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert set(rows) == {"bm25", "small", "large"}
    assert rows["large"][4] == "0.500000"
    total = next(line for line in lines if line.startswith("TOTAL")).split()
    assert total[1] == "3" and total[4] == "0.750000"
    assert "1 call(s) with estimated tokens" in text


def test_json_export_round_trips(tmp_path):
    ledger = _sample_ledger()
    path = tmp_path / "ledger.json"
    text = ledger.to_json(path)
    doc = json.loads(path.read_text())
    assert doc == json.loads(text)
    assert doc["ledger_id"] == "sample" and doc["totals"]["cost_usd"] == 0.75
    assert doc["breakdown"]["stage"]["generate"]["calls"] == 2
    assert [e["component"] for e in doc["entries"]] == ["bm25", "small", "large"]
    assert doc["entries"][1]["metadata"] == {"why": "cheap, \"quoted\""}
    again = CostLedger.from_json(path)
    assert again.entries == ledger.entries and again.ledger_id == "sample"
    assert CostLedger.from_json(text).totals() == ledger.totals()


def test_from_json_rejects_garbage(tmp_path):
    with pytest.raises(CorruptStateError):
        CostLedger.from_json('{"entries": [{"stage": "x"}]}')
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CorruptStateError):
        CostLedger.from_json(bad)


def test_csv_export_content(tmp_path):
    ledger = _sample_ledger()
    text = ledger.to_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3
    assert rows[0]["stage"] == "retrieve" and rows[0]["model"] == "" and rows[0]["energy_kwh"] == ""
    assert rows[1]["cost_usd"] == "0.25" and rows[1]["estimated"] == "True"
    assert json.loads(rows[1]["metadata"]) == {"why": "cheap, \"quoted\""}
    assert float(rows[2]["cost_usd"]) == 0.5 and rows[2]["decision_id"] == "d1"
    path = tmp_path / "ledger.csv"
    assert ledger.to_csv(path) is None
    assert path.read_text() == text.replace("\r\n", "\n") or path.read_text() == text
    buffer = io.StringIO()
    ledger.to_csv(buffer)
    assert buffer.getvalue() == text


def test_entry_dict_round_trip_and_validation():
    entry = _sample_ledger().entries[1]
    assert LedgerEntry.from_dict(entry.to_dict()) == entry
    with pytest.raises(InvalidInputError):
        LedgerEntry.from_dict({**entry.to_dict(), "colour": "red"})
    with pytest.raises(InvalidInputError):
        LedgerEntry.from_dict({**entry.to_dict(), "cost_usd": -1})
