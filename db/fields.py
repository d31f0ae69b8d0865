"""Field-Bridge operations: field definitions and customers' field values.

Values live in ``customer.fields`` (one JSONB object per customer) and are validated by the
database function ``crm_field_value_error`` — the same rule set answers a values ``PATCH`` (one
422 entry per field) and decides which stored values a changed definition would break.

Changing a definition so that stored values break it (options removed, ``required`` set,
bounds, length or pattern tightened) is refused with 409 ``/problems/field-values-conflict``
naming how many customers are affected, unless the request carries a ``migration``:

``map_options``   ENUM / MULTI_ENUM: ``{"OLD": "NEW"}``, applied to every stored value first;
``invalid``       ``UNSET`` (remove what still breaks the definition; of a MULTI_ENUM only the
                  invalid options) or ``REPLACE`` (with ``replacement``);
``fill_missing``  for a field becoming required: the value customers without one get.

The migration runs in the same transaction as the change; if values still break the definition
afterwards, nothing is changed and the answer is the 409.

Making a field hot or cold, and archiving it, queues a field job (``db/field_jobs.py``),
started in the background once the change is committed.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg.types.json import Jsonb

from crm.auth import Principal
from crm.conditional import check_if_match
from crm.errors import Conflict, NotFound, Unprocessable
from crm.pagination import decode_cursor, page
from db import field_jobs
from db.pool import pool, queries, read_transaction, transaction

# Keys the customer representation or the search uses for its own fields.
RESERVED_KEYS = frozenset({
    "id", "customer_id", "customer_number", "name", "type", "status", "chain_id", "owner", "street",
    "postal_code", "city", "country", "address", "created_at", "updated_at", "etag", "fields", "version",
    "last_activity_at", "next_follow_up_at", "activities_last_90_days",
})
ENUM_TYPES = ("ENUM", "MULTI_ENUM")
NUMBER_TYPES = ("INTEGER", "NUMBER")
MISSING = object()


class InvalidFieldValues(Unprocessable):
    type = "/problems/invalid-field-values"


class InvalidFieldDefinition(Unprocessable):
    type = "/problems/invalid-field-definition"


class FieldValuesConflict(Conflict):
    type = "/problems/field-values-conflict"


def _not_found(key: str) -> NotFound:
    return NotFound(f"No field definition with key {key!r} exists.")


def _customer_not_found(customer_id: str) -> NotFound:
    return NotFound(f"No customer with id {customer_id} exists (or it is outside your scope).")


def _start_jobs() -> None:
    field_jobs.start_in_background(pool().conninfo)


# --- definitions --------------------------------------------------------------------------------

def _definition_errors(d: dict[str, Any]) -> list[dict[str, str]]:
    """What makes a (merged) definition inconsistent; the spec checks shapes and ranges."""
    errors = []
    data_type = d["data_type"]
    if d["key"] in RESERVED_KEYS:
        errors.append({"field": "key", "message": f"{d['key']!r} is reserved for a customer property"})
    if data_type in ENUM_TYPES and not d.get("options"):
        errors.append({"field": "options", "message": f"is required for {data_type} fields"})
    if data_type not in ENUM_TYPES and d.get("options") is not None:
        errors.append({"field": "options", "message": "only ENUM and MULTI_ENUM fields have options"})
    if d.get("options") and len(set(d["options"])) != len(d["options"]):
        errors.append({"field": "options", "message": "must not name an option twice"})
    for name in ("min", "max"):
        if d.get(name) is not None and data_type not in NUMBER_TYPES:
            errors.append({"field": name, "message": "only INTEGER and NUMBER fields have bounds"})
    if d.get("min") is not None and d.get("max") is not None and d["min"] > d["max"]:
        errors.append({"field": "min", "message": "must not be greater than max"})
    for name in ("max_length", "pattern"):
        if d.get(name) is not None and data_type != "TEXT":
            errors.append({"field": name, "message": "only TEXT fields have it"})
    return errors


async def _check_pattern(conn, pattern: str | None, errors: list[dict[str, str]]) -> None:
    if pattern is not None and not (await queries.regex_is_valid(conn, pattern=pattern))["valid"]:
        errors.append({"field": "pattern", "message": "is not a valid regular expression"})


async def list_definitions(principal: Principal, limit: int, cursor: str | None) -> dict[str, Any]:
    key = decode_cursor("list_field_definitions", {}, cursor) or [None]
    async with read_transaction(principal) as conn:
        rows = [r async for r in queries.list_field_definitions(conn, after_key=key[0], limit=limit + 1)]
    return page("list_field_definitions", {}, rows, limit, ("sort_key",))


async def get_definition(principal: Principal, key: str) -> dict[str, Any]:
    async with read_transaction(principal) as conn:
        row = await queries.get_field_definition(conn, key=key)
    if row is None:
        raise _not_found(key)
    return row["body"]


async def create_definition(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    errors = _definition_errors(body)
    async with transaction(principal) as conn:
        await _check_pattern(conn, body.get("pattern"), errors)
        if errors:
            raise InvalidFieldDefinition("The field definition is not consistent.", errors=errors)
        row = await queries.insert_field_definition(
            conn, key=body["key"], label=body["label"], description=body.get("description"),
            data_type=body["data_type"], options=body.get("options"), required=body.get("required", False),
            min_value=body.get("min"), max_value=body.get("max"), max_length=body.get("max_length"),
            pattern=body.get("pattern"), hot=body.get("hot", False),
        )
        if row is None:
            existing = await queries.find_field_definition(conn, key=body["key"])
            archived = existing is not None and existing["archived_at"] is not None
            raise Conflict(
                f"A field with key {body['key']!r} exists already"
                + (" (archived; its values are kept, so the key cannot be reused)." if archived else "."),
                field="key", existing_id=body["key"],
            )
        if body.get("hot"):
            await queries.insert_field_job(conn, key=body["key"], action="MAKE_HOT",
                                           batch_size=field_jobs.DEFAULT_BATCH_SIZE)
            row = await queries.get_field_definition(conn, key=body["key"])
    if body.get("hot"):
        _start_jobs()
    return row["body"]


def _tightened(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether stored values that were valid may break the new definition."""
    if current["options"] is not None and not set(current["options"]) <= set(new["options"] or ()):
        return True
    if new["required"] and not current["required"]:
        return True
    if new["pattern"] is not None and new["pattern"] != current["pattern"]:
        return True

    def raised(old: Any, now: Any, tighter) -> bool:
        return now is not None and (old is None or tighter(now, old))

    return (
        raised(current["min_value"], new["min_value"], lambda a, b: a > b)
        or raised(current["max_value"], new["max_value"], lambda a, b: a < b)
        or raised(current["max_length"], new["max_length"], lambda a, b: a < b)
    )


