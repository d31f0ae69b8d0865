"""The event feed, consumer checkpoints and webhook subscriptions (the API side).

The feed is safe against late commits: :func:`feed` reads the bound from
``crm_outbox_safe_position()`` in one statement and the rows in the next (a newer snapshot in
READ COMMITTED), so no position at or below the bound can still appear later; see migration
``0030_events_relay``. The relay's side lives in :mod:`crm.relay`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from crm.auth import Principal
from crm.conditional import check_if_match
from crm.errors import Conflict, DomainError, NotFound, PreconditionRequired, Unprocessable
from crm.pagination import decode_cursor, encode_cursor
from db.pool import queries, transaction

RETENTION = timedelta(days=30)


class PositionPurged(DomainError):
    status = 410
    type = "/problems/position-purged"
    title = "Gone"


def _instant(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def event_body(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "position": row["position"],
        "type": row["type"],
        "aggregatetype": row["aggregatetype"],
        "aggregateid": row["aggregateid"],
        "payload": row["payload"],
        "correlation_id": row["correlation_id"],
        "actor": row["actor"],
        "created_at": _instant(row["created_at"]),
    }


def like_patterns(types: list[str] | None) -> list[str] | None:
    """Event type filters (``customer.created``, ``sample_request.*``, ``*``) as LIKE patterns."""
    if not types:
        return None
    escaped = [t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for t in types]
    return [t.replace("*", "%") for t in escaped]


# --- feed ---------------------------------------------------------------------------------------

async def feed(principal: Principal, after: int | None, limit: int, types: list[str] | None) -> dict[str, Any]:
    async with transaction(principal) as conn:
        bounds = await queries.feed_bounds(conn)
        purged = bounds["purged_through"]
        if after is not None and after < purged:
            raise PositionPurged(
                f"Events up to position {purged} were removed by retention; resume from {purged} "
                "(or from a newer checkpoint) and reconcile from the API.",
                oldest_position=purged,
            )
        start = max(after or 0, purged)
        safe = bounds["safe_position"]
        rows = [
            row async for row in queries.feed_events(
                conn, after=start, safe_position=safe, patterns=like_patterns(types), limit=limit
            )
        ]
    items = [event_body(r) for r in rows]
    # A short page has seen everything up to the safe bound: a filtered reader may move past it.
    next_after = rows[-1]["position"] if len(rows) == limit else max(start, safe)
    return {"items": items, "next_after": next_after, "safe_position": safe}


# --- consumer checkpoints -----------------------------------------------------------------------

def _checkpoint(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "consumer_name": row["name"],
        "position": row["position"],
        "updated_at": _instant(row["updated_at"]),
        "etag": row["etag"],
    }


async def get_checkpoint(principal: Principal, name: str) -> dict[str, Any]:
    async with transaction(principal) as conn:
        row = await queries.get_consumer(conn, name=name)
    if row is None:
        raise NotFound(f"The consumer {name!r} has no checkpoint yet; PUT one to create it.")
    return _checkpoint(row)


async def put_checkpoint(
    principal: Principal, name: str, if_match: list[str] | None, position: int
) -> tuple[dict[str, Any], bool]:
    """Store a checkpoint; ``(body, created)``. Changing an existing one needs If-Match."""
    async with transaction(principal) as conn:
        current = await queries.lock_consumer(conn, name=name)
        if current is None:
            row = await queries.insert_consumer(conn, name=name, position=position, actor=principal.sub)
            if row is not None:
                return _checkpoint(row), True
            current = await queries.lock_consumer(conn, name=name)
            if current is None:
                raise Conflict(
                    f"The consumer name {name!r} is taken by another client; choose another name.",
                    field="consumer_name",
                )
        if if_match is None:
            raise PreconditionRequired(
                "The checkpoint exists: send its ETag in If-Match (GET it first) to move it."
            )
        check_if_match(if_match, current["etag"])
        row = await queries.update_consumer(conn, name=name, position=position, actor=principal.sub)
    return _checkpoint(row), False


# --- webhook subscriptions ----------------------------------------------------------------------

SUBSCRIPTION_FIELDS = ("url", "event_types", "description", "secret", "active")


def private_targets_allowed() -> bool:
    """``WEBHOOK_ALLOW_PRIVATE=1`` (development): webhooks may target private addresses."""
    return os.environ.get("WEBHOOK_ALLOW_PRIVATE", "") in ("1", "true", "yes")


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def validate_url(url: str) -> None:
    """``http``/``https``, a host, no credentials; private, loopback and link-local addresses only
    with ``WEBHOOK_ALLOW_PRIVATE=1``. Names are resolved and every address must qualify."""
    def refuse(message: str) -> Unprocessable:
        return Unprocessable(f"The webhook URL is not acceptable: {message}.",
                             errors=[{"field": "url", "message": message}])

    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise refuse("it is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise refuse("the scheme must be http or https")
    if not host:
        raise refuse("it has no host")
    if parts.username is not None or parts.password is not None:
        raise refuse("it must not carry credentials")
    if parts.fragment:
        raise refuse("it must not have a fragment")
    if private_targets_allowed():
        return
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=3
            )
        except (OSError, TimeoutError, UnicodeError):
            raise refuse(f"the host {host} cannot be resolved") from None
        addresses = [info[4][0] for info in infos]
    if not addresses or not all(is_public_address(a) for a in addresses):
        raise refuse("private, loopback and link-local addresses are refused")


def _subscription(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "description": row["description"],
        "active": row["active"],
        "paused_reason": row["paused_reason"],
        "paused_at": _instant(row["paused_at"]),
        "consecutive_failures": row["consecutive_failures"],
        "position": row["position"],
        "owner": row["owner"],
        "created_at": _instant(row["created_at"]),
        "updated_at": _instant(row["updated_at"]),
        "etag": row["etag"],
    }


def _not_found(subscription_id: str) -> NotFound:
    return NotFound(f"No webhook subscription with id {subscription_id} exists (or it is not yours).")


async def list_subscriptions(principal: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    key = decode_cursor("list_webhook_subscriptions", {}, cursor) or [None, None]
    async with transaction(principal) as conn:
        rows = [r async for r in queries.list_subscriptions(
            conn, after_created=key[0], after_id=key[1], limit=limit + 1)]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        next_cursor = encode_cursor("list_webhook_subscriptions", {},
                                    [rows[-1]["created_at"].isoformat(), str(rows[-1]["id"])])
    return {"items": [_subscription(r) for r in rows], "next_cursor": next_cursor}


async def get_subscription(principal: Principal, subscription_id: str) -> dict[str, Any]:
    async with transaction(principal) as conn:
        row = await queries.get_subscription(conn, id=subscription_id)
    if row is None:
        raise _not_found(subscription_id)
    return _subscription(row)


async def create_subscription(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    await validate_url(body["url"])
    secret = body.get("secret") or "whsec_" + secrets.token_urlsafe(32)
    async with transaction(principal) as conn:
        created = await queries.insert_subscription(
            conn, owner=principal.sub, url=body["url"], event_types=list(dict.fromkeys(body["event_types"])),
            description=body.get("description"), secret=secret, active=body.get("active", True),
        )
        row = await queries.get_subscription(conn, id=created["id"])
    return {**_subscription(row), "secret": secret}


async def update_subscription(
    principal: Principal, subscription_id: str, if_match: list[str], changes: dict[str, Any]
) -> dict[str, Any]:
    if "url" in changes:
        await validate_url(changes["url"])
    if "event_types" in changes:
        changes = {**changes, "event_types": list(dict.fromkeys(changes["event_types"]))}
    params: dict[str, Any] = {}
    for name in SUBSCRIPTION_FIELDS:
        params[f"set_{name}"] = name in changes
        params[name] = changes.get(name)
    async with transaction(principal) as conn:
        current = await queries.lock_subscription(conn, id=subscription_id)
        if current is None:
            raise _not_found(subscription_id)
        check_if_match(if_match, current["etag"])
        await queries.update_subscription(conn, id=subscription_id, **params)
        row = await queries.get_subscription(conn, id=subscription_id)
    return _subscription(row)


async def delete_subscription(principal: Principal, subscription_id: str, if_match: list[str]) -> None:
    async with transaction(principal) as conn:
        current = await queries.lock_subscription(conn, id=subscription_id)
        if current is None:
            raise _not_found(subscription_id)
        check_if_match(if_match, current["etag"])
        await queries.delete_subscription(conn, id=subscription_id)


def _delivery(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "subscription_id": str(row["subscription_id"]),
        "event_id": str(row["event_id"]),
        "event_position": row["event_position"],
        "event_type": row["event_type"],
        "aggregatetype": row["aggregatetype"],
        "aggregateid": row["aggregateid"],
        "correlation_id": row["correlation_id"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": _instant(row["next_attempt_at"]) if row["status"] == "PENDING" else None,
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "last_latency_ms": row["last_latency_ms"],
        "attempt_log": row["attempt_log"],
        "created_at": _instant(row["created_at"]),
        "delivered_at": _instant(row["delivered_at"]),
    }


async def list_deliveries(
    principal: Principal, subscription_id: str, limit: int, cursor: str | None, status: str | None
) -> dict[str, Any]:
    filters = {"subscription_id": subscription_id, "status": status}
    key = decode_cursor("list_webhook_deliveries", filters, cursor) or [None, None]
    async with transaction(principal) as conn:
        if await queries.get_subscription(conn, id=subscription_id) is None:
            raise _not_found(subscription_id)
        rows = [r async for r in queries.list_deliveries(
            conn, subscription_id=subscription_id, status=status, after_position=key[0], after_id=key[1],
            limit=limit + 1)]
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = None
    if more:
        next_cursor = encode_cursor("list_webhook_deliveries", filters,
                                    [rows[-1]["event_position"], str(rows[-1]["id"])])
    return {"items": [_delivery(r) for r in rows], "next_cursor": next_cursor}


async def redeliver(principal: Principal, subscription_id: str, delivery_ids: list[str] | None) -> dict[str, Any]:
    async with transaction(principal) as conn:
        if await queries.get_subscription(conn, id=subscription_id) is None:
            raise _not_found(subscription_id)
        row = await queries.requeue_deliveries(conn, subscription_id=subscription_id, ids=delivery_ids)
    return {"requeued": row["requeued"]}


# --- retention ----------------------------------------------------------------------------------

async def purge_delivered_events(dsn: str, retention: timedelta = RETENTION) -> dict[str, int]:
    """Remove events older than ``retention`` that every webhook subscription has fanned out and
    no delivery still waits for, and settled deliveries as old; the feed then answers 410 for the
    positions gone. Called by the retention job."""
    import psycopg
    from psycopg.rows import dict_row

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        row = await queries.purge_events(conn, cutoff=datetime.now(UTC) - retention)
    return {k: int(v) for k, v in row.items()}
