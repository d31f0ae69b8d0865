"""Activities (calls and visits) and the customer timeline behind ``handlers/activities.py``: one
function per operation, one transaction each (SQL in ``db/queries/activities.sql``, schema in
``db/migrations/0040``–``0042``).

An activity is a ``CALL`` or a ``VISIT`` of one customer, ``PLANNED``, ``DONE`` or ``CANCELLED``.
Its type and customer are fixed at creation. Rules checked on create and on every change, against
the activity as it would be after the change (422 ``/problems/activity-rules-violated``, one entry
per problem in ``errors``; the database checks the same as constraints and a guard trigger):

* a ``DONE`` activity has ``occurred_at`` (not in the future); a ``PLANNED`` one has
  ``planned_at`` and no ``occurred_at``; every activity has one of the two;
* ``follow_up_at`` is not before the activity (``occurred_at``, else ``planned_at``);
* a ``VISIT`` has no call fields and a ``CALL`` no visit fields (the schema refuses them on
  create; on change they are refused here, as is a different ``type``);
* the customer exists in the caller's scope and is not archived (create only); participants
  are contacts of the customer, presented products exist, a linked sample request is one of the
  customer's (checked for the values a write adds).

Who: ``activities:read`` (everyone but the integration role), ``activities:write`` (sales reps,
sales managers, admins). Row-level security shows chain managers the activities of their chains'
outlets only and lets only callers who see every customer write. Every write emits its outbox
event (``activity.created``, ``.updated``, ``.deleted``) by trigger in the same transaction.

The timeline of a customer merges its activities, the transitions of its sample requests and its
own changes (``customer_change``), newest first, keyset-paginated on ``(at, kind, id)``: an entry
written after a page was read is either newer than that page (seen when starting again) or
older than the cursor (on a later page) — never a duplicate, never a skipped older entry.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from crm.auth import Principal
from crm.conditional import check_if_match
from crm.errors import Conflict, NotFound, Unprocessable
from crm.pagination import decode_cursor, page
from db.pool import queries, read_transaction, transaction

CALL_FIELDS = ("direction", "duration_seconds", "reached")
VISIT_FIELDS = ("visit_kind", "location", "participants", "products_presented")
VARIANT_FIELDS = {"CALL": CALL_FIELDS, "VISIT": VISIT_FIELDS}
COMMON_FIELDS = (
    "status", "occurred_at", "planned_at", "subject", "notes", "outcome", "next_step", "follow_up_at",
    "sample_request_id", "owner",
)
UPDATE_FIELDS = (*COMMON_FIELDS, *CALL_FIELDS, *VISIT_FIELDS)
TIMES = ("occurred_at", "planned_at", "follow_up_at")
CLOCK_SKEW = dt.timedelta(minutes=5)
LIST_FILTERS = ("customer_id", "chain_id", "type", "owner", "status", "occurred_from", "occurred_to",
                "follow_up_due_before")


class ActivityRulesViolated(Unprocessable):
    type = "/problems/activity-rules-violated"


def _not_found(activity_id: str) -> NotFound:
    return NotFound(f"No activity with id {activity_id} exists (or it is outside your scope).")


def _violated(errors: list[dict[str, str]]) -> ActivityRulesViolated:
    return ActivityRulesViolated(
        "The activity breaks the activity rules: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
        errors=errors,
    )


def _instant(value: Any) -> dt.datetime | None:
    """An RFC 3339 date-time as an aware datetime in UTC; None when it is not one or leaves the
    years 1–9999 in UTC."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.upper())
        return parsed.astimezone(dt.UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        return None


def _normalise_times(values: dict[str, Any], errors: list[dict[str, str]]) -> dict[str, dt.datetime | None]:
    """The given date-times in UTC (sent to PostgreSQL as such: it refuses offsets beyond ±15:59,
    which RFC 3339 allows)."""
    instants: dict[str, dt.datetime | None] = {}
    for name in TIMES:
        value = values.get(name)
        if value is None:
            instants[name] = None
            continue
        instant = _instant(value)
        if instant is None:
            errors.append({"field": name, "message": "is not a date-time within the years 1 to 9999 (UTC)"})
        else:
            values[name] = instant.isoformat()
        instants[name] = instant
    return instants


def _rules(values: dict[str, Any]) -> list[dict[str, str]]:
    """The rules of one activity as it would be stored (``values``: every column, API names)."""
    errors: list[dict[str, str]] = []
    at = _normalise_times(values, errors)
    status = values["status"]
    if status == "DONE" and values.get("occurred_at") is None:
        errors.append({"field": "occurred_at", "message": "a DONE activity needs the time it occurred"})
    if status == "PLANNED":
        if values.get("planned_at") is None:
            errors.append({"field": "planned_at", "message": "a PLANNED activity needs the time it is planned for"})
        if values.get("occurred_at") is not None:
            errors.append({"field": "occurred_at",
                           "message": "a PLANNED activity has not occurred yet (leave occurred_at out or null)"})
    if values.get("occurred_at") is None and values.get("planned_at") is None and status == "CANCELLED":
        errors.append({"field": "occurred_at", "message": "an activity needs occurred_at or planned_at"})
    if status == "DONE" and at["occurred_at"] and at["occurred_at"] > dt.datetime.now(dt.UTC) + CLOCK_SKEW:
        errors.append({"field": "occurred_at", "message": "a DONE activity cannot lie in the future"})
    when = at["occurred_at"] or at["planned_at"]
    if at["follow_up_at"] and when and at["follow_up_at"] < when:
        errors.append({"field": "follow_up_at", "message": "the follow-up cannot be before the activity "
                                                           f"({'occurred_at' if at['occurred_at'] else 'planned_at'})"})
    return errors


async def _reference_problems(
    conn: Any, customer_id: str, values: dict[str, Any], previous: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """Participants, presented products and the sample request, for the values this write adds."""
    errors: list[dict[str, str]] = []
    previous = previous or {}
    added = [(n, p) for n, p in enumerate(values.get("participants") or ())
             if p not in (previous.get("participants") or ())]
    if added:
        found = {r["id"]: r["customer_id"] async for r in queries.activity_contacts(conn, ids=[p for _, p in added])}
        for n, contact_id in added:
            if contact_id not in found:
                errors.append({"field": f"participants.{n}", "message": "no such contact (or outside your scope)"})
            elif found[contact_id] != customer_id:
                errors.append({"field": f"participants.{n}", "message": "is a contact of another customer"})
    added = [(n, p) for n, p in enumerate(values.get("products_presented") or ())
             if p not in (previous.get("products_presented") or ())]
    if added:
        found = {r["id"] async for r in queries.activity_products(conn, ids=[p for _, p in added])}
        errors += [{"field": f"products_presented.{n}", "message": "no such product"}
                   for n, product_id in added if product_id not in found]
    request_id = values.get("sample_request_id")
    if request_id is not None and request_id != previous.get("sample_request_id"):
        request = await queries.activity_sample_request(conn, id=request_id)
        if request is None:
            errors.append({"field": "sample_request_id", "message": "no such sample request (or outside your scope)"})
        elif request["customer_id"] != customer_id:
            errors.append({"field": "sample_request_id", "message": "is a sample request of another customer"})
    return errors


def _uuid(value: Any) -> str:
    return str(uuid.UUID(str(value)))


def _normalise_ids(values: dict[str, Any]) -> None:
    """UUIDs in their canonical (lowercase) form, as PostgreSQL prints them."""
    for name in ("customer_id", "sample_request_id"):
        if values.get(name) is not None:
            values[name] = _uuid(values[name])
    for name in ("participants", "products_presented"):
        if values.get(name) is not None:
            values[name] = [_uuid(x) for x in values[name]]


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Query parameters of every column (absent variant fields: null, arrays empty)."""
    params = {name: values.get(name) for name in UPDATE_FIELDS}
    for name in ("participants", "products_presented"):
        params[name] = params[name] or []
    return params


# --- activities ---------------------------------------------------------------------------------


async def list_activities(principal: Principal, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
    filters = {k: filters.get(k) for k in LIST_FILTERS}
    operation = "list_due_activities" if filters["follow_up_due_before"] else "list_activities"
    key = decode_cursor(operation, filters, cursor) or [None, None]
    params = {k: v for k, v in filters.items() if operation == "list_due_activities" or k != "follow_up_due_before"}
    async with read_transaction(principal) as conn:
        rows = [
            row async for row in getattr(queries, operation)(
                conn, **params, after_at=key[0], after_id=key[1], limit=limit + 1
            )
        ]
    return page(operation, filters, rows, limit, ("sort_at", "sort_id"))


async def get_activity(principal: Principal, activity_id: str) -> dict[str, Any]:
    async with read_transaction(principal) as conn:
        row = await queries.get_activity(conn, id=activity_id)
    if row is None:
        raise _not_found(activity_id)
    return row["body"]


async def create_activity(
    principal: Principal, body: dict[str, Any], idempotency_key: str | None = None
) -> dict[str, Any]:
    values = {"status": "DONE", "owner": principal.sub, **body}
    _normalise_ids(values)
    customer_id = values["customer_id"]
    if values["type"] == "CALL":
        values.setdefault("direction", "OUTBOUND")
    errors = _rules(values)
    async with transaction(principal) as conn:
        customer = await queries.activity_customer(conn, customer_id=customer_id)
        if customer is None:
            errors.insert(0, {"field": "customer_id", "message": "does not exist (or is outside your scope)"})
        else:
            if customer["status"] == "ARCHIVED":
                errors.insert(0, {"field": "customer_id", "message": "the customer is archived"})
            errors += await _reference_problems(conn, customer_id, values)
        if errors:
            raise _violated(errors)
        row = await queries.insert_activity(
            conn, type=values["type"], customer_id=customer_id, created_by=principal.sub,
            idempotency_key=idempotency_key, **_columns(values),
        )
        if row is None:
            existing = await queries.find_activity_by_key(
                conn, created_by=principal.sub, idempotency_key=idempotency_key
            )
            raise Conflict(
                "An activity was created with this Idempotency-Key already; "
                "retry the same request to get its response.",
                existing_id=str(existing["id"]) if existing else None,
            )
    return row["body"]


def _change_problems(current: dict[str, Any], changes: dict[str, Any]) -> list[dict[str, str]]:
    kind = current["type"]
    errors = []
    if "type" in changes and changes["type"] != kind:
        errors.append({"field": "type", "message": f"the type of an activity cannot change ({kind} to "
                                                   f"{changes['type']}); record a new activity instead"})
    other = "VISIT" if kind == "CALL" else "CALL"
    errors += [{"field": name, "message": f"a {kind} has no {name} (a {other} field)"}
               for name in VARIANT_FIELDS[other] if name in changes]
    return errors


async def update_activity(
    principal: Principal, activity_id: str, if_match: list[str], changes: dict[str, Any]
) -> dict[str, Any]:
    async with transaction(principal) as conn:
        current = await queries.lock_activity(conn, id=activity_id)
        if current is None:
            raise _not_found(activity_id)
        check_if_match(if_match, current["etag"])
        before = current["body"]
        errors = _change_problems(before, changes)
        changes = {k: v for k, v in changes.items() if k != "type"}
        _normalise_ids(changes)
        if not errors:
            after = {**before, **changes}
            errors = _rules(after)
            changes.update({k: after[k] for k in TIMES if k in changes})  # in UTC
            errors += await _reference_problems(conn, before["customer_id"], changes, before)
        if errors:
            raise _violated(errors)
        params = {**{f"set_{name}": name in changes for name in UPDATE_FIELDS}, **_columns(changes)}
        row = await queries.update_activity(conn, id=activity_id, **params)
    return row["body"]


async def delete_activity(principal: Principal, activity_id: str, if_match: list[str]) -> None:
    async with transaction(principal) as conn:
        current = await queries.lock_activity(conn, id=activity_id)
        if current is None:
            raise _not_found(activity_id)
        check_if_match(if_match, current["etag"])
        await queries.delete_activity(conn, id=activity_id)


# --- the customer timeline ----------------------------------------------------------------------


async def list_customer_timeline(principal: Principal, customer_id: str, limit: int, cursor: str | None) -> dict:
    filters = {"customer_id": customer_id}
    key = decode_cursor("list_customer_timeline", filters, cursor) or [None, None, None]
    async with read_transaction(principal) as conn:
        if await queries.find_customer(conn, customer_id=customer_id) is None:
            raise NotFound(f"No customer with id {customer_id} exists (or it is outside your scope).")
        rows = [
            row async for row in queries.list_customer_timeline(
                conn, customer_id=customer_id, after_at=key[0], after_kind=key[1], after_id=key[2], limit=limit + 1
            )
        ]
    return page("list_customer_timeline", filters, rows, limit, ("sort_at", "sort_kind", "sort_id"))
