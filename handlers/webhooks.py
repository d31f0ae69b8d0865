"""Webhook subscriptions and their deliveries: ``/api/v1/webhook-subscriptions``."""

from __future__ import annotations

from typing import Any

from crm.conditional import not_modified, required_if_match
from crm.idempotency import idempotent
from db import events
from handlers._common import principal, resource


async def list_subscriptions(limit: int, cursor: str | None = None):
    return await events.list_subscriptions(principal(), limit, cursor)


@idempotent("webhooks.create_subscription")
async def create_subscription(body: dict[str, Any]):
    subscription = await events.create_subscription(principal(), body)
    return resource(subscription, 201, f"/api/v1/webhook-subscriptions/{subscription['id']}")


async def get_subscription(subscription_id: str):
    body = await events.get_subscription(principal(), subscription_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def update_subscription(subscription_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await events.update_subscription(principal(), subscription_id, if_match, body))


async def delete_subscription(subscription_id: str):
    if_match = required_if_match()
    await events.delete_subscription(principal(), subscription_id, if_match)
    return None, 204


async def list_deliveries(subscription_id: str, limit: int, cursor: str | None = None, status: str | None = None):
    return await events.list_deliveries(principal(), subscription_id, limit, cursor, status)


async def redeliver(subscription_id: str, body: dict[str, Any]):
    ids = body.get("delivery_ids")
    return await events.redeliver(principal(), subscription_id, ids), 202
