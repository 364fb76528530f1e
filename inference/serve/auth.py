"""The optional API key: ``Authorization: Bearer <key>``, compared in constant time; and no key in any log.

A key belongs in the Authorization header. One sent as ``?api_key=...`` is refused (401, no header), but the
access log would still print the request line with it: :func:`redact_access_log` replaces every query value in
the access log with ``***`` (the rerank API takes no query parameters, so nothing of use is lost).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "***"


def authorized(header: str | None, key: str | None) -> bool:
    """True when no key is configured, or ``header`` is ``Bearer <key>`` (scheme case-insensitive)."""
    if key is None:
        return True
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), key.encode("utf-8"))


def redact_query(path: str) -> str:
    """``path`` with every query value replaced by ``***`` (names kept; a bare ``?value`` is replaced whole)."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq else (REDACTED if part else part))
    return f"{base}?{'&'.join(parts)}"


class RedactQueryValues(logging.Filter):
    """An access-log filter: uvicorn formats ``(client, method, path with query, version, status)``; the path's
    query values are redacted before any handler sees the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact_query(a) if isinstance(a, str) and "?" in a else a for a in args)
        return True


def redact_access_log() -> None:
    """Install :class:`RedactQueryValues` on uvicorn's access logger (idempotent; call after uvicorn configured
    logging, which keeps a logger's filters)."""
    log = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactQueryValues) for f in log.filters):
        log.addFilter(RedactQueryValues())
