"""Per-request context: the correlation id, and the ASGI middleware that sets and echoes it.

A client's ``X-Correlation-ID`` is kept when it is at most 128 characters of
``[A-Za-z0-9._:-]``; otherwise the trace id of a W3C ``traceparent`` is used, else a new UUID.
The id is echoed on every response (errors included), put into the access log line and into
every outbox event (through the ``crm.correlation_id`` transaction setting).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
# What inner layers learn about the request (operationId, sub) for the access-log line.
request_info: ContextVar[dict[str, str | None]] = ContextVar("request_info")

_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
access_log = logging.getLogger("crm.access")


def pick_correlation_id(headers: dict[bytes, bytes]) -> str:
    given = headers.get(b"x-correlation-id", b"").decode("latin-1").strip()
    if _VALID.match(given):
        return given
    match = _TRACEPARENT.match(headers.get(b"traceparent", b"").decode("latin-1").strip().lower())
    if match and match.group("trace") != "0" * 32:
        return match.group("trace")
    return str(uuid.uuid4())


_ECHOED = frozenset({b"x-correlation-id"})
_NOT_MODIFIED_DROPPED = _ECHOED | {b"content-type", b"content-length"}


class CorrelationMiddleware:
    """Outermost middleware: correlation id in, header out, one JSON access-log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = pick_correlation_id(dict(scope.get("headers") or []))
        token = correlation_id.set(cid)
        info: dict[str, str | None] = {"operation_id": None, "sub": None}
        info_token = request_info.set(info)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A 304 has no body, so it names no content type or length (RFC 9110 §15.4.5).
                dropped = _NOT_MODIFIED_DROPPED if status == 304 else _ECHOED
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in dropped]
                headers.append((b"x-correlation-id", cid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    json.dumps(
                        {
                            "correlation_id": cid,
                            "method": scope.get("method"),
                            "path": scope.get("path"),
                            "operation_id": info["operation_id"],
                            "status": status,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                            "sub": info["sub"],
                        }
                    )
                )
            request_info.reset(info_token)
            correlation_id.reset(token)


class OperationMiddleware:
    """Placed after routing: notes the operationId for the access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = request_info.get(None)
        if info is not None:
            info["operation_id"] = scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")
        await self.app(scope, receive, send)
