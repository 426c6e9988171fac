"""Named numeric arrays as ``.npz`` bytes and back, without pickle: the stored form of a bandit's state in
SQLite (:mod:`rag_routing.routers.bandits.store`) and Redis (:mod:`rag_routing.ledger.redis_bandit_store`).

Example:
    >>> import numpy as np
    >>> decode_arrays(encode_arrays({"counts": np.arange(3)}))["counts"].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

from rag_routing.errors import CorruptStateError, InvalidInputError

Arrays = dict[str, np.ndarray]


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``arrays`` as ``.npz`` bytes (numeric dtypes only; object arrays are refused)."""
    clean = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise InvalidInputError(f"bandit state array {name!r} has dtype object; only numeric arrays are stored")
        clean[name] = array
    buffer = io.BytesIO()
    np.savez(buffer, **clean)
    return buffer.getvalue()


def decode_arrays(data: bytes, where: str = "bandit store") -> Arrays:
    """Inverse of :func:`encode_arrays`; anything malformed raises :class:`CorruptStateError`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError,
            zlib.error) as exc:  # a damaged zip header can raise any of these
        raise CorruptStateError(f"{where}: stored bandit state is unreadable ({exc}); delete the key") from exc


__all__ = ["Arrays", "encode_arrays", "decode_arrays"]
