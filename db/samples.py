"""Cook&Fresh sample requests behind ``handlers/samples.py``: one function per operation, one
transaction each (SQL in ``db/queries/samples.sql``, schema in ``db/migrations/0020``–``0024``).

Lifecycle (the graph is the SQL function ``sample_next_statuses``; a trigger refuses any other
change of status)::

    DRAFT → REQUESTED → APPROVED | REJECTED
    APPROVED → SHIPPED → DELIVERED → FEEDBACK_RECEIVED → CLOSED
    DRAFT | REQUESTED | APPROVED → CANCELLED

Every change of a request or of its items first locks the request row, so changes of one request
run one after the other; the entity tag is checked under that lock, so of two clients moving the
same request with the same ``If-Match`` exactly one wins and the other gets 412.

Who may move a request where (scopes from ``crm.auth.ROLE_SCOPES``; 403 otherwise):

* ``APPROVED``, ``REJECTED`` — ``samples:approve`` (sales managers, admins); rejecting needs a reason;
* ``SHIPPED``, ``DELIVERED`` — ``samples:ship`` (the fulfilment partner's ``integration`` account, admins);
* ``REQUESTED`` (submit), ``CANCELLED``, ``CLOSED``, ``FEEDBACK_RECEIVED`` — ``samples:write`` and
  being the requester, or ``samples:approve``. The same holds for changing a draft and its items.
* ``quota_override`` — ``samples:approve``, with a reason.

A request moves from ``DELIVERED`` to ``FEEDBACK_RECEIVED`` by itself when the last of its items
gets feedback (history entry with ``automatic = true``). Each status change writes one history row;
a trigger on the history table writes its outbox event (``sample_request.<status>``).

Sample rules, checked on create, on adding an item and again on submit (422, one entry per
problem in ``errors``): the customer exists in the caller's scope and is not archived; every
product exists, is ``sample_available`` and is requested at most ``max_sample_quantity`` packs;
on submit also: at least one item and a complete delivery address.

Quotas (table ``sample_quota``, one row per subject, see the README): on submit, the packs of the
customer's and of its chain's other submitted, live requests (not rejected or cancelled) within
the window, plus this request's, must stay within the limit; otherwise 409 with the ``usage``.
A submit with ``quota_override`` records who overrode it, why and the usage at that moment.
Quota checks of one chain (or one customer without a chain) are serialised by an advisory lock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from crm.auth import Principal
from crm.conditional import check_if_match
from crm.errors import Conflict, Forbidden, NotFound, Unprocessable
from crm.pagination import decode_cursor, page
from db.pool import queries, read_transaction, transaction

APPROVE, SHIP, WRITE = "samples:approve", "samples:ship", "samples:write"
ADDRESS_FIELDS = ("name", "street", "postal_code", "city", "country")
FEEDBACK_STATES = ("DELIVERED", "FEEDBACK_RECEIVED")


class IllegalTransition(Conflict):
    type = "/problems/illegal-transition"


class WrongState(Conflict):
    type = "/problems/wrong-state"


class QuotaExceeded(Conflict):
    type = "/problems/sample-quota-exceeded"


class FeedbackIncomplete(Conflict):
    type = "/problems/feedback-incomplete"


class TransitionForbidden(Forbidden):
    type = "/problems/transition-forbidden"


class SampleRulesViolated(Unprocessable):
    type = "/problems/sample-rules-violated"


# --- rules --------------------------------------------------------------------------------------


def _not_found(request_id: str) -> NotFound:
    return NotFound(f"No sample request with id {request_id} exists (or it is outside your scope).")


def _item_not_found(request_id: str, item_id: str) -> NotFound:
    return NotFound(f"Sample request {request_id} has no item {item_id} (or it is outside your scope).")


def _is_requester(principal: Principal, current: dict[str, Any]) -> bool:
    return current["requested_by"] == principal.sub


def _require_requester(principal: Principal, current: dict[str, Any], action: str) -> None:
    """The requester (with samples:write) or a sales manager (samples:approve)."""
    if APPROVE in principal.scopes or (WRITE in principal.scopes and _is_requester(principal, current)):
        return
    raise TransitionForbidden(
        f"Only the requester ({current['requested_by']}) or a sales manager may {action} this sample request.",
        required_scope=APPROVE,
    )


def _authorize_transition(principal: Principal, current: dict[str, Any], to: str, override: bool) -> None:
    if to in ("APPROVED", "REJECTED"):
        if APPROVE not in principal.scopes:
            raise TransitionForbidden(
                f"Only sales managers may move a sample request to {to}.", required_scope=APPROVE
            )
    elif to in ("SHIPPED", "DELIVERED"):
        if SHIP not in principal.scopes:
            raise TransitionForbidden(
                f"Only the fulfilment partner may move a sample request to {to}.", required_scope=SHIP
            )
    else:
        _require_requester(principal, current, f"move to {to}")
    if override and APPROVE not in principal.scopes:
        raise TransitionForbidden("Only sales managers may override a sample quota.", required_scope=APPROVE)


def _require_draft(current: dict[str, Any], action: str) -> None:
    if current["status"] != "DRAFT":
        raise WrongState(
            f"Only a DRAFT can be {action}; this sample request is {current['status']}.",
            current_status=current["status"],
        )


def _customer_problems(customer: dict[str, Any] | None) -> list[dict[str, str]]:
    if customer is None:
        return [{"field": "customer_id", "message": "does not exist (or is outside your scope)"}]
    if customer["status"] == "ARCHIVED":
        return [{"field": "customer_id", "message": "the customer is archived"}]
    return []


def _item_problems(items: Iterable[dict[str, Any]], products: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """The sample rules per item; ``items`` as ``{product_id, quantity}`` in order."""
    errors, seen = [], set()
    for n, item in enumerate(items):
        product_id = str(item["product_id"])
        product = products.get(product_id)
        if product_id in seen:
            errors.append({"field": f"items.{n}.product_id", "message": "the product is listed twice"})
        elif product is None:
            errors.append({"field": f"items.{n}.product_id", "message": "no such product"})
        elif not product["sample_available"]:
            errors.append({"field": f"items.{n}.product_id",
                           "message": f"{product['sku']} is not available as a sample"})
        elif item["quantity"] > product["max_sample_quantity"]:
            errors.append({"field": f"items.{n}.quantity",
                           "message": f"at most {product['max_sample_quantity']} packs of {product['sku']} "
                                      "per sample request"})
        seen.add(product_id)
    return errors


def _rules_violated(errors: list[dict[str, str]]) -> SampleRulesViolated:
    return SampleRulesViolated(
        "The sample request breaks the sample rules: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
        errors=errors,
    )


async def _products(conn: Any, product_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = sorted({str(p) for p in product_ids})
    return {row["id"]: row async for row in queries.sample_products(conn, ids=ids)}


def _usage(row: dict[str, Any], chain_id: str | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"customer": None, "chain": None}
    if row["customer_limit"] is not None:
        usage["customer"] = {"limit": row["customer_limit"], "used": row["customer_used"],
                             "requested": row["requested"], "window_days": row["customer_window_days"]}
    if row["chain_limit"] is not None and chain_id is not None:
        usage["chain"] = {"limit": row["chain_limit"], "used": row["chain_used"], "requested": row["requested"],
                          "window_days": row["chain_window_days"], "chain_id": str(chain_id)}
    return usage


def _exceeded(usage: dict[str, Any]) -> list[str]:
    return [k for k, u in usage.items() if u is not None and u["used"] + u["requested"] > u["limit"]]


def _quota_problem(usage: dict[str, Any], exceeded: list[str]) -> QuotaExceeded:
    parts = []
    for subject in exceeded:
        u = usage[subject]
        parts.append(f"the {subject} has {u['used']} of {u['limit']} sample packs used in the last "
                     f"{u['window_days']} days")
    requested = usage[exceeded[0]]["requested"]
    return QuotaExceeded(
        f"Submitting {requested} more pack(s) would exceed the sample quota: {'; '.join(parts)}. "
        "A sales manager may submit it with quota_override and a reason.",
        usage=usage, exceeded=exceeded,
    )


def _shipment_problems(shipment: dict[str, Any], items: list[dict[str, Any]]) -> list[dict[str, str]]:
    errors, seen = [], set()
    known = {i["id"] for i in items}
    today = dt.datetime.now(dt.UTC).date()
    for n, line in enumerate(shipment["items"]):
        item_id = str(line["item_id"])
        if item_id not in known:
            errors.append({"field": f"shipment.items.{n}.item_id", "message": "not an item of this sample request"})
        elif item_id in seen:
            errors.append({"field": f"shipment.items.{n}.item_id", "message": "listed twice"})
        elif dt.date.fromisoformat(line["best_before"]) < today:
            errors.append({"field": f"shipment.items.{n}.best_before", "message": "the best-before date has passed"})
        seen.add(item_id)
    for item in items:
        if item["id"] not in seen:
            errors.append({"field": "shipment.items",
                           "message": f"lot number and best-before date missing for item {item['id']}"})
    return errors


# --- sample requests ----------------------------------------------------------------------------

LIST_FILTERS = ("status", "customer_id", "chain_id", "requested_by", "created_from", "created_to")


async def list_sample_requests(principal: Principal, limit: int, cursor: str | None, **filters: Any) -> dict:
    filters = {k: filters.get(k) for k in LIST_FILTERS}
    key = decode_cursor("list_sample_requests", filters, cursor) or [None, None]
    async with read_transaction(principal) as conn:
        rows = [
            row async for row in queries.list_sample_requests(
                conn, **filters, after_created=key[0], after_id=key[1], limit=limit + 1
            )
        ]
    return page("list_sample_requests", filters, rows, limit, ("sort_created", "sort_id"))


async def get_sample_request(principal: Principal, request_id: str) -> dict[str, Any]:
    async with read_transaction(principal) as conn:
        row = await queries.get_sample_request(conn, id=request_id)
    if row is None:
        raise _not_found(request_id)
    return row["body"]


async def create_sample_request(
    principal: Principal, body: dict[str, Any], idempotency_key: str | None = None
) -> dict[str, Any]:
    items = body["items"]
    async with transaction(principal) as conn:
        customer = await queries.sample_customer(conn, customer_id=body["customer_id"])
        products = await _products(conn, (i["product_id"] for i in items))
        errors = _customer_problems(customer) + _item_problems(items, products)
        if errors:
            raise _rules_violated(errors)
        address = {f: customer[f] for f in ADDRESS_FIELDS}
        address.update(body.get("delivery_address") or {})
        row = await queries.insert_sample_request(
            conn,
            customer_id=body["customer_id"],
            chain_id=customer["chain_id"],
            requested_by=principal.sub,
            purpose=body.get("purpose"),
            desired_delivery_date=body.get("desired_delivery_date"),
            idempotency_key=idempotency_key,
            **{f"delivery_{f}": address[f] for f in ADDRESS_FIELDS},
        )
        if row is None:
            existing = await queries.find_sample_request_by_key(
                conn, requested_by=principal.sub, idempotency_key=idempotency_key
            )
            raise Conflict(
                "A sample request was created with this Idempotency-Key already; "
                "retry the same request to get its response.",
                existing_id=str(existing["id"]) if existing else None,
            )
        await queries.insert_sample_items(
            conn, request_id=row["id"],
            product_ids=[i["product_id"] for i in items], quantities=[i["quantity"] for i in items],
        )
        await queries.insert_sample_history(
            conn, request_id=row["id"], from_status=None, to_status="DRAFT", reason=None,
            automatic=False, quota_override=False,
        )
        created = await queries.get_sample_request(conn, id=row["id"])
    return created["body"]


async def _lock(conn: Any, request_id: str) -> dict[str, Any]:
    current = await queries.lock_sample_request(conn, id=request_id)
    if current is None:
        raise _not_found(request_id)
    return current


async def update_sample_request(
    principal: Principal, request_id: str, if_match: list[str], changes: dict[str, Any]
) -> dict[str, Any]:
    flat = {k: v for k, v in changes.items() if k != "delivery_address"}
    if "delivery_address" in changes:
        address = changes["delivery_address"]
        flat.update(
            {f"delivery_{f}": None for f in ADDRESS_FIELDS} if address is None
            else {f"delivery_{f}": v for f, v in address.items()}
        )
    fields = ("purpose", "desired_delivery_date", *(f"delivery_{f}" for f in ADDRESS_FIELDS))
    params = {**{f"set_{f}": f in flat for f in fields}, **{f: flat.get(f) for f in fields}}
    async with transaction(principal) as conn:
        current = await _lock(conn, request_id)
        _require_requester(principal, current, "change")
        check_if_match(if_match, current["etag"])
        _require_draft(current, "changed")
        row = await queries.update_sample_request(conn, id=request_id, **params)
    return row["body"]


async def delete_sample_request(principal: Principal, request_id: str, if_match: list[str]) -> None:
    async with transaction(principal) as conn:
        current = await _lock(conn, request_id)
        _require_requester(principal, current, "delete")
        check_if_match(if_match, current["etag"])
        _require_draft(current, "deleted (cancel it instead)")
        await queries.delete_sample_request(conn, id=request_id)


# --- transitions --------------------------------------------------------------------------------


async def _submit_checks(
    conn: Any, current: dict[str, Any], override: bool
) -> tuple[str | None, dict[str, Any] | None]:
    """Sample rules and quotas of a submit; returns the chain id to record and the usage an
    override went past (``None`` when nothing had to be overridden)."""
    request_id = str(current["id"])
    customer = await queries.sample_customer(conn, customer_id=current["customer_id"])
    items = [row async for row in queries.sample_request_items(conn, request_id=request_id)]
    errors = _customer_problems(customer)
    if not items:
        errors.append({"field": "items", "message": "a sample request needs at least one item"})
    errors += _item_problems(items, {i["product_id"]: i for i in items})
    request = (await queries.get_sample_request(conn, id=request_id))["body"]
    for field in ("street", "postal_code", "city", "country"):
        if not request["delivery_address"][field]:
            errors.append({"field": f"delivery_address.{field}", "message": "needed to ship the samples"})
    if errors:
        raise _rules_violated(errors)
    chain_id = customer["chain_id"]
    await queries.lock_sample_quota(conn, key=f"sample-quota:{chain_id or customer['id']}")
    usage = _usage(await queries.sample_quota_usage(conn, id=request_id, chain_id=chain_id), chain_id)
    exceeded = _exceeded(usage)
    if not exceeded:
        return chain_id, None
    if not override:
        raise _quota_problem(usage, exceeded)
    return chain_id, usage


async def transition_sample_request(
    principal: Principal, request_id: str, if_match: list[str], body: dict[str, Any]
) -> dict[str, Any]:
    to = body["to"]
    reason = body.get("reason")
    override = bool(body.get("quota_override"))
    shipment = body.get("shipment")
    async with transaction(principal) as conn:
        current = await _lock(conn, request_id)
        _authorize_transition(principal, current, to, override)
        check_if_match(if_match, current["etag"])
        if to not in current["next_statuses"]:
            allowed = current["next_statuses"]
            raise IllegalTransition(
                f"A {current['status']} sample request cannot move to {to}; "
                + (f"it can move to {', '.join(allowed)}." if allowed else "it is final."),
                allowed=allowed, current_status=current["status"],
            )
        errors = []
        if to == "REJECTED" and not (reason or "").strip():
            errors.append({"field": "reason", "message": "a rejection needs a reason"})
        if override and to != "REQUESTED":
            errors.append({"field": "quota_override", "message": "quotas are checked, and overridden, on submit"})
        if override and not (reason or "").strip():
            errors.append({"field": "reason", "message": "a quota override needs a reason"})
        if to == "SHIPPED" and shipment is None:
            errors.append({"field": "shipment", "message": "shipping needs the carrier, tracking number and lots"})
        if to != "SHIPPED" and shipment is not None:
            errors.append({"field": "shipment", "message": "only a move to SHIPPED takes a shipment"})
        if errors:
            raise _rules_violated(errors)

        chain_id, usage = current["chain_id"], None
        if to == "REQUESTED":
            chain_id, usage = await _submit_checks(conn, current, override)
        elif to == "SHIPPED":
            items = [row async for row in queries.sample_request_items(conn, request_id=request_id)]
            errors = _shipment_problems(shipment, items)
            if errors:
                raise _rules_violated(errors)
            lines = shipment["items"]
            await queries.set_sample_item_shipment(
                conn, request_id=request_id, item_ids=[str(x["item_id"]) for x in lines],
                lot_numbers=[x["lot_number"] for x in lines], best_befores=[x["best_before"] for x in lines],
            )
        elif to == "FEEDBACK_RECEIVED":
            items = [row async for row in queries.sample_request_items(conn, request_id=request_id)]
            missing = [i["id"] for i in items if not i["has_feedback"]]
            if missing:
                raise FeedbackIncomplete(
                    f"{len(missing)} item(s) have no feedback yet; the request moves to FEEDBACK_RECEIVED "
                    "by itself when the last feedback is recorded.",
                    missing_feedback=missing,
                )
        row = await _set_status(conn, current, to, reason, chain_id=chain_id, usage=usage,
                                carrier=shipment and shipment["carrier"],
                                tracking_number=shipment and shipment["tracking_number"])
    return row["body"]


async def _set_status(
    conn: Any, current: dict[str, Any], to: str, reason: str | None, *, chain_id: Any = None,
    usage: dict[str, Any] | None = None, carrier: str | None = None, tracking_number: str | None = None,
    automatic: bool = False,
) -> dict[str, Any]:
    """The status change and its history row (whose trigger writes the outbox event)."""
    row = await queries.set_sample_status(
        conn, id=current["id"], to_status=to, reason=reason, chain_id=chain_id,
        carrier=carrier, tracking_number=tracking_number,
        quota_override=usage is not None, quota_usage=json.dumps(usage) if usage is not None else None,
    )
    await queries.insert_sample_history(
        conn, request_id=current["id"], from_status=current["status"], to_status=to, reason=reason,
        automatic=automatic, quota_override=usage is not None,
    )
    return row


async def list_sample_history(principal: Principal, request_id: str, limit: int, cursor: str | None) -> dict:
    filters = {"sample_request_id": request_id}
    key = decode_cursor("list_sample_history", filters, cursor) or [None]
    async with read_transaction(principal) as conn:
        if await queries.find_sample_request(conn, id=request_id) is None:
            raise _not_found(request_id)
        rows = [
            row async for row in queries.list_sample_history(
                conn, request_id=request_id, after_id=key[0], limit=limit + 1
            )
        ]
    return page("list_sample_history", filters, rows, limit, ("sort_id",))


# --- items and feedback -------------------------------------------------------------------------


async def list_sample_items(principal: Principal, request_id: str, limit: int, cursor: str | None) -> dict:
    filters = {"sample_request_id": request_id}
    key = decode_cursor("list_sample_items", filters, cursor) or [None]
    async with read_transaction(principal) as conn:
        if await queries.find_sample_request(conn, id=request_id) is None:
            raise _not_found(request_id)
        rows = [
            row async for row in queries.list_sample_items(
                conn, request_id=request_id, after_seq=key[0], limit=limit + 1
            )
        ]
    return page("list_sample_items", filters, rows, limit, ("sort_seq",))


async def get_sample_item(principal: Principal, request_id: str, item_id: str) -> dict[str, Any]:
    async with read_transaction(principal) as conn:
        row = await queries.get_sample_item(conn, request_id=request_id, item_id=item_id)
    if row is None:
        raise _item_not_found(request_id, item_id)
    return row["body"]


async def add_sample_item(principal: Principal, request_id: str, body: dict[str, Any]) -> dict[str, Any]:
    async with transaction(principal) as conn:
        current = await _lock(conn, request_id)
        _require_requester(principal, current, "change")
        _require_draft(current, "changed")
        products = await _products(conn, [body["product_id"]])
        errors = _item_problems([body], products)
        if errors:
            raise _rules_violated([{**e, "field": e["field"].removeprefix("items.0.")} for e in errors])
        row = await queries.insert_sample_item(
            conn, request_id=request_id, product_id=body["product_id"], quantity=body["quantity"]
        )
        if row is None:
            existing = await queries.find_sample_item_by_product(
                conn, request_id=request_id, product_id=body["product_id"]
            )
            raise Conflict(
                "This product is in the sample request already; remove that item first to change its quantity.",
                field="product_id", existing_id=str(existing["id"]) if existing else None,
            )
        await queries.touch_sample_request(conn, id=request_id)
    return row["body"]


async def remove_sample_item(principal: Principal, request_id: str, item_id: str, if_match: list[str]) -> None:
    async with transaction(principal) as conn:
        current = await _lock(conn, request_id)
        item = await queries.lock_sample_item(conn, request_id=request_id, item_id=item_id)
        if item is None:
            raise _item_not_found(request_id, item_id)
        _require_requester(principal, current, "change")
        check_if_match(if_match, item["etag"])
        _require_draft(current, "changed")
        await queries.delete_sample_item(conn, item_id=item_id)
        await queries.touch_sample_request(conn, id=request_id)


async def put_sample_feedback(
    principal: Principal, request_id: str, item_id: str, if_match: list[str] | None, body: dict[str, Any]
) -> dict[str, Any]:
    async with transaction(principal) as conn:
        current = await _lock(conn, request_id)
        item = await queries.lock_sample_item(conn, request_id=request_id, item_id=item_id)
        if item is None:
            raise _item_not_found(request_id, item_id)
        if if_match is not None:
            check_if_match(if_match, item["etag"])
        if current["status"] not in FEEDBACK_STATES:
            raise WrongState(
                f"Feedback can be recorded once the samples are DELIVERED; this request is {current['status']}.",
                current_status=current["status"],
            )
        row = await queries.put_sample_feedback(
            conn, item_id=item_id, rating=body["rating"], taste=body.get("taste"), handling=body.get("handling"),
            price_perception=body.get("price_perception"), listing_decision=body["listing_decision"],
            comment=body.get("comment"),
        )
        items = [i async for i in queries.sample_request_items(conn, request_id=request_id)]
        if current["status"] == "DELIVERED" and all(i["has_feedback"] for i in items):
            await _set_status(conn, current, "FEEDBACK_RECEIVED", "every item has feedback",
                              chain_id=current["chain_id"], automatic=True)
        else:
            await queries.touch_sample_request(conn, id=request_id)
    return row["body"]
