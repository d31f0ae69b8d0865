"""Customers: ``/api/v1/customers``."""

from __future__ import annotations

from typing import Any

from crm.conditional import not_modified, required_if_match
from crm.idempotency import idempotent
from db import store
from handlers._common import principal, resource


async def list_customers(
    limit: int,
    cursor: str | None = None,
    chain_id: str | None = None,
    status: str | None = None,
    type_: str | None = None,
    owner: str | None = None,
    q: str | None = None,
    updated_since: str | None = None,
):
    return await store.list_customers(
        principal(), limit, cursor,
        chain_id=chain_id, status=status, type=type_, owner=owner, q=q, updated_since=updated_since,
    )


async def get_customer(customer_id: str):
    body = await store.get_customer(principal(), customer_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


@idempotent("customers.create_customer")
async def create_customer(body: dict[str, Any]):
    customer = await store.create_customer(principal(), body)
    return resource(customer, 201, f"/api/v1/customers/{customer['id']}")


async def update_customer(customer_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await store.update_customer(principal(), customer_id, if_match, body))


async def delete_customer(customer_id: str):
    if_match = required_if_match()
    await store.archive_customer(principal(), customer_id, if_match)
    return None, 204
