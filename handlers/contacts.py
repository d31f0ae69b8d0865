"""Contacts: ``/api/v1/customers/{customer_id}/contacts`` and ``/api/v1/contacts/{contact_id}``.

Contacts are personal data: their fields never go into logs or problem details.
"""

from __future__ import annotations

from typing import Any

from crm.conditional import not_modified, required_if_match
from crm.idempotency import idempotent
from db import store
from handlers._common import principal, resource


async def list_contacts(customer_id: str, limit: int, cursor: str | None = None):
    return await store.list_contacts(principal(), customer_id, limit, cursor)


@idempotent("contacts.create_contact")
async def create_contact(customer_id: str, body: dict[str, Any]):
    contact = await store.create_contact(principal(), customer_id, body)
    return resource(contact, 201, f"/api/v1/contacts/{contact['id']}")


async def get_contact(contact_id: str):
    body = await store.get_contact(principal(), contact_id)
    if not_modified(body["etag"]):
        return None, 304, {"ETag": body["etag"]}
    return resource(body)


async def update_contact(contact_id: str, body: dict[str, Any]):
    if_match = required_if_match()
    return resource(await store.update_contact(principal(), contact_id, if_match, body))


async def delete_contact(contact_id: str):
    if_match = required_if_match()
    await store.delete_contact(principal(), contact_id, if_match)
    return None, 204
