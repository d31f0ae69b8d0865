"""Conditional requests: ``If-Match`` on changes (428 when missing, 412 when stale), and
``If-None-Match`` on reads (304). Entity tags are strong and computed by the database
(``'"' || md5(id || ':' || version) || '"'``), so every representation carries its own."""

from __future__ import annotations

from connexion import request

from crm.errors import PreconditionFailed, PreconditionRequired


def _tags(header: str) -> list[str]:
    return [t.strip() for t in header.split(",") if t.strip()]


def required_if_match() -> list[str]:
    """The If-Match entity tags of the current request; 428 when the header is missing."""
    header = request.headers.get("if-match")
    if header is None or not header.strip():
        raise PreconditionRequired(
            "This change needs an If-Match header with the resource's current ETag (GET it first)."
        )
    return _tags(header)


def check_if_match(tags: list[str], current_etag: str) -> None:
    """Raise 412 with the current entity tag unless one of ``tags`` matches it (``*`` matches any)."""
    if "*" in tags or current_etag in tags:
        return
    raise PreconditionFailed(
        "The resource has changed since you read it; GET it again and reapply your change.",
        current_etag=current_etag,
    )


def not_modified(current_etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = [t.removeprefix("W/") for t in _tags(header)]
    return "*" in tags or current_etag in tags
