"""What every handler shares: the caller, and the shape of single-resource responses."""

from __future__ import annotations

from typing import Any

from connexion.context import context

from crm.auth import Principal


def principal() -> Principal:
    """The authenticated caller (set by :class:`crm.auth.JWTBearerHandler`)."""
    return context["token_info"]["principal"]


def resource(body: dict[str, Any], status: int = 200, location: str | None = None):
    """A single resource with its ``ETag`` (and ``Location`` on create)."""
    headers = {"ETag": body["etag"]}
    if location:
        headers["Location"] = location
    return body, status, headers
