"""Erasure of a contact's personal data on request (``POST /api/v1/contacts/{id}/erasure``).

The work is one database function, ``crm_erase_contact`` (migration 0063), run in the request's
transaction: it needs to rewrite outbox events and archived rows, which the API role may not
touch, so it runs as the table owner and does exactly that for one person. An erasure already
made is answered with its record, whatever ``If-Match`` says; otherwise ``If-Match`` is checked
under the contact's row lock like every change (``*`` for a contact that is gone already).
"""

from __future__ import annotations

from typing import Any

from crm.auth import Principal
from crm.conditional import check_if_match
from crm.errors import NotFound
from db.pool import queries, transaction


async def erase_contact(principal: Principal, contact_id: str, if_match: list[str]) -> dict[str, Any]:
    async with transaction(principal) as conn:
        done = await queries.erasure_record(conn, contact_id=contact_id)
        if done is not None:
            return done["body"]
        current = await queries.lock_contact(conn, id=contact_id)
        if current is not None:
            check_if_match(if_match, current["etag"])
        elif "*" not in if_match:
            raise NotFound(f"No contact with id {contact_id} exists (send If-Match: * to erase what is left of one).")
        row = await queries.erase_contact(conn, contact_id=contact_id)
    if row["body"] is None:
        raise NotFound(f"No contact with id {contact_id} exists, and nothing is left of one.")
    return row["body"]
