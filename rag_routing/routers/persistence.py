"""Saving and loading router state without pickle.

A saved router is one ``.npz`` file written atomically (temporary file + ``os.replace``) and read with
``allow_pickle=False``: a JSON document (class, config, featurizer) plus plain numeric arrays. Loading a file
never executes code from it, and reads nothing before the file has passed the size, compression-ratio and
array-header limits of :func:`rag_routing.array_blobs.check_archive` (1 GiB by default: ``max_bytes=``).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from rag_routing.array_blobs import MAX_ARCHIVE_BYTES, NPY_READ_LOCK, check_archive
from rag_routing.errors import CorruptStateError, InvalidInputError
from rag_routing.json_input import parse_json

FORMAT_VERSION = 1
_META_KEY = "__meta__"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot save {type(value).__name__} in a router config")


def write_state(path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write ``meta`` (JSON) and ``arrays`` to ``path`` (``.npz`` appended if missing)."""
    target = Path(path)
    if target.suffix != ".npz":
        target = target.with_name(target.name + ".npz")
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **meta}
    encoded = np.frombuffer(json.dumps(payload, default=_json_default).encode("utf-8"), dtype=np.uint8)
    for key, value in arrays.items():
        if key == _META_KEY:
            raise InvalidInputError(f"array name {_META_KEY!r} is reserved")
        if np.asarray(value).dtype == object:
            raise InvalidInputError(f"array {key!r} has dtype object; only numeric arrays can be saved")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **{_META_KEY: encoded}, **{k: np.asarray(v) for k, v in arrays.items()})
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def read_state(path: str | os.PathLike[str], max_bytes: int = MAX_ARCHIVE_BYTES
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`write_state`; anything malformed, or larger than ``max_bytes`` on disk or
    unpacked, raises :class:`CorruptStateError`."""
    source = Path(path)
    if not source.exists() and source.suffix != ".npz" and source.with_name(source.name + ".npz").exists():
        source = source.with_name(source.name + ".npz")
    if not source.exists():
        raise InvalidInputError(f"no saved router at {source}")
    try:
        size = source.stat().st_size
        if size > max_bytes:
            raise CorruptStateError(f"{source}: {size:,} bytes is over the limit of {max_bytes:,}; pass a larger "
                                    "max_bytes if you trust this file")
        data = source.read_bytes()
        check_archive(data, str(source), max_bytes)
        with NPY_READ_LOCK, np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        meta = parse_json(arrays.pop(_META_KEY).tobytes().decode("utf-8"), f"{source} (its description)",
                          error=CorruptStateError)
    except CorruptStateError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, EOFError, NotImplementedError,
            RuntimeError, zlib.error) as exc:
        raise CorruptStateError(f"{source} is not a readable saved router ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CorruptStateError(f"{source} has an unsupported format (expected version {FORMAT_VERSION})")
    return meta, arrays


__all__ = ["write_state", "read_state", "FORMAT_VERSION", "MAX_ARCHIVE_BYTES"]
