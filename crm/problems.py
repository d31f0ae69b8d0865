"""Every error leaves the API as one ``application/problem+json`` document (RFC 9457).

One handler, registered for every exception class, maps:

* :class:`crm.errors.DomainError` — raised by handlers and the database layer;
* Connexion's problems (validation 400, 401, 403, 404/405 routing, 415) and Starlette's;
* PostgreSQL errors, once, here: unique violation → 409, foreign-key violation → 422 (409 on
  delete), check/not-null/data errors → 422, row-level-security refusal → 403,
  lock/serialization failure → 409 with retry advice, connection failure → 503 + Retry-After;
* anything else → 500 without internals (the correlation id finds it in the log, which names the
  exception's class and stack but not its message: see :mod:`crm.logs`).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import psycopg
from connexion.exceptions import OAuthScopeProblem, ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from psycopg import errors as pg
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException

from crm.context import correlation_id
from crm.errors import DomainError
from crm.logs import describe

log = logging.getLogger("crm.problems")

PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    428: "Precondition required",
    500: "Internal error",
    503: "Service unavailable",
}
_TYPES = {
    400: "/problems/validation-error",
    401: "/problems/unauthorized",
    403: "/problems/forbidden",
    404: "/problems/not-found",
    405: "/problems/method-not-allowed",
    413: "/problems/payload-too-large",
    415: "/problems/unsupported-media-type",
}
# Business keys behind unique constraints, for a 409 that names what clashed.
_UNIQUE_KEYS = {
    "customer_number_unique": "customer_number",
    "chain_name_unique_idx": "name",
    "product_sku_unique": "sku",
    "sample_item_product_unique": "product_id",
    "field_definition_pkey": "key",
}
# Foreign keys by constraint name → the API field that refers. PostgreSQL leaves the key out of
# the error detail when the referenced table has row-level security, so the name is the source.
_FOREIGN_KEYS = {
    "customer_chain_id_fkey": "chain_id",
    "contact_customer_id_fkey": "customer_id",
    "sample_request_customer_id_fkey": "customer_id",
    "sample_request_chain_id_fkey": "chain_id",
    "sample_item_request_id_fkey": "sample_request_id",
    "sample_item_product_id_fkey": "product_id",
    "sample_request_history_request_id_fkey": "sample_request_id",
}
_KEY_DETAIL = re.compile(r"Key \((?P<cols>[^)]*)\)=\((?P<vals>.*)\)")


def _from_database(exc: psycopg.Error) -> tuple[int, str, str, dict[str, Any], dict[str, str]]:
    diag = exc.diag
    constraint = diag.constraint_name or ""
    if isinstance(exc, pg.UniqueViolation):
        field = _UNIQUE_KEYS.get(constraint, constraint)
        return 409, "/problems/duplicate", f"A resource with this {field} already exists.", {"field": field}, {}
    if isinstance(exc, pg.ForeignKeyViolation):
        match = _KEY_DETAIL.search(diag.message_detail or "")
        field = _FOREIGN_KEYS.get(constraint) or (match.group("cols") if match else constraint)
        if "still referenced" in (diag.message_detail or ""):
            return 409, "/problems/still-referenced", "Other resources still refer to this one.", {}, {}
        return 422, "/problems/reference-not-found", f"The referenced {field} does not exist.", {
            "errors": [{"field": field, "message": "does not exist"}]
        }, {}
    if isinstance(exc, pg.InsufficientPrivilege):
        return 403, "/problems/out-of-scope", "The change would move a row outside your scope.", {}, {}
    if isinstance(exc, (pg.CheckViolation, pg.NotNullViolation, pg.DataError, pg.StringDataRightTruncation)):
        return 422, "/problems/constraint-violation", "A value breaks a rule of the data model.", {
            "constraint": constraint or None
        }, {}
    if isinstance(exc, (pg.LockNotAvailable, pg.SerializationFailure, pg.DeadlockDetected)):
        return 409, "/problems/concurrent-update", "A concurrent change got in the way; retry.", {}, {
            "Retry-After": "1"
        }
    if isinstance(exc, psycopg.OperationalError):
        return 503, "/problems/service-unavailable", "The database is not reachable right now.", {}, {
            "Retry-After": "5"
        }
    if isinstance(exc, psycopg.DataError):
        return 422, "/problems/constraint-violation", "A value cannot be stored.", {}, {}
    log.error("unmapped database error (correlation id %s): %s", correlation_id.get(), describe(exc))
    return 500, "/problems/internal-error", "An unexpected error occurred.", {}, {}


def problem_response(
    request: ConnexionRequest | None,
    status: int,
    type_: str,
    title: str,
    detail: str | None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> ConnexionResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if request is not None:
        body["instance"] = request.url.path
    body["correlation_id"] = correlation_id.get()
    body.update({k: v for k, v in (extra or {}).items() if v is not None})
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
    return ConnexionResponse(
        status_code=status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(body),
        headers=headers,
    )


async def handle(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """The one error handler (registered for ``Exception``)."""
    if isinstance(exc, DomainError):
        return problem_response(request, exc.status, exc.type, exc.title, exc.detail, exc.extra, exc.headers)
    if isinstance(exc, ProblemException):
        status = exc.status
        extra = dict(exc.ext or {})
        headers = dict(exc.headers or {})
        title = _TITLES.get(status, exc.title or "Error")
        type_ = exc.type if exc.type and exc.type != "about:blank" else _TYPES.get(status, "about:blank")
        if status >= 500:
            log.error("problem %s: %s", status, exc.detail)
        return problem_response(request, status, type_, title, str(exc.detail or title), extra, headers)
    if isinstance(exc, HTTPException):
        status = exc.status_code
        headers, extra = dict(exc.headers or {}), {}
        if isinstance(exc, OAuthScopeProblem):  # RFC 6750 §3.1
            headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope"'
            extra["required_scopes"] = list(exc.required_scopes)
        return problem_response(
            request, status, _TYPES.get(status, "about:blank"), _TITLES.get(status, "Error"),
            str(exc.detail), extra, headers,
        )
    if isinstance(exc, psycopg.Error):
        status, type_, detail, extra, headers = _from_database(exc)
        return problem_response(request, status, type_, _TITLES.get(status, "Error"), detail, extra, headers)
    if isinstance(exc, PoolTimeout):
        return problem_response(
            request, 503, "/problems/service-unavailable", _TITLES[503],
            "No database connection became free in time.", None, {"Retry-After": "2"},
        )
    log.error("unhandled error (correlation id %s): %s", correlation_id.get(), describe(exc))
    return problem_response(
        request, 500, "/problems/internal-error", _TITLES[500], "An unexpected error occurred.", None, None
    )
