"""Feature flags: ``/api/v1/feature-flags`` (admins)."""

from __future__ import annotations

from typing import Any

from crm.conditional import not_modified, required_if_match
from db import feature_flags
from handlers._common import principal, resource


async def list_feature_flags(limit: int, cursor: str | None = None):
    return await feature_flags.list_flags(principal(), limit, cursor)


async def get_feature_flag(flag_key: str):
    body = await feature_flags.get_flag(principal(), flag_key)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def update_feature_flag(flag_key: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await feature_flags.update_flag(principal(), flag_key, if_match, body))
