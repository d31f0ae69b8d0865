"""Opaque, tamper-evident cursors bound to the filters they were made with.

A cursor is ``base64url(json({"k": sort key of the last row, "f": filter digest})) . hmac``.
The HMAC (key derived from the server secret) makes a changed cursor fail; the filter digest
makes a cursor fail when used with other filters. Both answer 400 (``/problems/invalid-cursor``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from crm.errors import InvalidCursor
from crm.settings import get_settings


def _key() -> bytes:
    return hashlib.sha256(b"cursor:" + get_settings().jwt_secret.encode()).digest()


def _digest(operation: str, filters: dict[str, Any]) -> str:
    canonical = json.dumps([operation, filters], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _sign(payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(_key(), payload, hashlib.sha256).digest()[:16]).decode().rstrip("=")


def encode_cursor(operation: str, filters: dict[str, Any], sort_key: list[Any]) -> str:
    payload = base64.urlsafe_b64encode(
        json.dumps({"k": sort_key, "f": _digest(operation, filters)}, default=str).encode()
    ).decode().rstrip("=")
    return f"{payload}.{_sign(payload.encode())}"


def decode_cursor(operation: str, filters: dict[str, Any], cursor: str | None) -> list[Any] | None:
    """The sort key to continue after, or None for the first page."""
    if cursor is None:
        return None
    payload, _, signature = cursor.partition(".")
    if not payload or not hmac.compare_digest(signature.encode(), _sign(payload.encode()).encode()):
        raise InvalidCursor("The cursor is not one this server issued.", errors=[
            {"field": "cursor", "message": "invalid or altered cursor"}
        ])
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if data.get("f") != _digest(operation, filters):
        raise InvalidCursor("The cursor was made for other filters; start again without it.", errors=[
            {"field": "cursor", "message": "made for other filters"}
        ])
    return list(data["k"])


def page(
    operation: str, filters: dict[str, Any], rows: list[dict[str, Any]], limit: int, sort_columns: tuple[str, ...]
) -> dict[str, Any]:
    """``{"items", "next_cursor"}`` from ``limit + 1`` fetched rows."""
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more and rows:
        next_cursor = encode_cursor(operation, filters, [rows[-1][c] for c in sort_columns])
    return {"items": [r["body"] for r in rows], "next_cursor": next_cursor}
