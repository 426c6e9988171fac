"""Named numeric arrays as ``.npz`` bytes and back, without pickle: the stored form of a bandit's state in
SQLite (:mod:`rag_routing.routers.bandits.store`) and Redis (:mod:`rag_routing.ledger.redis_bandit_store`), and
the limits every ``.npz`` read goes through (:func:`check_archive`, also used for saved routers).

Before a single array is read, an archive must be at most ``max_bytes`` (1 GiB by default) both on disk and
unpacked, no member may be compressed more than :data:`MAX_COMPRESSION_RATIO` times (a zip bomb), and every
array's header must declare no more bytes than its member holds (a header that declares a 7 TiB array would
otherwise be allocated before its data is read). A file that breaks a limit is a
:class:`~rag_routing.errors.CorruptStateError` that names the limit.

Example:
    >>> import numpy as np
    >>> decode_arrays(encode_arrays({"counts": np.arange(3)}))["counts"].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import io
import math
import threading
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np
from numpy.lib import format as npy_format

from rag_routing.errors import CorruptStateError, InvalidInputError

Arrays = dict[str, np.ndarray]

#: Largest archive read by default, on disk and unpacked (bytes); pass ``max_bytes=`` to read a bigger one.
MAX_ARCHIVE_BYTES = 2**30
#: Largest unpacked / packed size ratio of a compressed member (real arrays compress far less).
MAX_COMPRESSION_RATIO = 100
#: numpy parses each ``.npy`` header with ``ast.literal_eval``; CPython 3.11 before 3.11.8 raises ``SystemError:
#: AST constructor recursion depth mismatch`` when two threads do that at once (gh-106905), so every archive
#: read of this library holds this lock while it parses headers and arrays.
NPY_READ_LOCK = threading.Lock()
_READ_ERRORS = (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError,
                zlib.error, UnicodeDecodeError, SyntaxError, TypeError, OverflowError)


def _check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> None:
    packed = max(info.compress_size, 1)
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_COMPRESSION_RATIO * packed:
        raise CorruptStateError(f"{where}: member {info.filename!r} unpacks {info.file_size / packed:.0f}x "
                                f"(limit {MAX_COMPRESSION_RATIO}x); refusing a likely zip bomb")
    if not info.filename.endswith(".npy"):
        return
    with archive.open(info) as member:
        version = npy_format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = npy_format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = npy_format.read_array_header_2_0(member)
        else:
            raise CorruptStateError(f"{where}: member {info.filename!r} has unsupported .npy version {version}")
        header = member.tell()
    if dtype.hasobject:
        raise CorruptStateError(f"{where}: member {info.filename!r} holds Python objects; only numbers are read")
    declared = math.prod(int(n) for n in shape) * dtype.itemsize
    if header + declared > info.file_size:
        raise CorruptStateError(f"{where}: member {info.filename!r} declares a {shape} {dtype} array "
                                f"({declared:,} bytes) but holds {info.file_size - header:,} bytes")


def check_archive(data: bytes, where: str = "archive", max_bytes: int = MAX_ARCHIVE_BYTES) -> None:
    """Refuse ``.npz`` bytes that break the size, compression-ratio or header limits (module docstring),
    reading only the zip directory and each array header. Raises :class:`CorruptStateError`."""
    if len(data) > max_bytes:
        raise CorruptStateError(f"{where}: {len(data):,} bytes is over the limit of {max_bytes:,}; pass a larger "
                                "max_bytes if you trust this file")
    try:
        with NPY_READ_LOCK, zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = 0
            for info in archive.infolist():
                unpacked += info.file_size
                if unpacked > max_bytes:
                    raise CorruptStateError(f"{where}: unpacks to more than {max_bytes:,} bytes; pass a larger "
                                            "max_bytes if you trust this file")
                _check_member(archive, info, where)
    except CorruptStateError:
        raise
    except _READ_ERRORS as exc:
        raise CorruptStateError(f"{where}: not a readable .npz archive ({type(exc).__name__}: {exc})") from exc


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


def decode_arrays(data: bytes, where: str = "bandit store", max_bytes: int = MAX_ARCHIVE_BYTES) -> Arrays:
    """Inverse of :func:`encode_arrays`; anything malformed or over the limits raises :class:`CorruptStateError`."""
    check_archive(data, where, max_bytes)
    try:
        with NPY_READ_LOCK, np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError,
            zlib.error) as exc:  # a damaged zip header can raise any of these
        raise CorruptStateError(f"{where}: stored bandit state is unreadable ({exc}); delete the key") from exc


__all__ = ["Arrays", "encode_arrays", "decode_arrays", "check_archive", "MAX_ARCHIVE_BYTES",
           "MAX_COMPRESSION_RATIO", "NPY_READ_LOCK"]