async def _migrate_values(conn, key: str, definition: dict[str, Any], migration: dict[str, Any]) -> None:
    errors: list[dict[str, str]] = []
    option_map = migration.get("map_options")
    if option_map:
        if definition["data_type"] not in ENUM_TYPES:
            errors.append({"field": "migration.map_options", "message": "only ENUM and MULTI_ENUM fields have options"})
        else:
            for old, new in option_map.items():
                if new not in definition["options"]:
                    errors.append({"field": f"migration.map_options.{old}", "message": f"{new!r} is not an option"})
    for name in ("replacement", "fill_missing"):
        value = migration.get(name)
        if value is not None:
            message = (await queries.check_field_value(conn, key=key, value=Jsonb(value)))["message"]
            if message:
                errors.append({"field": f"migration.{name}", "message": message})
    if migration.get("invalid") == "REPLACE" and migration.get("replacement") is None:
        errors.append({"field": "migration.replacement", "message": "is required with invalid = REPLACE"})
    if errors:
        raise InvalidFieldDefinition("The migration cannot be applied.", errors=errors)
    if option_map:
        await queries.migrate_field_map_options(conn, key=key, option_map=Jsonb(option_map))
    if migration.get("invalid") == "UNSET":
        await queries.migrate_field_unset_invalid(conn, key=key)
    elif migration.get("invalid") == "REPLACE":
        await queries.migrate_field_replace_invalid(conn, key=key, value=Jsonb(migration["replacement"]))
    if migration.get("fill_missing") is not None:
        await queries.migrate_field_fill_missing(conn, key=key, value=Jsonb(migration["fill_missing"]))


