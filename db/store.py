"""Database operations behind the handlers: one function per operation, one transaction each.

The SQL lives in ``db/queries/*.sql`` (named queries); this module strings them together
where an operation needs more than one statement (lock, check the entity tag, change) and turns
"no row" into the domain errors the API answers with.

Read-only operations (the GET handlers' ``_get``/``_list`` and the contact reads) run in
:func:`db.pool.read_transaction`: on a streaming replica when ``DATABASE_READ_URL`` is set.

Contacts read the feature flags of the contact e-mail change (``docs/deploy.md``) once per request,
before their transaction: ``contact_email_dual_write`` picks the statements that write
``email_address`` instead of ``email``, ``contact_email_read`` the representation read from it.
"""

from __future__ import annotations

import json
from typing import Any

from crm import feature_flags
from crm.auth import Principal
from crm.conditional import check_if_match
from crm.errors import Conflict, NotFound
from crm.pagination import decode_cursor, page
from db.fields import InvalidFieldValues
from db.pool import queries, read_transaction, transaction

MISSING = object()


def _set_flags(changes: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Parameters for a static merge-patch UPDATE: ``set_<field>`` flag and value per field."""
    params: dict[str, Any] = {}
    for name in fields:
        params[f"set_{name}"] = name in changes
        params[name] = changes.get(name)
    return params


def _not_found(kind: str, id_: str) -> NotFound:
    return NotFound(f"No {kind} with id {id_} exists (or it is outside your scope).")


async def _get(principal: Principal, kind: str, query: str, id_: str) -> dict[str, Any]:
    async with read_transaction(principal) as conn:
        row = await getattr(queries, query)(conn, id=id_)
    if row is None:
        raise _not_found(kind, id_)
    return row["body"]


async def _list(
    principal: Principal, operation: str, filters: dict[str, Any], limit: int, cursor: str | None,
    sort: tuple[str, ...], after: tuple[str, ...],
) -> dict[str, Any]:
    key = decode_cursor(operation, filters, cursor) or [None] * len(after)
    async with read_transaction(principal) as conn:
        rows = [
            row async for row in getattr(queries, operation)(
                conn, **filters, **dict(zip(after, key, strict=True)), limit=limit + 1
            )
        ]
    return page(operation, filters, rows, limit, sort)


async def _update(
    principal: Principal, kind: str, id_: str, if_match: list[str], changes: dict[str, Any],
    fields: tuple[str, ...], lock: str, update: str,
) -> dict[str, Any]:
    async with transaction(principal) as conn:
        current = await getattr(queries, lock)(conn, id=id_)
        if current is None:
            raise _not_found(kind, id_)
        check_if_match(if_match, current["etag"])
        row = await getattr(queries, update)(conn, id=id_, **_set_flags(changes, fields))
    return row["body"]


# --- chains -------------------------------------------------------------------------------------

CHAIN_FIELDS = ("name", "description")


async def list_chains(principal: Principal, limit: int, cursor: str | None, q: str | None) -> dict[str, Any]:
    return await _list(principal, "list_chains", {"q": q}, limit, cursor,
                       ("sort_name", "sort_id"), ("after_name", "after_id"))


async def get_chain(principal: Principal, chain_id: str) -> dict[str, Any]:
    return await _get(principal, "chain", "get_chain", chain_id)


async def create_chain(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    async with transaction(principal) as conn:
        row = await queries.insert_chain(conn, name=body["name"], description=body.get("description"))
        if row is None:
            existing = await queries.find_chain_by_name(conn, name=body["name"])
            raise Conflict(
                f"A chain named {body['name']!r} exists already.",
                field="name", existing_id=str(existing["id"]) if existing else None,
            )
    return row["body"]


async def update_chain(principal: Principal, chain_id: str, if_match: list[str], changes: dict[str, Any]) -> dict:
    return await _update(principal, "chain", chain_id, if_match, changes, CHAIN_FIELDS, "lock_chain", "update_chain")


async def delete_chain(principal: Principal, chain_id: str, if_match: list[str]) -> None:
    async with transaction(principal) as conn:
        current = await queries.lock_chain(conn, id=chain_id)
        if current is None:
            raise _not_found("chain", chain_id)
        check_if_match(if_match, current["etag"])
        if current["customer_count"]:
            raise Conflict(
                f"The chain still has {current['customer_count']} customer(s); move or archive them first.",
                customer_count=current["customer_count"],
            )
        await queries.delete_chain(conn, id=chain_id)


# --- customers ----------------------------------------------------------------------------------

CUSTOMER_FIELDS = ("name", "type", "status", "chain_id", "owner", "street", "postal_code", "city", "country")
ADDRESS_FIELDS = ("street", "postal_code", "city", "country")


def _flatten_customer(body: dict[str, Any]) -> dict[str, Any]:
    """API shape → columns: the nested address becomes its four columns (merge-patch keeps
    absent address fields absent)."""
    flat = {k: v for k, v in body.items() if k != "address"}
    address = body.get("address", MISSING)
    if address is None:
        flat.update(dict.fromkeys(ADDRESS_FIELDS))
    elif address is not MISSING:
        flat.update({k: address[k] for k in ADDRESS_FIELDS if k in address})
    return flat


async def list_customers(principal: Principal, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
    filters = {k: filters.get(k) for k in ("chain_id", "status", "type", "owner", "q", "updated_since")}
    return await _list(principal, "list_customers", filters, limit, cursor,
                       ("sort_name", "sort_id"), ("after_name", "after_id"))


async def get_customer(principal: Principal, customer_id: str) -> dict[str, Any]:
    return await _get(principal, "customer", "get_customer", customer_id)


async def create_customer(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """Insert the customer and, in the same transaction, its custom field values: each checked
    against its definition, and every required field must be given (all problems in one 422)."""
    values = _flatten_customer(body)
    params = {k: values.get(k) for k in ("customer_number", *CUSTOMER_FIELDS)}
    params["status"] = params["status"] or "LEAD"
    patch = json.dumps(body.get("fields") or {})
    async with transaction(principal) as conn:
        row = await queries.insert_customer(conn, **params)
        if row is None:
            existing = await queries.find_customer_by_number(conn, customer_number=params["customer_number"])
            raise Conflict(
                f"A customer with customer_number {params['customer_number']} exists already.",
                field="customer_number", existing_id=str(existing["id"]) if existing else None,
            )
        customer_id = row["body"]["id"]
        errors = [
            {"field": f"fields.{e['field']}", "message": e["message"]}
            async for e in queries.check_field_values(conn, id=customer_id, patch=patch)
        ]
        if errors:
            raise InvalidFieldValues(
                f"{len(errors)} field value(s) are not valid; the customer was not created.", errors=errors
            )
        if body.get("fields"):
            await queries.update_customer_fields(conn, id=customer_id, patch=patch)
            row = await queries.get_customer(conn, id=customer_id)
    return row["body"]


async def update_customer(
    principal: Principal, customer_id: str, if_match: list[str], changes: dict[str, Any]
) -> dict[str, Any]:
    return await _update(principal, "customer", customer_id, if_match, _flatten_customer(changes),
                         CUSTOMER_FIELDS, "lock_customer", "update_customer")


async def archive_customer(principal: Principal, customer_id: str, if_match: list[str]) -> None:
    async with transaction(principal) as conn:
        current = await queries.lock_customer(conn, id=customer_id)
        if current is None:
            raise _not_found("customer", customer_id)
        check_if_match(if_match, current["etag"])
        await queries.archive_customer(conn, id=customer_id)


# --- contacts -----------------------------------------------------------------------------------

CONTACT_FIELDS = ("first_name", "last_name", "job_role", "email", "phone")
CONTACT_EMAIL_DUAL_WRITE = "contact_email_dual_write"
CONTACT_EMAIL_READ = "contact_email_read"


async def _contact_email_flags() -> tuple[bool, bool]:
    """(write email_address, read email_address): the flags of the contact e-mail change."""
    flags = await feature_flags.snapshot()
    return flags.get(CONTACT_EMAIL_DUAL_WRITE, False), flags.get(CONTACT_EMAIL_READ, False)


async def list_contacts(principal: Principal, customer_id: str, limit: int, cursor: str | None) -> dict:
    filters = {"customer_id": customer_id}
    key = decode_cursor("list_contacts", filters, cursor) or [None, None]
    _, read_new = await _contact_email_flags()
    async with read_transaction(principal) as conn:
        if await queries.find_customer(conn, customer_id=customer_id) is None:
            raise _not_found("customer", customer_id)
        rows = [
            row async for row in queries.list_contacts(
                conn, customer_id=customer_id, after_created=key[0], after_id=key[1], limit=limit + 1,
                read_new=read_new,
            )
        ]
    return page("list_contacts", filters, rows, limit, ("sort_created", "sort_id"))


async def get_contact(principal: Principal, contact_id: str) -> dict[str, Any]:
    _, read_new = await _contact_email_flags()
    async with read_transaction(principal) as conn:
        row = await queries.get_contact(conn, id=contact_id, read_new=read_new)
    if row is None:
        raise _not_found("contact", contact_id)
    return row["body"]


async def create_contact(principal: Principal, customer_id: str, body: dict[str, Any]) -> dict[str, Any]:
    params = {k: body.get(k) for k in CONTACT_FIELDS}
    params["job_role"] = params["job_role"] or "OTHER"
    write_new, read_new = await _contact_email_flags()
    insert = queries.insert_contact_v2 if write_new else queries.insert_contact
    async with transaction(principal) as conn:
        if await queries.find_customer(conn, customer_id=customer_id) is None:
            raise _not_found("customer", customer_id)
        row = await insert(conn, customer_id=customer_id, read_new=read_new, **params)
    return row["body"]


async def update_contact(
    principal: Principal, contact_id: str, if_match: list[str], changes: dict[str, Any]
) -> dict[str, Any]:
    write_new, read_new = await _contact_email_flags()
    update = queries.update_contact_v2 if write_new else queries.update_contact
    async with transaction(principal) as conn:
        current = await queries.lock_contact(conn, id=contact_id)
        if current is None:
            raise _not_found("contact", contact_id)
        check_if_match(if_match, current["etag"])
        row = await update(conn, id=contact_id, read_new=read_new, **_set_flags(changes, CONTACT_FIELDS))
    return row["body"]


async def delete_contact(principal: Principal, contact_id: str, if_match: list[str]) -> None:
    async with transaction(principal) as conn:
        current = await queries.lock_contact(conn, id=contact_id)
        if current is None:
            raise _not_found("contact", contact_id)
        check_if_match(if_match, current["etag"])
        await queries.delete_contact(conn, id=contact_id)
