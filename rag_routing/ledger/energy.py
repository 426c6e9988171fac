"""Energy and CO2 of one LLM call, following the EcoLogits methodology.

EcoLogits (GenAI Impact, https://ecologits.ai, methodology "Environmental Impacts of LLM Inference" v1.0,
``docs/methodology/llm_inference.md`` and ``ecologits/impacts/llm.py`` in github.com/genai-impact/ecologits)
fits, on Hugging Face's LLM-Perf leaderboard (A100 80GB), the GPU energy per *output* token as a linear
function of the number of active parameters ``P`` (billions):

    E_gpu / T_out = alpha * P + beta            alpha = 8.91e-5 Wh/token/B,  beta = 1.43e-3 Wh/token

and the generation time per output token likewise (``A = 8.02e-4 s/token/B``, ``B = 2.23e-2 s/token``,
capped by the measured request time). The model is spread over ``n_gpu = ceil(1.2 * P_total * bits / 8 / 80)``
GPUs (4-bit weights by default, as EcoLogits assumes); the rest of the 8-GPU server draws 1 kW, shared pro rata.
The data centre multiplies everything by its PUE (1.2):

    E_request = PUE * (n_gpu * T_out * (alpha * P + beta)  +  dt * 1 kW * n_gpu / 8)        [kWh]
    emissions = E_request * grid_intensity                                                 [gCO2e]

The default grid intensity is EcoLogits' world average, 590.4 gCO2e/kWh (ADEME Base Empreinte); pass your
region's (France ~81, EU ~509, USA ~680). Only usage-phase (electricity) emissions are counted, not the
hardware's embodied emissions.

Input tokens: EcoLogits counts output tokens only (prefill is batched and far cheaper per token than decode).
``EnergyModel(input_token_weight=w)`` adds ``w`` output-token-equivalents per input token, for long RAG
prompts; the default ``w = 0`` reproduces EcoLogits exactly. The fit covers models of 7B parameters and more;
smaller models are over-estimated (the ``beta`` term dominates). An unknown model size gives an estimate with
``kwh=None`` (unknown), never an error.

Example:
    >>> e = estimate_energy(output_tokens=100, params_billion=7)
    >>> round(e.kwh * 1e3, 4), round(e.gco2e, 4)        # Wh, g
    (0.3628, 0.2142)
    >>> estimate_energy(output_tokens=100).known
    False
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from rag_routing.errors import InvalidInputError

WORLD_GRID_GCO2_PER_KWH = 590.4  # EcoLogits' default electricity mix (world average, ADEME Base Empreinte)


@dataclass(frozen=True, slots=True)
class EnergyEstimate:
    """Energy (kWh) and emissions (gCO2e) of one call; ``None`` when the model size is unknown."""

    kwh: float | None
    gco2e: float | None
    gpus: int | None = None
    generation_seconds: float | None = None

    @property
    def known(self) -> bool:
        return self.kwh is not None


UNKNOWN_ENERGY = EnergyEstimate(kwh=None, gco2e=None)


@dataclass(frozen=True, slots=True)
class EnergyModel:
    """EcoLogits' inference energy model, with every constant a setting.

    Args:
        grid_gco2_per_kwh: carbon intensity of the electricity (gCO2e/kWh).
        pue: power usage effectiveness of the data centre (1.0 = no overhead; use ~1.5 for a typical
            enterprise room, 1.0 for a laptop).
        alpha_kwh, beta_kwh: GPU energy per output token = alpha * P_active(B) + beta, in kWh.
        latency_alpha_s, latency_beta_s: generation seconds per output token = A * P_active(B) + B.
        server_power_kw, server_gpus: power of the server without its GPUs, and its GPU count.
        gpu_memory_gb, quantization_bits: to size the number of GPUs that hold the model.
        input_token_weight: output-token-equivalents charged per input token (0 = EcoLogits).
    """

    grid_gco2_per_kwh: float = WORLD_GRID_GCO2_PER_KWH
    pue: float = 1.2
    alpha_kwh: float = 8.91e-8
    beta_kwh: float = 1.43e-6
    latency_alpha_s: float = 8.02e-4
    latency_beta_s: float = 2.23e-2
    server_power_kw: float = 1.0
    server_gpus: int = 8
    gpu_memory_gb: float = 80.0
    quantization_bits: int = 4
    input_token_weight: float = 0.0

    def __post_init__(self) -> None:
        for name in ("grid_gco2_per_kwh", "alpha_kwh", "beta_kwh", "latency_alpha_s", "latency_beta_s",
                     "server_power_kw", "input_token_weight"):
            _check(getattr(self, name), name, allow_zero=True)
        for name in ("gpu_memory_gb", "quantization_bits", "server_gpus"):
            _check(getattr(self, name), name, allow_zero=False)
        if not (math.isfinite(self.pue) and self.pue >= 1.0):
            raise InvalidInputError(f"pue must be a finite number >= 1.0, got {self.pue!r}")

    def gpus_needed(self, total_params_billion: float) -> int:
        """GPUs needed to hold the weights (1.2 x weights for activations and KV cache), at least one."""
        memory_gb = 1.2 * total_params_billion * self.quantization_bits / 8
        return max(1, math.ceil(memory_gb / self.gpu_memory_gb))

    def estimate(self, output_tokens: float, params_billion: float | None, *, input_tokens: float = 0,
                 total_params_billion: float | None = None,
                 request_seconds: float | None = None) -> EnergyEstimate:
        """Energy and emissions of one call (``kwh=None`` when ``params_billion`` is unknown)."""
        _check(output_tokens, "output_tokens", allow_zero=True)
        _check(input_tokens, "input_tokens", allow_zero=True)
        if params_billion is None:
            return UNKNOWN_ENERGY
        _check(params_billion, "params_billion", allow_zero=False)
        total = params_billion if total_params_billion is None else total_params_billion
        _check(total, "total_params_billion", allow_zero=False)
        tokens = output_tokens + self.input_token_weight * input_tokens
        gpus = self.gpus_needed(total)
        gpu_kwh = tokens * (self.alpha_kwh * params_billion + self.beta_kwh)
        seconds = tokens * (self.latency_alpha_s * params_billion + self.latency_beta_s)
        if request_seconds is not None and request_seconds > 0:
            seconds = min(seconds, request_seconds)  # the measured time bounds the modelled one
        server_kwh = seconds / 3600.0 * self.server_power_kw * gpus / self.server_gpus
        kwh = self.pue * (server_kwh + gpus * gpu_kwh)
        return EnergyEstimate(kwh=kwh, gco2e=kwh * self.grid_gco2_per_kwh, gpus=gpus, generation_seconds=seconds)


def _check(value: object, name: str, *, allow_zero: bool) -> None:
    if (type(value) is int or type(value) is float) and (0 < value < math.inf or (allow_zero and value == 0)):
        return  # the common case, without the numbers.Real ABC check (this runs on every metered call)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


DEFAULT_ENERGY_MODEL = EnergyModel()


def estimate_energy(output_tokens: float = 0, params_billion: float | None = None, *, input_tokens: float = 0,
                    model: str | None = None, total_params_billion: float | None = None,
                    request_seconds: float | None = None, energy_model: EnergyModel | None = None,
                    table: object | None = None) -> EnergyEstimate:
    """Energy of one call; the model size comes from ``params_billion`` or the price table entry of ``model``.

    Example:
        >>> estimate_energy(output_tokens=10, model="Meta-Llama-3-8B").known
        True
    """
    if params_billion is None and model is not None:
        from rag_routing.ledger.pricing import PriceTable, default_table

        found = (table if isinstance(table, PriceTable) else default_table()).find(model)
        if found is not None:
            params_billion = found.params_billion
            total_params_billion = total_params_billion or found.total_params_billion
    return (energy_model or DEFAULT_ENERGY_MODEL).estimate(
        output_tokens, params_billion, input_tokens=input_tokens,
        total_params_billion=total_params_billion, request_seconds=request_seconds,
    )


__all__ = ["EnergyModel", "EnergyEstimate", "estimate_energy", "WORLD_GRID_GCO2_PER_KWH", "UNKNOWN_ENERGY"]