PATCHABLE = {  # API property -> column
    "label": "label", "description": "description", "options": "options", "required": "required",
    "min": "min_value", "max": "max_value", "max_length": "max_length", "pattern": "pattern", "hot": "hot",
}


async def update_definition(
    principal: Principal, key: str, if_match: list[str], changes: dict[str, Any]
) -> dict[str, Any]:
    migration = changes.get("migration")
    changes = {k: v for k, v in changes.items() if k != "migration"}
    job = None
    async with transaction(principal) as conn:
        current = await queries.lock_field_definition(conn, key=key)
        if current is None:
            raise _not_found(key)
        check_if_match(if_match, current["etag"])
        new = dict(current)
        for prop, column in PATCHABLE.items():
            if prop in changes:
                new[column] = changes[prop]
        merged = {"key": key, "data_type": current["data_type"], "options": new["options"],
                  "min": new["min_value"], "max": new["max_value"], "max_length": new["max_length"],
                  "pattern": new["pattern"]}
        errors = [e for e in _definition_errors(merged) if e["field"] != "key"]
        if "pattern" in changes:
            await _check_pattern(conn, changes["pattern"], errors)
        if errors:
            raise InvalidFieldDefinition("The field definition is not consistent.", errors=errors)
        params: dict[str, Any] = {"key": key}
        for prop, column in PATCHABLE.items():
            params[f"set_{column}"] = prop in changes
            params[column] = changes.get(prop)
        row = await queries.update_field_definition(conn, **params)
        if migration:
            await _migrate_values(conn, key, new, migration)
        if migration or _tightened(current, new):
            counts = await queries.count_offending_customers(conn, key=key)
            if counts["invalid"] or counts["missing"]:
                offending = counts["invalid"] + counts["missing"]
                raise FieldValuesConflict(
                    f"{offending} customer(s) have values of {key!r} that the changed definition would "
                    "reject; send a migration (map_options, invalid: UNSET or REPLACE, fill_missing) to "
                    "change them with it.",
                    offending_customers=offending, invalid_values=counts["invalid"],
                    missing_values=counts["missing"],
                )
        if "hot" in changes and changes["hot"] != current["hot"]:
            job = "MAKE_HOT" if changes["hot"] else "MAKE_COLD"
            await queries.cancel_field_jobs(conn, key=key)
            await queries.insert_field_job(conn, key=key, action=job, batch_size=field_jobs.DEFAULT_BATCH_SIZE)
            row = await queries.get_field_definition(conn, key=key)
    if job:
        _start_jobs()
    return row["body"]


async def archive_definition(principal: Principal, key: str, if_match: list[str]) -> None:
    async with transaction(principal) as conn:
        current = await queries.lock_field_definition(conn, key=key)
        if current is None:
            raise _not_found(key)
        check_if_match(if_match, current["etag"])
        await queries.archive_field_definition(conn, key=key)
        await queries.cancel_field_jobs(conn, key=key)
        await queries.insert_field_job(conn, key=key, action="ARCHIVE", batch_size=field_jobs.DEFAULT_BATCH_SIZE)
    _start_jobs()


# --- values -------------------------------------------------------------------------------------

async def get_customer_fields(principal: Principal, customer_id: str) -> dict[str, Any]:
    async with read_transaction(principal) as conn:
        row = await queries.get_customer_fields(conn, id=customer_id)
    if row is None:
        raise _customer_not_found(customer_id)
    return row["body"]


async def update_customer_fields(
    principal: Principal, customer_id: str, if_match: list[str], patch: dict[str, Any]
) -> dict[str, Any]:
    """Merge ``patch`` (``null`` unsets) into the customer's values; every entry is checked
    against its definition and all problems are reported together (nothing is stored then)."""
    patch_json = json.dumps(patch)
    async with transaction(principal) as conn:
        current = await queries.lock_customer_fields(conn, id=customer_id)
        if current is None:
            raise _customer_not_found(customer_id)
        check_if_match(if_match, current["etag"])
        errors = [dict(r) async for r in queries.check_field_values(conn, id=customer_id, patch=patch_json)]
        if errors:
            raise InvalidFieldValues(
                f"{len(errors)} field value(s) are not valid; nothing was changed.", errors=errors
            )
        row = await queries.update_customer_fields(conn, id=customer_id, patch=patch_json)
    return row["body"]
