"""Domain exceptions raised by handlers and the database layer.

Each carries what its RFC 9457 problem needs; :mod:`crm.problems` renders them.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 500
    type = "/problems/internal-error"
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = {k: v for k, v in extra.items() if v is not None}
        self.headers: dict[str, str] = {}


class BadRequest(DomainError):
    status = 400
    type = "/problems/bad-request"
    title = "Bad request"


class InvalidCursor(BadRequest):
    type = "/problems/invalid-cursor"
    title = "Invalid cursor"


class Forbidden(DomainError):
    status = 403
    type = "/problems/forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    type = "/problems/not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    type = "/problems/conflict"
    title = "Conflict"


class PreconditionFailed(DomainError):
    status = 412
    type = "/problems/etag-mismatch"
    title = "Precondition failed"


class Unprocessable(DomainError):
    status = 422
    type = "/problems/unprocessable"
    title = "Unprocessable request"


class PreconditionRequired(DomainError):
    status = 428
    type = "/problems/if-match-required"
    title = "Precondition required"


class ServiceUnavailable(DomainError):
    status = 503
    type = "/problems/service-unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["Retry-After"] = str(retry_after)
