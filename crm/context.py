"""Per-request context: the correlation id, and the ASGI middleware that sets and echoes it.

A client's ``X-Correlation-ID`` is kept when it is at most 128 characters of
``[A-Za-z0-9._:-]``; otherwise the trace id of a W3C ``traceparent`` is used, else a new UUID.
The id is echoed on every response (errors included), put into the access log line and into
every outbox event (through the ``crm.correlation_id`` transaction setting).

The access log (logger ``crm.access``, INFO) is one JSON object per request: ``ts``, ``event``
(``http_request``), ``correlation_id``, ``method``, ``path`` (see :func:`loggable_path`),
``operation_id``, ``status``, ``duration_ms`` and ``sub`` (the caller's subject, a pseudonymous id).
No query string, no bodies, no client address: nothing of a customer's or contact's personal
data. The same middleware feeds the request metrics (:mod:`crm.metrics`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crm import logs, metrics

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
# What inner layers learn about the request (operationId, sub) for the access-log line.
request_info: ContextVar[dict[str, str | None]] = ContextVar("request_info")

_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
access_log = logging.getLogger("crm.access")


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PLAIN_ROUTES = ("/api/v1/openapi.json", "/api/v1/docs")


def loggable_path(scope: Scope, operation_id: str | None) -> str | None:
    """The request path as the access log shows it, free of personal data a client may have put
    into it: path parameters that are not UUIDs (``/customers/{customer_id}`` called with a name)
    are shown as their template, and a path no operation or plain route matched is left out
    (``None``). The query string is never logged. ``scope`` is the routed scope (its
    ``path_params`` are set by Connexion's routing)."""
    path = scope.get("path") or ""
    if operation_id is None:
        return path if path.startswith(_PLAIN_ROUTES) else None
    hidden = {str(v): f"{{{k}}}" for k, v in (scope.get("path_params") or {}).items() if not _UUID.match(str(v))}
    if not hidden:
        return path
    return "/".join(hidden.get(segment, segment) for segment in path.split("/"))


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
        info: dict[str, str | None] = {"operation_id": None, "sub": None, "path": None}
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
            seconds = time.perf_counter() - started
            metrics.observe_request(info["operation_id"], status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    json.dumps(
                        {
                            "ts": logs.now(),
                            "event": "http_request",
                            "correlation_id": cid,
                            "method": scope.get("method"),
                            "path": info["path"] or loggable_path(scope, None),
                            "operation_id": info["operation_id"],
                            "status": status,
                            "duration_ms": round(seconds * 1000, 2),
                            "sub": info["sub"],
                        }
                    )
                )
            request_info.reset(info_token)
            correlation_id.reset(token)


class OperationMiddleware:
    """Placed after routing: notes the operationId (as the spec names it, without the resolver's
    ``handlers.`` prefix) and the loggable path for the access log and the metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = request_info.get(None)
        if info is not None:
            operation = scope.get("extensions", {}).get("connexion_routing", {}).get("operation_id")
            if operation is not None:
                operation = operation.removeprefix("handlers.")
                info["path"] = loggable_path(scope, operation)
            info["operation_id"] = operation
        await self.app(scope, receive, send)
