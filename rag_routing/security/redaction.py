"""Keep secrets out of responses and logs: credentials in URLs, bearer tokens, API keys, secret env values.

:func:`redact` rewrites any text that may reach a client or a log line: the user and password of a URL
(``redis://:hunter2@db:6379/0`` -> ``redis://***@db:6379/0``), secret query parameters (``?password=...``,
``api_key=``, ``token=``), ``Authorization: Bearer ...`` values, ``sk-...`` style keys, and the value of every
registered secret (:func:`register_secret`, e.g. an upstream API key read from the environment) and of every
environment variable whose name says it is secret (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``...).
:func:`redact_url` shows a store URL without its credentials; :class:`RedactingFilter` is a ``logging`` filter
that redacts a record's message, arguments and traceback before any handler formats it.

Example:
    >>> redact("Redis at redis://:hunter2@10.0.0.5:6379/0 is unreachable")
    'Redis at redis://***@10.0.0.5:6379/0 is unreachable'
    >>> redact_url("rediss://app:s3cret@cache.internal:6380/2?ssl_cert_reqs=none&password=x")
    'rediss://***@cache.internal:6380/2?ssl_cert_reqs=none&password=***'
    >>> register_secret("upstream-key-0123456789")
    >>> redact("401 from upstream: bad key upstream-key-0123456789")
    '401 from upstream: bad key ***'
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"
#: Shortest value treated as a secret (shorter ones would mask ordinary words).
MIN_SECRET_CHARS = 6

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"<>]*)@")
_SECRET_PARAM = re.compile(
    r"(?P<name>\b(?:password|passwd|pwd|pass|secret|token|api[_-]?key|apikey|access[_-]?token|auth|key|"
    r"signature|sig|credential|credentials)=)(?P<value>[^&\s'\"#]+)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<name>\b(?:bearer|basic|token)\s+)(?P<value>[A-Za-z0-9._~+/=\-]{6,})", re.IGNORECASE)
_API_KEY = re.compile(r"\b(?:sk|pk|rk|xox[abp]|ghp|gho|hf|AKIA)[-_][A-Za-z0-9_\-]{8,}")
# Whole name segments: OPENAI_API_KEY, REDIS_PASSWORD, HF_TOKEN; not PWD, SSH_AUTH_SOCK or TOKENIZERS_PARALLELISM.
_SECRET_ENV_NAME = re.compile(r"(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|CREDENTIALS?)(?:$|_)",
                              re.IGNORECASE)

_registered: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever :func:`redact` sees it from now on (no-op for ``None`` or very short values)."""
    if isinstance(value, str) and len(value) >= MIN_SECRET_CHARS:
        with _lock:
            _registered.add(value)


def _secret_values() -> list[str]:
    with _lock:
        values = set(_registered)
    values.update(v for k, v in os.environ.items() if _SECRET_ENV_NAME.search(k) and len(v) >= MIN_SECRET_CHARS)
    return sorted(values, key=len, reverse=True)  # longest first: a secret containing another is masked whole


def redact(text: object) -> str:
    """``text`` (any object, as ``str``) with credentials and secret values replaced by ``***``."""
    out = str(text)
    for value in _secret_values():
        if value in out:
            out = out.replace(value, MASK)
    out = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@" if m["userinfo"] else m[0], out)
    out = _SECRET_PARAM.sub(lambda m: f"{m['name']}{MASK}", out)
    out = _BEARER.sub(lambda m: f"{m['name']}{MASK}", out)
    return _API_KEY.sub(MASK, out)


def redact_url(url: str) -> str:
    """A URL fit to print: no user, password or secret query parameter."""
    return redact(url)


def _redacted_arg(arg: Any) -> Any:
    """A log argument with its secrets masked: numbers and ``None`` as they are (``%d`` still formats them),
    strings redacted, any other object replaced by its redacted text only where its ``str`` or ``repr`` shows a
    secret."""
    if arg is None or isinstance(arg, (bool, int, float)):
        return arg
    text = str(arg)
    clean = redact(text)
    if isinstance(arg, str) or clean != text or redact(repr(arg)) != repr(arg):
        return clean
    return arg


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the message, its arguments and the formatted traceback of each record.

    The arguments stay arguments (each one redacted, the tuple or mapping kept), so formatters that read
    ``record.args`` themselves, as uvicorn's access log does, still work; only where the redacted pieces would
    still format into a secret (or no longer format) is the record flattened into its redacted message.

    Attach it to a logger (records logged there) or to a handler (every record the handler writes):
    ``logging.getLogger().handlers[0].addFilter(RedactingFilter())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        args = record.args
        kept: Any = None
        if isinstance(record.msg, str) and isinstance(args, tuple) and args:
            kept = tuple(_redacted_arg(a) for a in args)
        elif isinstance(record.msg, str) and isinstance(args, Mapping) and args:
            kept = {k: _redacted_arg(v) for k, v in args.items()}
        msg = redact(record.msg) if kept is not None else None
        try:
            formatted = msg % kept if msg is not None else None
        except Exception:  # redacting the template broke a placeholder
            formatted = None
        if formatted is not None and redact(formatted) == formatted:
            record.msg, record.args = msg, kept
        else:
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction(*loggers: logging.Logger | str) -> RedactingFilter:
    """Add one :class:`RedactingFilter` to the named loggers and to every handler of the root logger."""
    redacting = RedactingFilter()
    for item in loggers:
        logger = logging.getLogger(item) if isinstance(item, str) else item
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(redacting)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
    return redacting


__all__ = ["redact", "redact_url", "register_secret", "RedactingFilter", "install_log_redaction", "MASK"]
