"""Custom fields: ``/api/v1/field-definitions`` and ``/api/v1/customers/{customer_id}/fields``."""

from __future__ import annotations

from typing import Any

from crm.conditional import not_modified, required_if_match
from crm.idempotency import idempotent
from db import fields
from handlers._common import principal, resource


async def list_field_definitions(limit: int, cursor: str | None = None):
    return await fields.list_definitions(principal(), limit, cursor)


@idempotent("fields.create_field_definition")
async def create_field_definition(body: dict[str, Any]):
    definition = await fields.create_definition(principal(), body)
    return resource(definition, 201, f"/api/v1/field-definitions/{definition['key']}")


async def get_field_definition(field_key: str):
    body = await fields.get_definition(principal(), field_key)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def update_field_definition(field_key: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await fields.update_definition(principal(), field_key, if_match, body))


async def delete_field_definition(field_key: str):
    if_match = required_if_match()
    await fields.archive_definition(principal(), field_key, if_match)
    return None, 204


async def get_customer_fields(customer_id: str):
    body = await fields.get_customer_fields(principal(), customer_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def update_customer_fields(customer_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await fields.update_customer_fields(principal(), customer_id, if_match, body))
