"""Privacy: erasure of a contact's personal data on request (``/api/v1/contacts/{id}/erasure``)."""

from __future__ import annotations

from crm.conditional import required_if_match
from db import erasure
from handlers._common import principal


async def erase_contact(contact_id: str):
    if_match = required_if_match()
    return await erasure.erase_contact(principal(), contact_id, if_match), 200
