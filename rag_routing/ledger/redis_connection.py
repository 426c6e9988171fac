"""One Redis connection policy for the Redis-backed stores: lazy import, bounded retries, typed errors.

Every store command goes through :meth:`RedisConnection.call`. A connection error, a timeout or a server
that is still loading its append-only file after a restart is retried with exponential backoff (``0.05 s``
doubling up to ``1 s``) for at most ``retry_seconds``; after that
:class:`StoreUnavailableError` is raised, naming the URL and what to check. The stores make every write
idempotent (an operation id checked inside the same Lua script that applies the write), so a retry after a
reply was lost in a crash never applies a write twice.

The ``redis`` client library is imported on first use (``pip install 'rag-routing[redis]'``). ``url`` (used in
every message, log line and ``repr``) is the URL without its user, password or secret query parameters.

Example:
    >>> conn = RedisConnection("redis://127.0.0.1:1/0", retry_seconds=0.2)   # nothing listens on port 1
    >>> try:
    ...     conn.call(lambda client: client.ping())
    ... except StoreUnavailableError as exc:
    ...     print(str(exc).split(";")[0])
    Redis at redis://127.0.0.1:1/0 is unreachable after 0.2 s of retries
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from rag_routing.errors import CorruptStateError, InvalidInputError, RagRoutingError, require

T = TypeVar("T")


class StoreUnavailableError(RagRoutingError, ConnectionError):
    """A shared store (Redis) stayed unreachable for the whole retry window; nothing was applied twice."""


def _redis() -> Any:
    return require("redis", "redis")


_SECRET_QUERY = re.compile(r"(?i)\b(password|passwd|pwd|pass|user|username|token|secret|auth)=[^&#]*")


def display_url(url: str) -> str:
    """``url`` fit for messages and logs: no user, password or secret query parameter.

    >>> display_url("redis://app:hunter2@cache:6379/0?password=x&db=1")
    'redis://***@cache:6379/0?password=***&db=1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=***", parts.query)
    shown = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    if not netloc and url.startswith(f"{parts.scheme}://"):  # unix:///path keeps its three slashes
        shown = f"{parts.scheme}://{shown[len(parts.scheme) + 1:]}"
    return shown


class RedisConnection:
    """A Redis client plus the retry policy of the stores.

    Args:
        url_or_client: a ``redis://`` / ``rediss://`` / ``unix://`` URL, or a ready ``redis.Redis`` client
            (used as is; its own retry settings then also apply).
        retry_seconds: how long to keep retrying a command while Redis is down or restarting.
        socket_timeout: seconds before a command on a silent connection counts as failed.
    """

    def __init__(self, url_or_client: Any = "redis://127.0.0.1:6379/0", *, retry_seconds: float = 10.0,
                 socket_timeout: float = 5.0):
        if not isinstance(retry_seconds, (int, float)) or isinstance(retry_seconds, bool) or retry_seconds < 0:
            raise InvalidInputError(f"retry_seconds must be a number >= 0, got {retry_seconds!r}")
        redis = _redis()
        self.retry_seconds = float(retry_seconds)
        if isinstance(url_or_client, str):
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self.url = display_url(url_or_client)
            try:
                # The client's own retries are off: this class owns the policy (bounded, typed error).
                self.client = redis.Redis.from_url(
                    url_or_client, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
                    retry=Retry(NoBackoff(), 0), retry_on_timeout=False, decode_responses=False,
                    health_check_interval=30)
            except ValueError as exc:
                raise InvalidInputError(f"not a Redis URL: {self.url!r} ({type(exc).__name__})") from exc
        elif hasattr(url_or_client, "evalsha") and hasattr(url_or_client, "register_script"):
            self.client = url_or_client
            kwargs = getattr(getattr(url_or_client, "connection_pool", None), "connection_kwargs", {})
            self.url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        else:
            raise InvalidInputError(f"expected a Redis URL or a redis.Redis client, got {type(url_or_client).__name__}")
        errors = redis.exceptions
        # ReadOnlyError: a replica answering during a failover; retried like a connection error.
        self._transient = (errors.ConnectionError, errors.TimeoutError, errors.BusyLoadingError,
                           errors.TryAgainError, errors.ReadOnlyError, ConnectionError, OSError)

    def script(self, source: str) -> Any:
        """A registered Lua script (redis-py reloads it when a restarted server forgot it)."""
        return self.client.register_script(source)

    def call(self, command: Callable[[Any], T], *, retry: bool = True) -> T:
        """Run ``command(client)``, retrying transient failures for ``retry_seconds`` (once if not ``retry``)."""
        redis = _redis()
        window = self.retry_seconds if retry else 0.0
        deadline = time.monotonic() + window
        delay = 0.05
        while True:
            try:
                return command(self.client)
            except self._transient as exc:
                last: BaseException = exc
            except redis.exceptions.ResponseError as exc:
                if not _is_loading(exc):  # some versions report LOADING as a plain ResponseError
                    raise CorruptStateError(f"Redis at {self.url} rejected a store command: {exc}") from exc
                last = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StoreUnavailableError(
                    f"Redis at {self.url} is unreachable after {window:g} s of retries; "
                    f"check that redis-server runs and the URL is right, or raise retry_seconds "
                    f"(last error: {type(last).__name__}: {last})") from last
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)

    def ping(self) -> None:
        """One quick round trip (no retries): :class:`StoreUnavailableError` if Redis does not answer."""
        self.call(lambda c: c.ping(), retry=False)

    def persistence(self, *, retry: bool = True) -> dict[str, Any]:
        """What survives a Redis restart: ``{"aof": bool, "appendfsync": str, "rdb": str}`` (``{}`` if the
        server hides its configuration, as managed services may)."""
        redis = _redis()
        try:
            config = self.call(lambda c: c.config_get("append*"), retry=retry)
            save = self.call(lambda c: c.config_get("save"), retry=retry)
        except (redis.exceptions.ResponseError, CorruptStateError):
            return {}
        decoded = {_text(k): _text(v) for k, v in {**config, **save}.items()}
        return {"aof": decoded.get("appendonly") == "yes", "appendfsync": decoded.get("appendfsync", ""),
                "rdb": decoded.get("save", "")}

    def close(self) -> None:
        self.client.close()


def _is_loading(exc: BaseException) -> bool:
    return str(exc).startswith("LOADING")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["RedisConnection", "StoreUnavailableError", "display_url"]
