"""Energy and emissions: EcoLogits' formula on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from rag_routing.errors import InvalidInputError
from rag_routing.ledger import EnergyModel, estimate_energy


def test_hand_computed_7b_call():
    # 100 output tokens of a dense 7B model, EcoLogits defaults (4-bit weights -> 4.2 GB -> 1 GPU):
    #   GPU:    100 * (8.91e-8 * 7 + 1.43e-6)                  = 2.0537e-4 kWh
    #   time:   100 * (8.02e-4 * 7 + 2.23e-2)                  = 2.7914 s
    #   server: 2.7914 / 3600 * 1 kW * 1/8                     = 9.692361e-5 kWh
    #   total:  1.2 * (9.692361e-5 + 2.0537e-4)                = 3.627523e-4 kWh
    #   CO2:    3.627523e-4 kWh * 590.4 g/kWh                  = 0.2141690 g
    e = estimate_energy(output_tokens=100, params_billion=7)
    assert e.gpus == 1
    assert e.generation_seconds == pytest.approx(2.7914)
    assert e.kwh == pytest.approx(3.627523e-4, rel=1e-6)
    assert e.gco2e == pytest.approx(0.2141690, rel=1e-6)


def test_large_model_needs_several_gpus():
    # 405B at 4 bits: 1.2 * 405 * 4 / 8 = 243 GB -> ceil(243 / 80) = 4 GPUs
    e = estimate_energy(output_tokens=10, params_billion=405)
    gpu = 10 * (8.91e-8 * 405 + 1.43e-6)
    seconds = 10 * (8.02e-4 * 405 + 2.23e-2)
    assert e.gpus == 4
    assert e.kwh == pytest.approx(1.2 * (seconds / 3600 * 4 / 8 + 4 * gpu))


def test_mixture_of_experts_uses_active_for_energy_and_total_for_gpus():
    moe = estimate_energy(output_tokens=100, params_billion=12.9, total_params_billion=46.7)
    dense = estimate_energy(output_tokens=100, params_billion=12.9)
    assert moe.gpus == 1 and moe.kwh == pytest.approx(dense.kwh)
    big = EnergyModel(quantization_bits=16).estimate(100, 12.9, total_params_billion=141)
    assert big.gpus == math.ceil(1.2 * 141 * 2 / 80)


def test_model_size_from_the_price_table():
    assert estimate_energy(output_tokens=100, model="mixtral-8x7b-chat").kwh == pytest.approx(
        estimate_energy(output_tokens=100, params_billion=12.9, total_params_billion=46.7).kwh
    )


def test_unknown_size_is_unknown_not_an_error():
    e = estimate_energy(output_tokens=100, model="gpt-4o")
    assert e.known is False and e.kwh is None and e.gco2e is None
    assert estimate_energy(output_tokens=100, model="not-a-model").known is False


def test_grid_intensity_and_pue_are_settings():
    base = EnergyModel().estimate(100, 7)
    clean = EnergyModel(grid_gco2_per_kwh=81.3).estimate(100, 7)
    assert clean.kwh == base.kwh and clean.gco2e == pytest.approx(base.kwh * 81.3)
    no_overhead = EnergyModel(pue=1.0).estimate(100, 7)
    assert no_overhead.kwh == pytest.approx(base.kwh / 1.2)


def test_measured_request_time_caps_the_modelled_time():
    capped = estimate_energy(output_tokens=100, params_billion=7, request_seconds=1.0)
    assert capped.generation_seconds == 1.0
    assert capped.kwh == pytest.approx(1.2 * (1.0 / 3600 / 8 + 2.0537e-4), rel=1e-6)


def test_input_tokens_count_only_when_weighted():
    assert estimate_energy(output_tokens=10, input_tokens=5000, params_billion=7).kwh == pytest.approx(
        estimate_energy(output_tokens=10, params_billion=7).kwh
    )
    weighted = EnergyModel(input_token_weight=0.1).estimate(10, 7, input_tokens=100)
    assert weighted.kwh == pytest.approx(estimate_energy(output_tokens=20, params_billion=7).kwh)


def test_zero_tokens_zero_energy():
    e = estimate_energy(output_tokens=0, params_billion=7)
    assert e.known and e.kwh == 0.0 and e.gco2e == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"output_tokens": -1, "params_billion": 7}, {"output_tokens": 1, "params_billion": 0},
     {"output_tokens": float("nan"), "params_billion": 7}, {"output_tokens": 1, "params_billion": -7}],
)
def test_invalid_inputs(kwargs):
    with pytest.raises(InvalidInputError):
        estimate_energy(**kwargs)


def test_invalid_settings():
    with pytest.raises(InvalidInputError):
        EnergyModel(pue=0.9)
    with pytest.raises(InvalidInputError):
        EnergyModel(grid_gco2_per_kwh=-1)
    with pytest.raises(InvalidInputError):
        EnergyModel(gpu_memory_gb=0)
