"""The optional API key: ``Authorization: Bearer <key>``, compared in constant time."""

from __future__ import annotations

import hmac


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
