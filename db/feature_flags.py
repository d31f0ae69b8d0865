"""Feature flags behind ``/api/v1/feature-flags`` (admins): list, get, switch.

A switch locks the row, checks ``If-Match`` under the lock, updates it (the trigger writes the
``feature_flag.updated`` event in the same transaction) and puts the new state into this
process's flag cache at once; the other workers pick it up within the cache's TTL.
"""

from __future__ import annotations

from typing import Any

from crm import feature_flags
from crm.auth import Principal
from crm.conditional import check_if_match
from crm.errors import NotFound
from crm.pagination import decode_cursor, page
from db.pool import queries, read_transaction, transaction

FLAG_FIELDS = ("enabled",)


def _not_found(key: str) -> NotFound:
    return NotFound(f"No feature flag with key {key} exists.")


async def list_flags(principal: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    key = decode_cursor("list_feature_flags", {}, cursor) or [None]
    async with read_transaction(principal) as conn:
        rows = [row async for row in queries.list_feature_flags(conn, after_key=key[0], limit=limit + 1)]
    return page("list_feature_flags", {}, rows, limit, ("sort_key",))


async def get_flag(principal: Principal, key: str) -> dict[str, Any]:
    async with read_transaction(principal) as conn:
        row = await queries.get_feature_flag(conn, key=key)
    if row is None:
        raise _not_found(key)
    return row["body"]


async def update_flag(principal: Principal, key: str, if_match: list[str], changes: dict[str, Any]) -> dict:
    async with transaction(principal) as conn:
        current = await queries.lock_feature_flag(conn, key=key)
        if current is None:
            raise _not_found(key)
        check_if_match(if_match, current["etag"])
        row = await queries.update_feature_flag(
            conn, key=key, set_enabled="enabled" in changes, enabled=changes.get("enabled"),
            updated_by=principal.sub,
        )
    body = row["body"]
    feature_flags.remember(body["key"], body["enabled"])
    return body
