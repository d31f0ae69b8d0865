"""Idempotent creates (``Idempotency-Key``), as a decorator for ``POST`` handlers.

The first successful response to a key is stored with a digest of the request (path + body),
per caller (``sub``) and operation. A retry with the same key and the same request replays the
stored response (``Idempotent-Replayed: true``); the same key with another request is refused
with 422. Keys are kept for at least 24 hours (``crm retention`` removes older ones).

Only successful responses are stored: a failed attempt may be retried with the same key. Two
concurrent first attempts with one key both run; the business keys (e.g. ``customer_number``)
keep that from creating duplicates.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from connexion import request
from connexion.lifecycle import ConnexionResponse

from crm.errors import Unprocessable
from db.pool import queries, transaction
from handlers._common import principal


class IdempotencyKeyReused(Unprocessable):
    type = "/problems/idempotency-key-reused"


Handler = Callable[..., Awaitable[tuple[Any, int, dict[str, str]]]]
REPLAYED_HEADERS = ("ETag", "Location")


def idempotent(operation: str) -> Callable[[Handler], Handler]:
    def decorator(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            key = request.headers.get("idempotency-key")
            if not key:
                return await handler(*args, **kwargs)
            who = principal()
            digest = hashlib.sha256(
                json.dumps([request.url.path, kwargs.get("body")], sort_keys=True, default=str).encode()
            ).hexdigest()
            async with transaction(who) as conn:
                stored = await queries.get_idempotency_key(conn, principal=who.sub, operation=operation, key=key)
            if stored is not None:
                if stored["request_hash"] != digest:
                    raise IdempotencyKeyReused("This Idempotency-Key was used with another request; use a new key.")
                headers = dict(stored["headers"])
                headers["Idempotent-Replayed"] = "true"
                return ConnexionResponse(
                    status_code=stored["status"],
                    mimetype="application/json",
                    content_type="application/json",
                    body=json.dumps(stored["body"]),
                    headers=headers,
                )
            body, status, headers = await handler(*args, **kwargs)
            async with transaction(who) as conn:
                await queries.put_idempotency_key(
                    conn, principal=who.sub, operation=operation, key=key, request_hash=digest,
                    status=status, body=json.dumps(body),
                    headers=json.dumps({h: headers[h] for h in REPLAYED_HEADERS if h in headers}),
                )
            return body, status, headers

        return wrapper

    return decorator
