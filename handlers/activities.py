"""Activities (calls and visits): ``/api/v1/activities``, and the customer timeline
``/api/v1/customers/{customer_id}/timeline``. The rules live in :mod:`db.activities`."""

from __future__ import annotations

from typing import Any

from connexion import request

from crm.conditional import not_modified, required_if_match
from crm.idempotency import idempotent
from db import activities
from handlers._common import principal, resource

BASE = "/api/v1/activities"


async def list_activities(
    limit: int,
    cursor: str | None = None,
    customer_id: str | None = None,
    chain_id: str | None = None,
    type_: str | None = None,
    owner: str | None = None,
    status: str | None = None,
    occurred_from: str | None = None,
    occurred_to: str | None = None,
    follow_up_due_before: str | None = None,
):
    return await activities.list_activities(
        principal(), limit, cursor, customer_id=customer_id, chain_id=chain_id, type=type_, owner=owner,
        status=status, occurred_from=occurred_from, occurred_to=occurred_to,
        follow_up_due_before=follow_up_due_before,
    )


@idempotent("activities.create_activity")
async def create_activity(body: dict[str, Any]):
    created = await activities.create_activity(principal(), body, request.headers.get("idempotency-key"))
    return resource(created, 201, f"{BASE}/{created['id']}")


async def get_activity(activity_id: str):
    body = await activities.get_activity(principal(), activity_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def update_activity(activity_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await activities.update_activity(principal(), activity_id, if_match, body))


async def delete_activity(activity_id: str):
    if_match = required_if_match()
    await activities.delete_activity(principal(), activity_id, if_match)
    return None, 204


async def list_customer_timeline(customer_id: str, limit: int, cursor: str | None = None):
    return await activities.list_customer_timeline(principal(), customer_id, limit, cursor)
