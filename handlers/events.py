"""The event feed and consumer checkpoints: ``/api/v1/events``, ``/api/v1/consumers``."""

from __future__ import annotations

from typing import Any

from connexion import request

from crm.conditional import not_modified
from db import events
from handlers._common import principal, resource


async def list_events(limit: int, after: int | None = None, types: str | None = None):
    return await events.feed(principal(), after, limit, types.split(",") if types else None)


async def get_checkpoint(consumer_name: str):
    body = await events.get_checkpoint(principal(), consumer_name)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def put_checkpoint(consumer_name: str, body: dict[str, Any]):
    header = request.headers.get("if-match")
    if_match = [t.strip() for t in header.split(",") if t.strip()] if header and header.strip() else None
    checkpoint, created = await events.put_checkpoint(principal(), consumer_name, if_match, body["position"])
    return resource(checkpoint, 201 if created else 200)
