"""Cook&Fresh sample requests: ``/api/v1/sample-requests`` with items, transitions, feedback and
history. The rules (lifecycle, who may do what, quotas) live in :mod:`db.samples`."""

from __future__ import annotations

from typing import Any

from connexion import request

from crm.conditional import not_modified, required_if_match
from crm.idempotency import idempotent
from db import samples
from handlers._common import principal, resource

BASE = "/api/v1/sample-requests"


async def list_sample_requests(
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    customer_id: str | None = None,
    chain_id: str | None = None,
    requested_by: str | None = None,
    created_from: str | None = None,
    created_to: str | None = None,
):
    return await samples.list_sample_requests(
        principal(), limit, cursor, status=status, customer_id=customer_id, chain_id=chain_id,
        requested_by=requested_by, created_from=created_from, created_to=created_to,
    )


@idempotent("samples.create_sample_request")
async def create_sample_request(body: dict[str, Any]):
    created = await samples.create_sample_request(principal(), body, request.headers.get("idempotency-key"))
    return resource(created, 201, f"{BASE}/{created['id']}")


async def get_sample_request(sample_request_id: str):
    body = await samples.get_sample_request(principal(), sample_request_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def update_sample_request(sample_request_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await samples.update_sample_request(principal(), sample_request_id, if_match, body))


async def delete_sample_request(sample_request_id: str):
    if_match = required_if_match()
    await samples.delete_sample_request(principal(), sample_request_id, if_match)
    return None, 204


async def transition_sample_request(sample_request_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await samples.transition_sample_request(principal(), sample_request_id, if_match, body))


async def list_sample_history(sample_request_id: str, limit: int, cursor: str | None = None):
    return await samples.list_sample_history(principal(), sample_request_id, limit, cursor)


async def list_sample_items(sample_request_id: str, limit: int, cursor: str | None = None):
    return await samples.list_sample_items(principal(), sample_request_id, limit, cursor)


@idempotent("samples.add_sample_item")
async def add_sample_item(sample_request_id: str, body: dict[str, Any]):
    item = await samples.add_sample_item(principal(), sample_request_id, body)
    return resource(item, 201, f"{BASE}/{sample_request_id}/items/{item['id']}")


async def get_sample_item(sample_request_id: str, item_id: str):
    body = await samples.get_sample_item(principal(), sample_request_id, item_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def remove_sample_item(sample_request_id: str, item_id: str):
    if_match = required_if_match()
    await samples.remove_sample_item(principal(), sample_request_id, item_id, if_match)
    return None, 204


async def put_sample_feedback(sample_request_id: str, item_id: str, body: dict[str, Any]):
    # If-Match is optional here: checked when sent (a PUT that replaces the feedback as a whole).
    if_match = required_if_match() if request.headers.get("if-match") else None
    item = await samples.put_sample_feedback(principal(), sample_request_id, item_id, if_match, body)
    return resource(item)
